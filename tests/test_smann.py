"""SMANN family (SMANN paper §2): the constrained LSTM's output (eq. 1), chrono bias ranges (eq. 4)
in PyTorch's (i, f, g, o) layout, the sparse mask's straight-through gradient (eqs. 7-8), memory
accesses only at mask-on steps (§2.3), and the baselines JANET and Skip RNN on hand-computed steps."""
import math

import pytest
import torch

from memrepro.errors import ConfigError
from memrepro.models import smann as smann_module
from memrepro.models.clstm import CLSTM, ConstrainedLSTMCell
from memrepro.models.janet import JANET
from memrepro.models.recurrent import LSTM
from memrepro.models.skip_rnn import SkipGRU, SkipLSTM
from memrepro.models.smann import NC, SMANN


def set_mask(model: NC, on: list[int]) -> None:
    """m′ = −5 everywhere except +5 at the steps ``on``."""
    with torch.no_grad():
        model.mask.logits.fill_(-5.0)
        model.mask.logits[on] = 5.0


# --- eq. (1): the constrained LSTM --------------------------------------------------------------
def test_constrained_output_is_the_double_tanh():
    cell = ConstrainedLSTMCell(2, 3)
    c = torch.tensor([[0.0, 0.5, 2.0]])
    # D/2 (tanh(c + u) + tanh(c − u)) with u = 0.5, D = 1 at initialisation
    expected = [0.0, 0.5 * math.tanh(1.0), 0.5 * (math.tanh(2.5) + math.tanh(1.5))]
    assert cell.output(c)[0].tolist() == pytest.approx(expected, abs=1e-6)
    with torch.no_grad():
        cell.u.fill_(1.0)
        cell.d.copy_(torch.tensor([2.0, 2.0, -1.0]))
    assert cell.output(c)[0].tolist() == pytest.approx([0.0, math.tanh(1.5) + math.tanh(-0.5), -0.5 * (math.tanh(3.0) + math.tanh(1.0))], abs=1e-6)


def test_constrained_cell_step_follows_eq_1():
    torch.manual_seed(0)
    cell = ConstrainedLSTMCell(2, 3)
    x, h, c = torch.randn(4, 2), torch.randn(4, 3), torch.randn(4, 3)
    W, b, U = cell.input.weight, cell.input.bias, cell.recurrent.weight
    z = x @ W.T + b + h @ U.T
    i, f, g = torch.sigmoid(z[:, :3]), torch.sigmoid(z[:, 3:6]), torch.tanh(z[:, 6:])  # no output gate
    c_new = f * c + i * g
    h_new = 0.5 * (torch.tanh(c_new + 0.5) + torch.tanh(c_new - 0.5))
    h_out, c_out = cell(cell.input(x), (h, c))
    torch.testing.assert_close(c_out, c_new)
    torch.testing.assert_close(h_out, h_new)
    assert cell.u.requires_grad and cell.d.requires_grad


@pytest.mark.parametrize("layers", [1, 2])
def test_clstm_forward_equals_the_step_loop(layers):
    torch.manual_seed(0)
    m = CLSTM(3, 2, hidden_size=5, num_layers=layers)
    x = torch.randn(4, 7, 3)
    stepped, _ = m(x, return_states=True)
    torch.testing.assert_close(m(x), stepped)


# --- eq. (4): chrono initialisation ---------------------------------------------------------------
def test_chrono_biases_of_the_pytorch_lstm():
    torch.manual_seed(0)
    H, T = 256, 100
    m = LSTM(3, 2, hidden_size=H, num_layers=2, init="chrono", t_max=T)
    for layer in range(2):
        b = m.rnn.__getattr__(f"bias_ih_l{layer}") + m.rnn.__getattr__(f"bias_hh_l{layer}")  # PyTorch sums them
        b_i, b_f, b_g, b_o = b.detach().split(H)  # gate order (i, f, g, o)
        assert torch.all(b_f >= 0) and torch.all(b_f <= math.log(T - 1))
        torch.testing.assert_close(b_i, -b_f)
        assert torch.all(b_g == 0) and torch.all(b_o == 0)
        assert torch.all(m.rnn.__getattr__(f"bias_hh_l{layer}") == 0)  # set on one vector only
        # exp(b_f) ~ U[1, T−1]: mean (T/2) and spread match
        assert torch.exp(b_f).mean().item() == pytest.approx(T / 2, rel=0.1)
        assert torch.exp(b_f).min() < 10 and torch.exp(b_f).max() > T - 10


def test_standard_init_is_forget_bias_one_rest_zero():
    m = LSTM(3, 2, hidden_size=4)
    b = (m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0).detach()
    assert b.tolist() == [0.0] * 4 + [1.0] * 4 + [0.0] * 8


def test_chrono_biases_of_the_constrained_lstm_and_janet():
    torch.manual_seed(0)
    H, T = 64, 20
    bias = CLSTM(3, 2, hidden_size=H, init="chrono", t_max=T).cells[0].input.bias.detach()
    b_i, b_f, b_g = bias.split(H)
    assert torch.all((0 <= b_f) & (b_f <= math.log(T - 1))) and torch.equal(b_i, -b_f) and torch.all(b_g == 0)
    standard = CLSTM(3, 2, hidden_size=H).cells[0].input.bias.detach()
    assert standard.tolist() == [0.0] * H + [1.0] * H + [0.0] * H
    b_s, b_c = JANET(3, 2, hidden_size=H, t_max=T).cells[0].input.bias.detach().split(H)
    assert torch.all((0 <= b_s) & (b_s <= math.log(T - 1))) and torch.all(b_c == 0)


@pytest.mark.parametrize("make, field", [
    (lambda: LSTM(3, 2, init="glorot"), "model.init"),
    (lambda: CLSTM(3, 2, init="chrono", t_max=None), "model.t_max"),
    (lambda: JANET(3, 2, t_max=2), "model.t_max"),
    (lambda: NC(3, 2, hidden_sizes=[32]), "model.hidden_sizes"),
    (lambda: NC(3, 2, xi=-1.0), "model.xi"),
    (lambda: SMANN(3, 2, memory_slots=0), "model.memory_slots"),
    (lambda: SkipGRU(3, 2, budget=-1.0), "model.budget"),
])
def test_bad_settings_name_the_field(make, field):
    with pytest.raises(ConfigError, match=field):
        make()


# --- eqs. (5)-(8): the neural controller and its mask ---------------------------------------------
def test_initial_mask_is_all_ones_and_the_l1_gradient_reaches_m_prime():
    m = NC(3, 2, mask_length=10, xi=1e-6)
    assert m.mask().tolist() == [1.0] * 10
    m.extra_loss().backward()
    # straight-through: d(ξ Σ m)/dm′ = ξ σ′(0) = ξ / 4
    torch.testing.assert_close(m.mask.logits.grad, torch.full((10,), 0.25e-6))


@pytest.mark.parametrize("cls", [NC, SMANN])
def test_task_gradient_reaches_m_prime_through_the_straight_through_estimator(cls):
    torch.manual_seed(0)
    m = cls(3, 2, hidden_sizes=[4, 5], mask_length=12, dropout=0.0)
    m(torch.randn(2, 8, 3))[:, -1].sum().backward()
    grad = m.mask.logits.grad
    assert torch.all(grad[:7] != 0) and torch.all(grad[8:] == 0)  # steps 8..11 are beyond the sequence


def test_mask_segments_layer_1_and_gates_layer_2():
    torch.manual_seed(0)
    m = NC(3, 2, hidden_sizes=[4, 5], mask_length=6, dropout=0.0)
    set_mask(m, [1, 4])
    _, states = m(torch.randn(2, 6, 3), return_states=True)
    for t, s in enumerate(states):
        if t in (1, 4):
            assert torch.all(s.c1 == 0)  # eq. (5): the chain of layer 1 is cut
        else:
            assert torch.all(s.c1 != 0)
    assert torch.all(states[0].c2 == 0) and torch.equal(states[2].c2, states[1].c2) and torch.equal(states[3].h2, states[1].h2)
    assert not torch.equal(states[4].c2, states[3].c2)  # eq. (6): updates only where m = 1


@pytest.mark.parametrize("cls", [NC, SMANN])
def test_forward_equals_the_step_loop_with_and_without_gradients(cls):
    torch.manual_seed(0)
    m = cls(3, 2, hidden_sizes=[4, 5], mask_length=9, dropout=0.0)
    set_mask(m, [0, 3, 4, 8])
    x = torch.randn(2, 9, 3)
    stepped, _ = m(x, return_states=True)
    torch.testing.assert_close(m(x), stepped)
    with torch.no_grad():  # the path that skips the mask-off steps
        torch.testing.assert_close(m(x), stepped)


def test_k_ones_in_the_mask_give_exactly_k_memory_accesses(monkeypatch):
    torch.manual_seed(0)
    T, on = 20, [2, 7, 8, 15]
    m = SMANN(3, 2, hidden_sizes=[4, 5], memory_slots=6, memory_width=3, mask_length=T, dropout=0.0)
    set_mask(m, on)
    x = torch.randn(2, T, 3)
    writes = []
    real_write = smann_module.erase_add_write
    monkeypatch.setattr(smann_module, "erase_add_write", lambda *a: writes.append(1) or real_write(*a))
    with torch.no_grad():
        m(x)
    assert len(writes) == len(on)
    assert m.diagnostics() == {"mask_on": 4.0, "access_rate": 4 / T}
    m(x)  # while training too
    assert len(writes) == 2 * len(on)
    _, states = m(x, return_states=True)  # the step path
    assert len(writes) == 3 * len(on)
    memories = [m.initial_state(2).memory] + [s.memory for s in states]
    assert [t for t in range(T) if not torch.equal(memories[t + 1], memories[t])] == on


def test_smann_output_is_held_between_accesses():
    torch.manual_seed(0)
    m = SMANN(3, 2, hidden_sizes=[4, 5], mask_length=10, dropout=0.0)
    set_mask(m, [3, 6])
    y = m(torch.randn(2, 10, 3))
    torch.testing.assert_close(y[:, 4], y[:, 3])
    torch.testing.assert_close(y[:, 9], y[:, 6])
    assert not torch.allclose(y[:, 6], y[:, 5])


def test_sequences_longer_than_the_mask_are_refused():
    with pytest.raises(ConfigError, match="model.mask_length=5"):
        NC(3, 2, mask_length=5)(torch.randn(1, 6, 3))


def test_the_l1_term_alone_switches_the_mask_off_under_adam():
    m = NC(3, 2, mask_length=8, xi=1e-6)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        m.extra_loss().backward()
        opt.step()
    assert m.mask().sum().item() == 0  # Adam normalises the tiny ξ: m′ crosses 0 after one step


# --- baselines -----------------------------------------------------------------------------------
def test_janet_step_by_hand():
    torch.manual_seed(0)
    m = JANET(2, 1, hidden_size=3, num_layers=1, t_max=10)
    cell = m.cells[0]
    x, h = torch.randn(4, 2), torch.randn(4, 3)
    z = x @ cell.input.weight.T + cell.input.bias + h @ cell.recurrent.weight.T
    s, g = z[:, :3], z[:, 3:]
    expected = torch.sigmoid(s) * h + (1 - torch.sigmoid(s - 1.0)) * torch.tanh(g)  # β = 1
    torch.testing.assert_close(cell(cell.input(x), h), expected)


def test_skip_rnn_update_gate_accumulates_as_in_eq_5():
    torch.manual_seed(0)
    m = SkipGRU(2, 1, hidden_size=3, num_layers=2, dropout=0.0, budget=1e-3)
    with torch.no_grad():  # Δũ = σ(W_p s + b_p) = 0.2 whatever the state
        m.update_prob.weight.zero_()
        m.update_prob.bias.fill_(math.log(0.2 / 0.8))
    x = torch.randn(1, 8, 2)
    y, states = m(x, return_states=True)
    updates = [s.updates.item() for s in states]
    # ũ: 1 -> u=1; 0.2 -> 0; 0.4 -> 0; 0.6 -> 1; 0.2 -> 0; 0.4 -> 0; 0.6 -> 1; 0.2 -> 0
    assert [b - a for a, b in zip([0.0] + updates, updates)] == pytest.approx([1, 0, 0, 1, 0, 0, 1, 0])
    torch.testing.assert_close(states[2].layers, states[0].layers)  # skipped steps copy the state
    torch.testing.assert_close(y[:, 1], y[:, 0])
    assert m.extra_loss().item() == pytest.approx(1e-3 * 3)
    assert m.diagnostics() == {"update_rate": pytest.approx(3 / 8)}


def test_skip_rnn_budget_gradient_reaches_the_update_gate():
    torch.manual_seed(0)
    m = SkipLSTM(2, 1, hidden_size=3, budget=1.0)
    m(torch.randn(2, 6, 2))
    m.extra_loss().backward()
    assert m.update_prob.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", [SkipLSTM, SkipGRU, JANET])
def test_baselines_forward_equals_step_loop(cls):
    torch.manual_seed(0)
    m = cls(3, 2, dropout=0.0)
    x = torch.randn(2, 6, 3)
    stepped, _ = m(x, return_states=True)
    torch.testing.assert_close(m(x), stepped)
