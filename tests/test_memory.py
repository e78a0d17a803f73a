"""Memory primitives (memrepro.models.memory) against the sources' own numbers and invariants."""
import math

import pytest
import torch

from memrepro.models import memory as mem



@pytest.fixture(autouse=True)
def float64():
    """Hand-computed values are checked to ~1e-12."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


# --- NTM: the slides' worked erase/add example ---------------------------------------------------
# The slides draw memory as M x N (one column per slot); ours is N x M, hence the transposes.
SLIDES_M0 = t([5, 7, 9, 2, 12], [11, 6, 3, 1, 2], [3, 7, 3, 10, 6], [4, 2, 5, 9, 9], [3, 5, 12, 8, 4]).T
SLIDES_W = t([0.1, 0.2, 0.5, 0.1, 0.1])
SLIDES_E = t([1.0, 0.7, 0.2, 0.5, 0.0])
SLIDES_A = t([3, 4, -2, 0, 2])
SLIDES_ERASED = t(
    [4.5, 5.6, 4.5, 1.8, 10.8], [10.23, 5.16, 1.95, 0.93, 1.86], [2.94, 6.72, 2.7, 9.8, 5.88],
    [3.8, 1.8, 3.75, 8.55, 8.55], [3, 5, 12, 8, 4],
).T
SLIDES_M1 = t(
    [4.8, 6.2, 6, 2.1, 11.1], [10.63, 5.96, 3.95, 1.33, 2.26], [2.74, 6.32, 1.7, 9.6, 5.68],
    [3.8, 1.8, 3.75, 8.55, 8.55], [3.2, 5.4, 13, 8.2, 4.2],
).T


def test_slides_erase_then_add_example():
    erased = mem.erase_add_write(SLIDES_M0, SLIDES_W, SLIDES_E, torch.zeros(1, 5))
    torch.testing.assert_close(erased, SLIDES_ERASED, rtol=0, atol=1e-12)
    written = mem.erase_add_write(SLIDES_M0, SLIDES_W, SLIDES_E, SLIDES_A)
    torch.testing.assert_close(written, SLIDES_M1, rtol=0, atol=1e-12)


def test_write_is_batched_and_heads_commute():
    M = torch.rand(3, 6, 4)
    w, e, a = torch.softmax(torch.randn(3, 2, 6), -1), torch.rand(3, 2, 4), torch.randn(3, 2, 4)
    both = mem.erase_add_write(M, w, e, a)
    swapped = mem.erase_add_write(M, w.flip(1), e.flip(1), a.flip(1))
    torch.testing.assert_close(both, swapped)
    # Per sample, per head: M ∘ (1 - w e^T)(1 - w' e'^T) + w a^T + w' a'^T (NTM §3.2).
    b = 1
    expected = M[b] * (1 - torch.outer(w[b, 0], e[b, 0])) * (1 - torch.outer(w[b, 1], e[b, 1]))
    expected += torch.outer(w[b, 0], a[b, 0]) + torch.outer(w[b, 1], a[b, 1])
    torch.testing.assert_close(both[b], expected)


def test_read_is_weighted_sum_of_rows():
    M = t([1, 2], [3, 4], [5, 6])
    assert torch.equal(mem.read(M, t([0.5, 0.5, 0.0])), t([2, 3]))


# --- NTM addressing against hand-computed vectors ------------------------------------------------
def test_content_weighting_hand_computed():
    M = t([1, 0], [0, 1], [1, 1])  # cosines with k = (1, 0): 1, 0, 1/√2
    w = mem.content_weighting(M, t([2.0, 0.0]), t(2.0))  # one head: key [1, 2], strength [1]
    scores = [math.exp(2), 1.0, math.exp(2 / math.sqrt(2))]
    torch.testing.assert_close(w[0], t(*scores) / sum(scores))
    uniform = mem.content_weighting(M, t([2.0, 0.0]), t(0.0))
    torch.testing.assert_close(uniform[0], torch.full((3,), 1 / 3))


def test_cosine_of_zero_memory_is_zero_with_finite_gradients():
    M = torch.zeros(4, 3, requires_grad=True)
    k = torch.randn(1, 3, requires_grad=True)
    mem.content_weighting(M, k, torch.ones(1)).pow(2).sum().backward()
    assert torch.isfinite(M.grad).all() and torch.isfinite(k.grad).all()


def test_interpolation():
    torch.testing.assert_close(mem.interpolate(t([1.0, 0.0]), t([0.0, 1.0]), torch.tensor(0.25)), t([0.25, 0.75]))


@pytest.mark.parametrize(
    "shift, expected",
    [
        ([0.0, 0.0, 1.0], [0.4, 0.1, 0.2, 0.3]),  # all mass on +1: every weight moves forward, wrapping
        ([1.0, 0.0, 0.0], [0.2, 0.3, 0.4, 0.1]),  # -1: backward
        ([0.0, 1.0, 0.0], [0.1, 0.2, 0.3, 0.4]),  # 0: unchanged
        ([0.25, 0.5, 0.25], [0.2, 0.2, 0.3, 0.3]),  # slot 0: .25·w(1) + .5·w(0) + .25·w(3) = .05 + .05 + .1
    ],
)
def test_circular_shift_hand_computed(shift, expected):
    w = t([0.1, 0.2, 0.3, 0.4]).unsqueeze(0)
    torch.testing.assert_close(mem.circular_shift(w, t(shift).unsqueeze(0))[0], t(expected))


def test_circular_shift_wider_range_and_batch():
    w = torch.eye(5).unsqueeze(1)  # [5 samples, 1 head, 5 slots], sample i one-hot at slot i
    s = t([0, 0, 0, 0, 1.0]).expand(5, 1, 5)  # offsets -2..+2, all on +2
    assert torch.equal(mem.circular_shift(w, s)[:, 0], torch.roll(torch.eye(5), 2, dims=1))


def test_sharpen_hand_computed():
    w = t([0.2, 0.3, 0.5])
    torch.testing.assert_close(mem.sharpen(w, torch.tensor(2.0)), t([0.04, 0.09, 0.25]) / 0.38)
    torch.testing.assert_close(mem.sharpen(w, torch.tensor(1.0)), w)


def test_sharpen_does_not_underflow_on_flat_weights():
    w = torch.full((1, 128), 1 / 128, dtype=torch.float32)
    out = mem.sharpen(w, torch.tensor([40.0], dtype=torch.float32))  # (1/128)^40 underflows float32
    torch.testing.assert_close(out, w)


def test_sharpen_gradients_finite_with_exact_zeros():
    w = t([0.0, 0.25, 0.75, 0.0]).requires_grad_()
    gamma = torch.tensor(1.7, requires_grad=True)
    (mem.sharpen(w, gamma) * t([1, 2, 3, 4])).sum().backward()
    assert torch.isfinite(gamma.grad) and gamma.grad != 0
    assert torch.isfinite(w.grad).all()
    # What this guards against: written as exp(γ ln w), d/dγ at w = 0 is 0·(-inf) = NaN.
    gamma2 = torch.tensor(1.7, requires_grad=True)
    torch.exp(gamma2 * w.detach().log()).sum().backward()
    assert torch.isnan(gamma2.grad)


def test_full_ntm_addressing_from_one_hot_has_finite_gradients():
    memory = torch.randn(2, 8, 4)
    previous = torch.eye(8)[[0, 3]].unsqueeze(1)  # one-hot previous weights: exact zeros
    # key, strength, gate 0 (content ignored: the weights stay one-hot into the shift), shift, γ
    params = [torch.randn(2, 1, 4), torch.rand(2, 1), torch.zeros(2, 1), torch.softmax(torch.randn(2, 1, 3), -1), 1 + torch.rand(2, 1)]
    for p in params:
        p.requires_grad_()
    w = mem.ntm_address(memory, previous, *params)
    (w * torch.randn_like(w)).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in params)


# --- DNC: allocation, usage, linkage --------------------------------------------------------------
def test_allocation_hand_computed_and_least_used_first():
    a = mem.allocation(t([0.5, 0.2, 0.2, 1.0]))
    # order: slot 1 (0.2, lower index wins the tie), slot 2, slot 0, slot 3
    torch.testing.assert_close(a, t([0.5 * 0.2 * 0.2, 0.8, 0.8 * 0.2, 0.0]), atol=1e-5, rtol=0)


def test_allocation_ties_break_to_lowest_index():
    a = mem.allocation(torch.zeros(2, 6))
    assert (a.argmax(-1) == 0).all()
    torch.testing.assert_close(a[:, 0], torch.full((2,), 1 - mem.EPS))


def test_allocation_invariants_random():
    g = torch.Generator().manual_seed(0)
    u = torch.rand(64, 10, generator=g)
    a = mem.allocation(u)
    assert (a >= 0).all() and (a.sum(-1) <= 1 + 1e-12).all()
    assert torch.equal(a.argmax(-1), u.argmin(-1))
    torch.testing.assert_close(a.sum(-1), 1 - (mem.EPS + (1 - mem.EPS) * u).prod(-1))


def test_retention_and_usage_hand_computed():
    psi = mem.retention(t([1.0, 0.5]), t([0.5, 0.5, 0.0], [0.0, 1.0, 0.0]))
    torch.testing.assert_close(psi, t([0.5, 0.25, 1.0]))  # (1-.5)(1-0), (1-.5)(1-.5), 1
    u = mem.update_usage(t([0.5, 0.0, 1.0]), t([0.5, 1.0, 0.0]), psi)
    torch.testing.assert_close(u, t([0.75 * 0.5, 1.0 * 0.25, 1.0]))


def test_usage_stays_in_unit_interval_and_ignores_write_gradients():
    g = torch.Generator().manual_seed(1)
    B, R, N = 8, 3, 12
    usage = torch.zeros(B, N)
    for _ in range(30):
        write = torch.rand(B, 1, generator=g) * torch.softmax(3 * torch.randn(B, N, generator=g), -1)
        reads = torch.softmax(3 * torch.randn(B, R, N, generator=g), -1)
        usage = mem.update_usage(usage, write, mem.retention(torch.rand(B, R, generator=g), reads))
        assert (usage >= 0).all() and (usage <= 1).all()
    write = torch.rand(1, N, requires_grad=True)
    free = torch.rand(1, 2, requires_grad=True)
    out = mem.update_usage(torch.rand(1, N), write, mem.retention(free, torch.softmax(torch.randn(1, 2, N), -1)))
    out.sum().backward()
    assert write.grad is None and free.grad.abs().sum() > 0  # DeepMind: stop_gradient on write weights


def test_link_matrix_invariants():
    g = torch.Generator().manual_seed(2)
    B, N = 16, 7
    link, precedence = torch.zeros(B, N, N), torch.zeros(B, N)
    for _ in range(25):
        write = torch.rand(B, 1, generator=g) * torch.softmax(4 * torch.randn(B, N, generator=g), -1)
        link = mem.update_link(link, precedence, write)
        precedence = mem.update_precedence(precedence, write)
        assert torch.equal(link.diagonal(dim1=-2, dim2=-1), torch.zeros(B, N))
        assert (link >= 0).all() and (link <= 1).all()
        assert (link.sum(-1) <= 1 + 1e-12).all() and (link.sum(-2) <= 1 + 1e-12).all()
        assert (precedence >= 0).all() and (precedence.sum(-1) <= 1 + 1e-12).all()


def test_precedence_after_full_write_equals_write_weights():
    w = torch.softmax(torch.randn(4, 9), -1)  # each sums to 1
    torch.testing.assert_close(mem.update_precedence(torch.rand(4, 9) / 9, w), w)


def test_forward_and_backward_follow_write_order():
    N = 4
    link, precedence = torch.zeros(1, N, N), torch.zeros(1, N)
    for slot in (2, 0, 3):  # write order 2 -> 0 -> 3
        write = torch.eye(N)[slot].unsqueeze(0)
        link = mem.update_link(link, precedence, write)
        precedence = mem.update_precedence(precedence, write)
    expected = torch.zeros(N, N)
    expected[0, 2] = expected[3, 0] = 1.0  # L[i, j]: i written right after j
    assert torch.equal(link[0], expected)
    read_at_0 = torch.eye(N)[0].view(1, 1, N)
    forward, backward = mem.directional_weights(link, read_at_0)
    assert torch.equal(forward[0, 0], torch.eye(N)[3]) and torch.equal(backward[0, 0], torch.eye(N)[2])


def test_write_weighting_and_read_modes():
    ww = mem.write_weighting(t([1.0, 0.0]), t([0.0, 1.0]), torch.tensor(0.25), torch.tensor(0.5))
    torch.testing.assert_close(ww, t([0.125, 0.375]))
    b, c, f = torch.eye(3)
    modes = t([0.2, 0.3, 0.5])
    torch.testing.assert_close(mem.read_mode_mixture(b, c, f, modes), t([0.2, 0.3, 0.5]))
