"""NTM, DNC and stack-RNN models: sizes, state, invariants over steps, and a small learning run."""
import math

import pytest
import torch

from memrepro.errors import ConfigError
from memrepro.models.dnc import DNC
from memrepro.models.ntm import CONSTANT_INIT, NTM
from memrepro.models.stack_rnn import EMPTY, StackRNN, stack_update
from memrepro.tasks.formal_language import FormalLanguage
from memrepro.train.losses import loss_and_metrics

SMALL_NTM = dict(controller_size=16, memory_slots=10, memory_width=6)
SMALL_DNC = dict(controller_size=16, memory_slots=8, memory_width=5, read_heads=2)
SMALL_STACK = dict(hidden_size=8, num_stacks=2, capacity=12)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and the machine is shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make(cls, **kw):
    torch.manual_seed(0)
    sizes = {NTM: SMALL_NTM, DNC: SMALL_DNC, StackRNN: SMALL_STACK}[cls]
    return cls(5, 3, **{**sizes, **kw})


# --- sizes --------------------------------------------------------------------------------------
def test_ntm_parameter_count_at_the_papers_copy_sizes():
    # Copy: 8 bits + delimiter in, 8 out; LSTM 100, 1 read + 1 write head, 128 x 20 memory.
    lstm = 4 * 100 * (9 + 20 + 100) + 4 * 100  # one matrix on [x; r; h], one bias vector
    interface = (100 + 1) * ((20 + 1 + 1 + 3 + 1) * 2 + 2 * 20)  # k β g s γ per head, e a
    output = (100 + 20 + 1) * 8
    assert NTM(9, 8).num_parameters() == lstm + interface + output == 62_260
    assert NTM(9, 8, memory_init="learned").num_parameters() == 62_260 + 128 * 20


# --- the step loop ------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [NTM, DNC, StackRNN])
def test_forward_equals_step_loop_and_returns_states(cls):
    model = make(cls)
    x = torch.randn(4, 7, 5)
    y, states = model(x, return_states=True)
    state, outs = model.initial_state(4), []
    for t in range(7):
        out, state = model.step(x[:, t], state)
        outs.append(out)
    torch.testing.assert_close(y, torch.stack(outs, 1))
    assert y.shape == (4, 7, 3) and len(states) == 7
    trace = model.trace(states[-1])  # keeps its graph: the forcing trainers' features train the model
    assert trace and all(v.shape[0] == 4 and v.requires_grad for v in trace.values())


@pytest.mark.parametrize("cls", [NTM, DNC, StackRNN])
def test_models_run_under_vmap_over_stacked_seeds(cls):
    """trainer.parallel_seeds runs one model under torch.vmap over stacked parameters."""
    from torch.func import functional_call

    models = [make(cls) for _ in range(3)]
    for seed, model in enumerate(models):
        torch.manual_seed(seed)
        for p in model.parameters():
            p.data.normal_(0, 0.3)
    params = {name: torch.stack(ps) for name, *ps in zip(dict(models[0].named_parameters()), *(m.parameters() for m in models))}
    buffers = {name: torch.stack(bs) for name, *bs in zip(dict(models[0].named_buffers()), *(m.buffers() for m in models))}
    x = torch.randn(3, 2, 5, 5)
    y = torch.vmap(lambda p, b, xs: functional_call(models[0], (p, b), (xs,)))(params, buffers, x)
    torch.testing.assert_close(y, torch.stack([m(x[i]) for i, m in enumerate(models)]))


@pytest.mark.parametrize("cls", [NTM, DNC, StackRNN])
def test_gradients_are_finite_over_a_long_sequence(cls):
    model = make(cls)
    model(torch.randn(3, 60, 5)).pow(2).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# --- NTM ----------------------------------------------------------------------------------------
def test_ntm_initial_state():
    model = make(NTM, read_heads=2, write_heads=3, memory_init="constant")
    state = model.initial_state(2)
    assert torch.equal(state.memory, torch.full((2, 10, 6), CONSTANT_INIT))
    assert torch.equal(state.weights, torch.eye(10)[[0] * 5].expand(2, 5, 10))  # every head on slot 0
    torch.testing.assert_close(state.reads, torch.full((2, 2, 6), CONSTANT_INIT))
    trace = model.trace(model.step(torch.randn(2, 5), state)[1])
    assert trace["read_weights"].shape == (2, 2, 10) and trace["write_weights"].shape == (2, 3, 10)
    torch.testing.assert_close(trace["write_weights"].sum(-1), torch.ones(2, 3))


def test_ntm_memory_init_modes():
    random = make(NTM, memory_init="random")
    assert torch.equal(random.initial_state(1).memory, random.initial_state(1).memory)  # drawn once
    assert "memory_init" not in dict(random.named_parameters())
    learned = make(NTM, memory_init="learned")
    learned(torch.randn(2, 4, 5)).sum().backward()
    assert learned.memory_init.grad.abs().sum() > 0


@pytest.mark.parametrize("sharpening", [True, False])
def test_ntm_sharpening_off_makes_the_weights_independent_of_gamma(sharpening):
    model = make(NTM, sharpening=sharpening)
    x = torch.randn(2, 6, 5)
    _, before = model(x, return_states=True)
    gamma = sum(model.splits[:4])  # the interface rows of γ: after keys, β, g and s
    with torch.no_grad():
        model.interface.bias[gamma : gamma + model.splits[4]] += 5.0  # γ from ~1.7 to ~6
    _, after = model(x, return_states=True)
    assert torch.equal(before[-1].weights, after[-1].weights) != sharpening


def test_ntm_feedforward_controller_and_clipping():
    model = make(NTM, controller="feedforward", clip_value=0.5)
    assert model.initial_state(2).controller == ()
    assert model(torch.randn(2, 5, 5) * 100).abs().max() <= 0.5


# --- DNC ----------------------------------------------------------------------------------------
def test_dnc_invariants_hold_over_steps():
    model = make(DNC)
    _, states = model(torch.randn(6, 25, 5), return_states=True)
    for s in states:
        assert (s.usage >= 0).all() and (s.usage <= 1).all()
        assert torch.equal(s.link.diagonal(dim1=-2, dim2=-1), torch.zeros(6, 8))
        assert (s.link.sum(-1) <= 1 + 1e-5).all() and (s.link.sum(-2) <= 1 + 1e-5).all()
        assert (s.write_weights.sum(-1) <= 1 + 1e-5).all()
        assert (s.read_weights.sum(-1) <= 1 + 1e-5).all()


def test_dnc_allocates_the_least_used_slot():
    """With the write and allocation gates open and no freeing, each write fills the least-used
    slot (u_t, computed before the write) and never one written before."""
    model = make(DNC)
    start = sum(model.splits[:6])  # ξ layout: ... | free gates | allocation gate | write gate | modes
    with torch.no_grad():
        model.interface.weight.zero_()
        model.interface.bias.zero_()
        model.interface.bias[start : start + 2] = -20.0  # free gates closed
        model.interface.bias[start + 2 : start + 4] = 20.0  # allocation and write gates open
    with torch.no_grad():
        _, states = model(torch.randn(1, 8, 5), return_states=True)
    slots = [int(s.write_weights.argmax()) for s in states]
    assert slots[0] == 0  # all slots unused: the tie goes to the lowest index
    assert all(s.usage[0, slot] <= s.usage.min() + 1e-6 for s, slot in zip(states, slots))  # up to float near-ties
    assert sorted(slots) == list(range(8)) and all(float(s.write_weights.max()) > 0.99 for s in states)


# --- stack-RNN ----------------------------------------------------------------------------------
def test_stack_push_pop_no_op_on_hand_made_actions():
    push, pop, no_op = torch.eye(3)
    stacks = torch.full((1, 1, 4), EMPTY)
    history = []
    for action, value in ((push, 0.7), (push, 0.3), (no_op, 0.9), (pop, 0.9), (pop, 0.9), (pop, 0.9)):
        stacks = stack_update(stacks, action.view(1, 1, 3), torch.tensor([[value]]))
        history.append(stacks[0, 0])
    expected = [
        [0.7, -1, -1, -1],
        [0.3, 0.7, -1, -1],
        [0.3, 0.7, -1, -1],
        [0.7, -1, -1, -1],
        [-1, -1, -1, -1],
        [-1, -1, -1, -1],  # popping an empty stack leaves it empty
    ]
    torch.testing.assert_close(torch.stack(history), torch.tensor(expected, dtype=torch.float32))
    half = stack_update(torch.tensor([[[0.3, 0.7, -1.0, -1.0]]]), torch.tensor([[[0.5, 0.5]]]), torch.tensor([[0.9]]))
    torch.testing.assert_close(half[0, 0], torch.tensor([0.8, -0.35, -0.15, -1.0]))  # ½ [.9 .3 .7 -1] + ½ [.7 -1 -1 -1]


def test_stack_rounding_only_at_evaluation():
    model = make(StackRNN, rounding=True)
    x = torch.randn(2, 6, 5)
    _, train_states = model(x, return_states=True)
    assert not torch.isin(train_states[-1].actions, torch.tensor([0.0, 1.0])).all()
    model.eval()
    _, eval_states = model(x, return_states=True)
    for s in eval_states:
        assert torch.equal(s.actions.sum(-1), torch.ones(2, 2)) and torch.isin(s.actions, torch.tensor([0.0, 1.0])).all()


def test_stack_rnn_learns_anbn_on_small_n():
    """The deterministic half of a^n b^n, n in 2..4, needs the stack: the model has no recurrent
    matrix (J&M's -mod 1), so counting the a's must go through push/pop."""
    torch.manual_seed(0)
    task = FormalLanguage("anbn", train_n=(2, 4), curriculum=False, seq_len=40, score="deterministic", eval_n=(2, 4), eval_strings=3)
    model = StackRNN(2, 2, hidden_size=8, num_stacks=1, capacity=16)
    evaluation = task.extra_eval_sets(torch.Generator().manual_seed(1))["n2_4"]
    with torch.no_grad():
        assert task.metrics(model(evaluation.inputs), evaluation)["unsolved"] > 0
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        batch = task.sample(16, generator)
        loss, _ = loss_and_metrics("classes", model(batch.inputs), batch, 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert task.metrics(model(evaluation.inputs), evaluation)["unsolved"] == 0.0


# --- bad configuration --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, kw, field",
    [
        (NTM, dict(controller="transformer"), "model.controller"),
        (NTM, dict(memory_init="zeros"), "model.memory_init"),
        (NTM, dict(shift_range=5), "model.shift_range"),
        (NTM, dict(read_heads=0), "model.read_heads"),
        (NTM, dict(clip_value=-1), "model.clip_value"),
        (DNC, dict(memory_width=0), "model.memory_width"),
        (StackRNN, dict(depth=20), "model.depth"),
    ],
)
def test_bad_config_is_one_line_config_error(cls, kw, field):
    with pytest.raises(ConfigError, match=field) as info:
        make(cls, **kw)
    assert "\n" not in str(info.value)


# --- figures ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [NTM, DNC, StackRNN])
def test_memory_trace_and_length_figures_are_written(cls, tmp_path):
    from memrepro.results.memory_plots import plot_length_generalization, plot_memory_trace

    model = make(cls)
    x = torch.randn(2, 6, 5)
    with torch.no_grad():
        y, states = model(x, return_states=True)
    path = plot_memory_trace(tmp_path / "trace.png", x, torch.randint(0, 3, (2, 6)), torch.softmax(y, -1), [model.trace(s) for s in states])
    assert path.stat().st_size > 10_000
    path = plot_length_generalization(tmp_path / "lengths.png", [10, 20, 40], {"NTM": [0, 0.1, 2], "LSTM": [0, 1, 30]}, (1, 20))
    assert path.stat().st_size > 10_000


def test_a_tables_length_figure_has_one_line_per_run_evaluated_at_several_lengths(tmp_path, monkeypatch):
    import pandas as pd
    from memrepro.results import memory_plots

    runs = pd.DataFrame([
        {"cell": "ntm", "seed": 0, "output_kind": "bits", "len20_bit_errors": 0.0, "len40_bit_errors": 0.5, "len120_bit_errors": 3.0},
        {"cell": "ntm", "seed": 1, "output_kind": "bits", "len20_bit_errors": 0.0, "len40_bit_errors": 1.5, "len120_bit_errors": float("nan")},
        {"cell": "lstm", "seed": 0, "output_kind": "bits", "len20_bit_errors": 5.0, "len40_bit_errors": 121.0, "len120_bit_errors": 465.0},
        {"cell": "params", "seed": 0, "output_kind": "bits", "len20_bit_errors": float("nan"), "len40_bit_errors": float("nan"), "len120_bit_errors": float("nan")},
    ])
    drawn = {}
    monkeypatch.setattr(memory_plots, "plot_length_generalization", lambda path, lengths, errors, *a, **k: drawn.update(lengths=lengths, errors=errors) or path)
    memory_plots.plot_runs_by_length(runs, tmp_path / "l.png")
    assert drawn["lengths"] == [20, 40, 120]
    assert list(drawn["errors"]) == ["lstm · seed 0", "ntm · seed 0", "ntm · seed 1"]  # the run without lengths is left out
    assert drawn["errors"]["ntm · seed 1"][:2] == [0.0, 1.5] and math.isnan(drawn["errors"]["ntm · seed 1"][2])
    assert memory_plots.plot_runs_by_length(runs[runs["cell"] == "params"], tmp_path / "none.png") is None


@pytest.mark.parametrize("model_name", ["ntm", "dnc", "stack_rnn", "nmn"])  # nmn: one flat memory vector
def test_a_memory_models_run_folder_gets_its_figures(model_name, tmp_path):
    from conftest import smoke_cfg
    from memrepro.run import run

    summary = run(smoke_cfg(f"model={model_name}", "task=copy", "plots=true"), tmp_path)
    assert summary["figures"] == ["curves.png", "memory_trace.png", "length_generalization.png"]
    assert all((tmp_path / f).stat().st_size > 10_000 for f in summary["figures"])


def test_gru_controller_matches_torch_gru_cell():
    """The written-out GRU controller (Memory Forcing's DNC) is PyTorch's GRUCell."""
    from memrepro.models.controller import Controller

    torch.manual_seed(0)
    ctrl = Controller(5, 4, layers=1, kind="gru")
    ref = torch.nn.GRUCell(5, 4)
    cell = ctrl.layers[0]
    with torch.no_grad():
        ref.weight_ih.copy_(cell.weight_x), ref.weight_hh.copy_(cell.weight_h)
        ref.bias_ih.copy_(cell.bias_x), ref.bias_hh.copy_(cell.bias_h)
    x, h = torch.randn(3, 5), torch.randn(3, 4)
    out, state = ctrl([x[:, :2], x[:, 2:]], ((h,),))
    torch.testing.assert_close(out, ref(x, h))
    torch.testing.assert_close(state[0][0], out)
