"""NMN (Biggs & Nuttall §III): the augmented output of eq. (2) and the memory update of eq. (11) on
hand-computed numbers, orthogonality of the stored patterns, decay only on firing, eq. (12), and a
model that learns; the Gaussian-memory FFNN of §I and its sinusoid task."""
import math

import pytest
import torch
from hypothesis import given, strategies as st
from test_task_properties import PROPERTY, check_batch

from memrepro.errors import ConfigError
from memrepro.models.gaussian_memory import GaussianMemoryFFNN, gaussian_memory_weights
from memrepro.models.nmn import NMN, MemoryLayer, decay
from memrepro.tasks.nmn_tasks import ExtendedRecall
from memrepro.tasks.sinusoid import Sinusoid
from memrepro.train.losses import loss_and_metrics


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def one_layer_nmn(outputs: list[float], input_size: int = 2, **kwargs) -> NMN:
    """A single hidden layer whose sigmoid outputs are ``outputs`` whatever the input."""
    m = NMN(input_size, 1, hidden_sizes=[len(outputs)], **kwargs)
    with torch.no_grad():
        m.layers[0].linear.weight.zero_()
        m.layers[0].linear.bias.copy_(torch.tensor([logit(p) for p in outputs]))
    return m


# --- eq. (2): the augmented output ---------------------------------------------------------------
def test_augmented_output_interleaves_each_neuron_with_its_switched_memories():
    layer = MemoryLayer(in_size=1, size=2, input_size=1, write="nearest_neighbor", addressing="orthogonal", neighbours=0)
    memory = torch.tensor([[[[2.0], [0.5]], [[0.0], [3.0]]]])  # [B=1, H=2, K=2, S=1]
    x = torch.tensor([[0.8, 0.1]])
    # [x1, x1·M1ᵀ, x2, x2·M2ᵀ] = [0.8, 0.8·2, 0.8·0.5, 0.1, 0.1·0, 0.1·3]
    expected = torch.tensor([[0.8, 1.6, 0.4, 0.1, 0.0, 0.3]])
    torch.testing.assert_close(layer.read(x, memory), expected)


def test_the_step_reads_the_memory_stored_before_it_then_stores():
    m = one_layer_nmn([0.9, 0.2, 0.7], neighbours=2)
    with torch.no_grad():
        m.output.weight.fill_(1.0)
        m.output.bias.zero_()
    state = m.initial_state(1)
    y0, state = m.step(torch.zeros(1, 2), state)
    assert y0.item() == pytest.approx(0.9 + 0.2 + 0.7)  # empty banks: only the neurons themselves
    y1, _ = m.step(torch.zeros(1, 2), state)
    # neurons 0 and 2 fired at step 0 and stored one unit each; the switches are 0.9 and 0.7
    assert y1.item() == pytest.approx(0.9 + 0.2 + 0.7 + 0.9 * 1 + 0.7 * 1)


# --- eq. (11): the memory update -----------------------------------------------------------------
def test_memory_update_by_hand():
    # x = [0.9, 0.2, 0.7] rounds to [1, 0, 1]; τ = 2, neighbourhoods on a ring, bit b of the
    # pattern index = round(x_{j-1+b}):  j=0: (x2, x0, x1) = (1, 1, 0) -> 1 + 2 = 3
    #                                    j=2: (x1, x2, x0) = (0, 1, 1) -> 2 + 4 = 6
    m = one_layer_nmn([0.9, 0.2, 0.7], neighbours=2, decay_train=0.5)
    before = torch.arange(3 * 8, dtype=torch.float32).reshape(1, 3, 8, 1)
    _, (after,) = m.step(torch.zeros(1, 2), (before,))
    expected = before.clone()
    expected[0, 0] = 0.5 * before[0, 0]
    expected[0, 0, 3] += 1
    expected[0, 2] = 0.5 * before[0, 2]
    expected[0, 2, 6] += 1
    torch.testing.assert_close(after, expected)  # neuron 1 did not fire: its bank is untouched


def test_decay_only_when_the_neuron_fires():
    m = one_layer_nmn([0.3, 0.6], neighbours=0, decay_train=0.5)
    state = (torch.ones(1, 2, 2, 1),)
    for _ in range(4):
        _, state = m.step(torch.zeros(1, 2), state)
    bank = state[0][0, :, :, 0]
    torch.testing.assert_close(bank[0], torch.tensor([1.0, 1.0]))  # silent neuron: kept as it was
    # firing neuron: pattern (x_j=1) -> slot 1 each time; M := 0.5 M + e1, four times from [1, 1]
    torch.testing.assert_close(bank[1], torch.tensor([1 / 16, 1 / 16 + 0.5 + 0.25 + 0.125 + 1]))


def test_write_always_adds_the_silent_pattern_without_decay():
    # eq. (11) read literally: g is added at every step; the decay still needs a firing
    m = one_layer_nmn([0.3], neighbours=0, decay_train=0.5, write_when="always")
    state = m.initial_state(1)
    for _ in range(3):
        _, state = m.step(torch.zeros(1, 2), state)
    torch.testing.assert_close(state[0][0, 0, :, 0], torch.tensor([3.0, 0.0]))


def test_stored_patterns_are_orthogonal_and_their_sum_keeps_every_count():
    torch.manual_seed(0)
    H, tau, T = 6, 2, 40
    layer = MemoryLayer(in_size=4, size=H, input_size=4, write="nearest_neighbor", addressing="orthogonal", neighbours=tau)
    x = torch.rand(T, 1, H)
    fire, new = layer.new_memories(x, torch.zeros(T, 1, 4), always=False)
    vectors = new[:, 0, :, :, 0]  # [T, H, 8]
    fired = fire[:, 0, :, 0, 0].bool()
    assert torch.all(vectors[fired].sum(-1) == 1) and torch.all(vectors[~fired] == 0)  # one-hot or nothing
    gram = torch.einsum("thk,shk->hts", vectors, vectors)  # per neuron: <g_t, g_s>
    same = (vectors.argmax(-1).T[:, :, None] == vectors.argmax(-1).T[:, None, :]) & fired.T[:, :, None] & fired.T[:, None, :]
    torch.testing.assert_close(gram, same.float())  # different patterns are orthogonal
    # with γ = 1 the composite memory is the count of each pattern: recomputed here neuron by neuron
    memory = torch.zeros(1, H, 8, 1)
    for t in range(T):
        memory = layer.write(memory, fire[t], new[t], 1.0, 0.0)
    bits = (x[:, 0] > 0.5).long()
    counts = torch.zeros(H, 8)
    for t in range(T):
        for j in range(H):
            if bits[t, j]:
                k = bits[t, (j - 1) % H] + 2 * bits[t, j] + 4 * bits[t, (j + 1) % H]
                counts[j, k] += 1
    torch.testing.assert_close(memory[0, :, :, 0], counts)


def test_input_write_records_the_network_input_on_firing():
    m = one_layer_nmn([0.9, 0.1], input_size=3, write="input", decay_train=0.5)
    x = torch.tensor([[1.0, -2.0, 3.0]])
    _, (bank,) = m.step(x, (torch.ones(1, 2, 1, 3),))
    torch.testing.assert_close(bank[0, 0, 0], 0.5 + x[0])
    torch.testing.assert_close(bank[0, 1, 0], torch.ones(3))


def test_asymptotic_decay_stops_at_the_floor():
    memory = torch.tensor([1.0, 0.2, -1.0, 0.0])
    torch.testing.assert_close(decay(memory, 0.5, 0.25), torch.tensor([0.625, 0.2, -0.625, 0.0]))
    torch.testing.assert_close(decay(memory, 0.5, 0.0), 0.5 * memory)


def test_training_and_use_have_their_own_decay():
    m = one_layer_nmn([0.9], neighbours=0, decay_train=0.5, decay_eval=1.0)
    start = (torch.ones(1, 1, 2, 1),)
    _, (trained,) = m.train().step(torch.zeros(1, 2), start)
    _, (used,) = m.eval().step(torch.zeros(1, 2), start)
    torch.testing.assert_close(trained[0, 0, :, 0], torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(used[0, 0, :, 0], torch.tensor([1.0, 2.0]))


# --- eq. (12): learned addressing ----------------------------------------------------------------
def test_learned_addressing_is_the_binary_to_linear_map_of_eq_12():
    layer = MemoryLayer(in_size=1, size=3, input_size=1, write="nearest_neighbor", addressing="learned", neighbours=2)
    x1, x2, x3 = 0.9, 0.3, 0.6  # neuron 1 switches; its neighbours are x2 = x_0 and x3 = x_2
    x = torch.tensor([[x2, x1, x3]])
    memory = torch.zeros(1, 3, 4, 1)
    slots = torch.tensor([1.0, 2.0, 4.0, 8.0])  # M_{1,1..4}
    memory[0, 1, :, 0] = slots
    expected = x1 * ((1 - x3) * (1 - x2) * 1 + (1 - x3) * x2 * 2 + x3 * (1 - x2) * 4 + x3 * x2 * 8)
    assert layer.read(x, memory)[0, 2:4].tolist() == pytest.approx([x1, expected])
    torch.testing.assert_close(layer.addresses(x).sum(-1), torch.ones(1, 3))


def test_learned_addressing_writes_the_slot_of_the_binarised_neighbours():
    m = one_layer_nmn([0.3, 0.9, 0.6], addressing="learned", neighbours=2, decay_train=0.5)
    _, (bank,) = m.step(torch.zeros(1, 2), (torch.ones(1, 3, 4, 1),))
    # neuron 1 fires; neighbours (x0, x2) round to (0, 1): slot 0 + 2·1 = 2
    torch.testing.assert_close(bank[0, 1, :, 0], torch.tensor([0.5, 0.5, 1.5, 0.5]))


def test_gradients_reach_the_switches_and_addresses_not_the_stored_memories():
    torch.manual_seed(0)
    m = NMN(3, 2, hidden_sizes=[5], addressing="learned")
    x = torch.randn(2, 6, 3)
    m(x).sum().backward()
    assert m.layers[0].linear.weight.grad.abs().sum() > 0
    _, states = m(x, return_states=True)
    assert not states[-1][0].requires_grad


# --- the model as a whole ------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {}, {"write": "nearest_neighbor"}, {"addressing": "learned"}, {"write": "nearest_neighbor", "addressing": "learned"},
    {"write_when": "always", "decay_floor": 0.2}, {"memory": False}, {"neighbours": 0},
])
def test_forward_equals_the_step_loop(kwargs):
    torch.manual_seed(0)
    m = NMN(4, 3, hidden_sizes=[6, 5], **kwargs)
    x = torch.randn(3, 9, 4)
    stepped, states = m(x, return_states=True)
    torch.testing.assert_close(m(x), stepped)
    torch.testing.assert_close(m(x), m(x))  # deterministic, and the memory restarts with every sequence
    if m.memory:  # the banks of both layers, flattened, for the memory figures and memory forcing
        banks = sum(layer.linear.out_features * layer.slots * layer.width for layer in m.layers)
        assert m.trace(states[-1])["memory"].shape == (3, banks)


def test_memory_off_is_the_memoryless_ffnn():
    torch.manual_seed(0)
    m = NMN(3, 2, hidden_sizes=[6], memory=False)
    x = torch.randn(2, 5, 3)
    x2 = x.clone()
    x2[:, :3] = torch.randn(2, 3, 3)
    torch.testing.assert_close(m(x2)[:, 3:], m(x)[:, 3:])
    assert m.initial_state(2) == ()


def test_memory_carries_the_past_into_the_present():
    torch.manual_seed(0)
    m = NMN(3, 2, hidden_sizes=[6])
    x = torch.randn(2, 5, 3)
    x2 = x.clone()
    x2[:, 0] = torch.randn(2, 3)
    assert not torch.allclose(m(x2)[:, 4], m(x)[:, 4])


@pytest.mark.parametrize("kwargs, field", [
    ({"write": "outputs"}, "model.write"),
    ({"addressing": "hashed"}, "model.addressing"),
    ({"neighbours": 3}, "model.neighbours"),
    ({"decay_train": 1.5}, "model.decay_train"),
    ({"decay_eval": -0.1}, "model.decay_eval"),
    ({"decay_floor": -1.0}, "model.decay_floor"),
    ({"write_when": "sometimes"}, "model.write_when"),
    ({"hidden_sizes": [2], "neighbours": 2}, r"model.hidden_sizes\[0\]"),
])
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        NMN(3, 2, **kwargs)


def test_nmn_learns_the_cued_recall_that_a_memoryless_net_cannot():
    torch.manual_seed(0)
    task = ExtendedRecall(delay=6, length=24, cued=True)
    models = {"nmn": NMN(task.input_size, task.output_size, hidden_sizes=[32], write="input", decay_train=0.9),
              "ffnn": NMN(task.input_size, task.output_size, hidden_sizes=[32], memory=False)}
    test = task.sample(256, torch.Generator().manual_seed(1))
    errors = {}
    for name, m in models.items():
        opt, g = torch.optim.Adam(m.parameters(), lr=1e-2), torch.Generator().manual_seed(0)
        for _ in range(150):
            batch = task.sample(32, g)
            loss, _ = loss_and_metrics("classes", m(batch.inputs), batch, task.num_classes)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            errors[name] = task.metrics(m.eval()(test.inputs), test)["error_long"]
    assert errors["ffnn"] > 0.5  # chance is 2/3
    assert errors["nmn"] < 0.25  # measured 0.08-0.11 over seeds 0-4


def test_cued_extended_recall_scores_the_long_term_output_at_the_flags_only():
    task = ExtendedRecall(delay=3, length=10, noise=0.0, cued=True)
    b = task.sample(4, torch.Generator().manual_seed(0))
    flags = torch.tensor([1.0, 0, 0, 1, 0, 0, 1, 0, 0, 1])
    assert task.input_size == 4 and torch.equal(b.inputs[0, :, 3], flags)
    classes = b.inputs[..., :3].argmax(-1)
    torch.testing.assert_close(b.mask[0, :, 1], flags * (torch.arange(10) >= 3))
    assert torch.equal(b.targets[:, [3, 6, 9], 1], classes[:, [0, 3, 6]])


# --- §I: the FFNN with a Gaussian memory and its sinusoid -------------------------------------------
def test_gaussian_memory_weights_are_normalised_bumps_with_the_figures_peaks():
    g = gaussian_memory_weights(10, 5, 0.5)
    torch.testing.assert_close(g.sum(-1), torch.ones(5))
    assert g.argmax(-1).tolist() == [0, 2, 4, 7, 9]  # centres 0, 2.25, 4.5, 6.75, 9
    assert 0.7 < g.max().item() < 0.9  # Fig. 1(b): peaks near 0.8


def test_gaussian_memory_ffnn_sees_exactly_the_ten_previous_inputs():
    torch.manual_seed(0)
    m = GaussianMemoryFFNN(1, 1)
    x = torch.randn(2, 30, 1)
    y = m(x)
    stepped, _ = m(x, return_states=True)
    torch.testing.assert_close(y, stepped)
    x_old, x_recent = x.clone(), x.clone()
    x_old[:, 8] += 1.0  # 11 steps before step 19: outside the memory
    x_recent[:, 9] += 1.0  # 10 steps before: the oldest memory location
    torch.testing.assert_close(m(x_old)[:, 19], y[:, 19])
    assert not torch.allclose(m(x_recent)[:, 19], y[:, 19])


def test_sinusoid_worked_example_and_its_test_signal():
    task = Sinusoid(length=5, period=4, noise=0.0, warmup=1, eval_size=8)
    b = task.sample(3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(b.targets[:, :-1], b.inputs[:, 1:])  # the target is the next sample
    phase = torch.atan2(b.inputs[:, 0, 0], b.inputs[:, 1, 0])  # x_t = sin(πt/2 + φ)
    t = torch.arange(6.0)
    torch.testing.assert_close(torch.cat([b.inputs[..., 0], b.targets[:, -1:, 0]], 1), torch.sin(math.pi * t / 2 + phase[:, None]))
    assert b.mask[0].tolist() == [0, 1, 1, 1, 1]
    test = task.extra_eval_sets(torch.Generator().manual_seed(0))["mix"]
    assert test.inputs.shape == (8, 5, 1) and test.inputs.abs().max() <= 1.0


def test_sinusoid_relative_error():
    task = Sinusoid(length=50, warmup=10)
    b = task.sample(4, torch.Generator().manual_seed(0))
    metrics = task.metrics(b.targets, b)
    assert metrics["relative_error"] == 0
    assert metrics["persistence_relative_error"] == pytest.approx(task.metrics(b.inputs, b)["relative_error"])
    assert task.metrics(torch.zeros_like(b.targets), b)["relative_error"] == pytest.approx(1.0)


@PROPERTY
@given(length=st.integers(2, 120), period=st.floats(2.0, 200.0), noise=st.floats(0.0, 1.0), components=st.integers(1, 5),
       lo=st.floats(2.0, 100.0), extra=st.floats(0.0, 100.0), B=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_sinusoid_batches_are_well_formed(length, period, noise, components, lo, extra, B, seed):
    task = Sinusoid(length=length, period=period, noise=noise, test_components=components, test_periods=(lo, lo + extra),
                    warmup=min(10, length - 1), eval_size=3)
    check_batch(task, task.sample(B, torch.Generator().manual_seed(seed)), B)
    check_batch(task, task.extra_eval_sets(torch.Generator().manual_seed(seed))["mix"], 3)


@PROPERTY
@given(delay=st.integers(1, 30), extra=st.integers(1, 60), B=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_cued_extended_recall_batches_are_well_formed(delay, extra, B, seed):
    task = ExtendedRecall(delay=delay, length=delay + extra, cued=True)
    batch = task.sample(B, torch.Generator().manual_seed(seed))
    check_batch(task, batch, B)
    assert batch.mask[..., 1].sum(1).min() >= 1  # at least one long-term question per sequence

