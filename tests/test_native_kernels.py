"""The native NTM and DNC sequences (compile=true) compute what the Python models compute: the
same outputs and, by their hand-derived backward passes, the same gradients as autograd through
the Python models, for every head layout, shift range, clip and memory initialisation they take."""
import shutil

import pandas as pd
import pytest
import torch
from scipy.optimize import linear_sum_assignment  # scipy comes with scikit-learn

from memrepro.models import dnc_native, native, ntm_native
from memrepro.models.dnc import DNC
from memrepro.models.ntm import NTM
from memrepro.results import io
from memrepro.tasks.algorithmic import Copy
from memrepro.train import compiled
from test_parallel import trainer

pytestmark = pytest.mark.skipif(not shutil.which("c++") and not shutil.which("g++"), reason="needs a C++ compiler")


def small_ntm(**kwargs) -> NTM:
    torch.manual_seed(1)
    return NTM(5, 4, **{"controller_size": 6, "memory_slots": 9, "memory_width": 5, **kwargs})


@pytest.mark.parametrize("kwargs", [
    {},
    {"read_heads": 2},
    {"write_heads": 2},
    {"read_heads": 2, "write_heads": 3, "shift_range": 2},
    {"clip_value": None},
    {"clip_value": 0.5},  # most interface values clipped: their gradients stop
    {"memory_init": "learned"},  # the gradient reaches the initial memory
    {"memory_init": "random", "memory_width": 37},
    {"sharpening": False},  # γ = 1: its interface rows get no gradient
])
def test_ntm_outputs_and_gradients_match_autograd(kwargs):
    assert_matches_autograd(small_ntm(**kwargs), ntm_native, torch.randn(3, 7, 5))


def small_dnc(**kwargs) -> DNC:
    torch.manual_seed(1)
    return DNC(5, 4, **{"controller_size": 6, "memory_slots": 9, "memory_width": 5, "read_heads": 2, **kwargs})


@pytest.mark.parametrize("kwargs", [
    {},
    {"read_heads": 1},
    {"read_heads": 3, "clip_value": None},
    {"read_heads": 4},  # the link sweeps take read heads in chunks of up to four
    {"read_heads": 6},
    {"clip_value": 0.5},
    {"memory_width": 37},
    {"controller": "gru"},  # mf-1, mf-2's controller
    {"controller": "gru", "read_heads": 4, "clip_value": 0.5},
])
def test_dnc_outputs_and_gradients_match_autograd(kwargs):
    """10 steps on 16 slots: allocation, links and retention all carry gradient. The final state is
    compared where it does not depend on slot order: slots written alike have usages a last bit
    apart, which the allocation's sort may order either way under different rounding (in any two
    implementations), swapping which of two like slots holds what; outputs do not see the swap."""
    assert_matches_autograd(small_dnc(memory_slots=16, **kwargs), dnc_native, torch.randn(2, 10, 5), final=("controller", "reads"))


@pytest.mark.parametrize("steps", [3, 4])
def test_dnc_final_link_matrix_for_odd_and_even_lengths(steps):
    """The kernel keeps the link matrices of even steps, the last odd one in a slot of its own
    (dnc_native.cpp, Links): the final state is the Python model's either way, up to which of
    two slots written alike the allocation took (a last-bit tie in usage that the two round
    differently: with 8-float vectors it flips at step 4 here, with 16-float ones it did not)."""
    model, x = small_dnc(memory_slots=16), torch.randn(2, steps, 5)
    _, _, state = dnc_native.run_steps(model, model.run_steps, x)
    _, _, eager = model.run_steps(x)
    for b in range(x.shape[0]):
        slot = matching_slots(state, eager, b)
        for name, ours, theirs in [("memory", state.memory[b][slot], eager.memory[b]),
                                   ("usage", state.usage[b][slot], eager.usage[b]),
                                   ("precedence", state.precedence[b][slot], eager.precedence[b]),
                                   ("read_weights", state.read_weights[b][:, slot], eager.read_weights[b]),
                                   ("link", state.link[b][slot][:, slot], eager.link[b])]:
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=f"sequence {b}: {name}")


def matching_slots(state, eager, b: int) -> torch.Tensor:
    """For each of the eager state's slots, the slot of ``state`` that holds the same thing
    (memory row, usage, precedence), as the pairing of least total distance: slots written
    alike, which differ in the last bits only, pair up among themselves in either order."""
    def signature(s):
        return torch.cat([s.memory[b], s.usage[b][:, None], s.precedence[b][:, None]], dim=1)

    _, slot = linear_sum_assignment(torch.cdist(signature(eager), signature(state)).detach().numpy())
    return torch.as_tensor(slot)


def assert_matches_autograd(model, kernel, x, final=None):
    weights = torch.randn(*x.shape[:2], 4)  # a loss that weighs every output differently
    expected = model(x)
    expected_grads = torch.autograd.grad((expected * weights).sum(), list(model.parameters()))
    y, states, state = kernel.run_steps(model, model.run_steps, x)
    grads = torch.autograd.grad((y * weights).sum(), list(model.parameters()))
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-6)
    for (name, _), got, want in zip(model.named_parameters(), grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=name)
    assert states == [] and state.memory.shape == (x.shape[0], model.slots, model.width)
    _, _, eager_final = model.run_steps(x)
    for name in final or eager_final._fields:
        torch.testing.assert_close(getattr(state, name), getattr(eager_final, name), rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("make, kernel", [(small_ntm, ntm_native), (small_dnc, dnc_native)])
def test_two_threads_split_the_batch_and_agree_with_one(make, kernel):
    """At each step the threads take slices of the batch (native_common.h, for_each_sequence; the
    kernels are built with OpenMP for that): on a batch of 5, two threads give one thread's
    outputs and gradients, up to the rounding of the products, which use threads too."""
    model, x, weights = make(), torch.randn(5, 7, 5), torch.randn(5, 7, 4)
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            y, _, _ = kernel.run_steps(model, model.run_steps, x)
            results.append((y, torch.autograd.grad((y * weights).sum(), list(model.parameters()))))
    finally:
        torch.set_num_threads(1)
    (y1, grads1), (y2, grads2) = results
    torch.testing.assert_close(y2, y1, rtol=1e-5, atol=1e-6)
    for (name, _), got, want in zip(model.named_parameters(), grads2, grads1):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=name)


def test_the_kernel_serves_only_what_it_computes():
    assert native.applies(small_ntm()) and native.applies(small_dnc())
    assert native.applies(small_dnc(controller="gru")) and not native.applies(small_ntm(controller="gru"))
    assert not native.applies(small_dnc(controller="feedforward")) and not native.applies(small_dnc(controller_layers=2))
    assert not native.applies(small_ntm(controller="lstm", controller_layers=2))
    model = small_ntm()
    compiled.compile_training_step(model)
    x = torch.randn(2, 4, 5)
    with torch.no_grad():  # evaluation runs the Python step loop (long sequences, big batches)
        assert model.run_steps(x)[0].grad_fn is None
    y, states, _ = model.run_steps(x, keep_states=True)  # per-step states (forcing): the compiled step loop
    assert len(states) == 4 and type(y.grad_fn).__name__ != "NTMSequenceBackward" and model.scan.graphs
    assert type(model(x).grad_fn).__name__ == "NTMSequenceBackward"
    x.requires_grad_(True)  # the kernels compute no input gradient: such calls run the Python loop
    assert type(model(x).grad_fn).__name__ != "NTMSequenceBackward"


def test_a_failed_build_falls_back_to_inductor_in_one_line(monkeypatch, capsys):
    def broken():
        raise RuntimeError("Error building extension 'memrepro_ntm_native'\nmany lines of compiler output")

    monkeypatch.setattr(ntm_native, "extension", broken)
    model = small_ntm()
    compiled.compile_training_step(model)
    assert model.scan.steps == 1 and "run_steps" not in vars(model)  # TorchInductor's loop, not the kernel
    err = capsys.readouterr().err.strip()
    assert err == ("memrepro: warning: compile=true: the native NTM kernel did not build "
                   "(Error building extension 'memrepro_ntm_native'); using TorchInductor")


def test_a_compiler_without_openmp_still_gets_a_kernel_for_one_thread(monkeypatch, capsys):
    import torch.utils.cpp_extension

    calls = []

    def load(name, sources, extra_cflags, **kwargs):
        calls.append(extra_cflags)
        if "-fopenmp" in extra_cflags:
            raise RuntimeError("Error building extension 'x'\nclang: error: unsupported option '-fopenmp'")
        return "kernel"

    monkeypatch.setattr(torch.utils.cpp_extension, "load", load)
    monkeypatch.setattr(torch.__config__, "parallel_info", lambda: "ATen parallel backend: OpenMP")
    monkeypatch.setattr(native, "built", lambda name: True)
    assert native.build.__wrapped__("ntm_native") == "kernel"
    assert ["-fopenmp" in flags for flags in calls] == [True, False]
    assert capsys.readouterr().err.strip() == ("memrepro: warning: the native NTM kernel did not build with OpenMP "
                                               "(Error building extension 'x'); building it for one thread")


@pytest.mark.parametrize("model_cls", [NTM, DNC])
def test_compiled_training_matches_eager(tmp_path, model_cls):
    """A few copy updates with compile=true write the metrics the eager run writes."""

    def run(folder, compile_):
        torch.manual_seed(0)
        model = model_cls(9, 8, controller_size=16, memory_slots=12, memory_width=6)
        if compile_:
            compiled.compile_training_step(model)
            assert "run_steps" in vars(model)  # the native kernel, not TorchInductor
        (tmp_path / folder).mkdir()
        trainer(steps=12).fit(model, Copy(bits=8, lengths=(1, 5), eval_lengths=(6,), eval_size=16), tmp_path / folder)
        return pd.read_csv(tmp_path / folder / io.METRICS)

    pd.testing.assert_frame_equal(run("eager", False), run("native", True), rtol=1e-4)
