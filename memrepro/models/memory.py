"""Memory addressing primitives shared by NTM, DNC and SMANN: small pure functions on tensors.

Shapes (any leading batch dimensions ``...`` are allowed):
  memory  [..., N, W]   N slots of width W
  weights [..., H, N]   one addressing distribution per head
  keys    [..., H, W]

NTM (Graves, Wayne & Danihelka 2014, §3): read (eq. 2), erase/add write (eqs. 3-4), content
weighting with key strength (eqs. 5-6), interpolation (eq. 7), circular shift (eq. 8),
sharpening (eq. 9).
DNC (Graves et al. 2016, Nature 538, Methods): retention and usage ("Dynamic memory
allocation"), sort-based allocation, write weighting, precedence and temporal link matrix
("Temporal memory linkage"), forward/backward weightings and the read-mode mixture.

Everything is batched over the leading dimensions and the heads; nothing loops over the batch
or over memory slots.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

TINY = 1e-30  # sharpen: an exact zero weight enters the log as this
EPS = 1e-6  # guards norms and the allocation's cumulative product (DeepMind's dnc uses 1e-6)


def oneplus(x: Tensor) -> Tensor:
    """1 + softplus(x) ∈ [1, ∞): DNC's key strengths (Methods, "Interface parameters"); NTM's γ."""
    return 1 + F.softplus(x)


# --- reading and writing ------------------------------------------------------------------------
def read(memory: Tensor, weights: Tensor) -> Tensor:
    """NTM eq. 2: r = Σ_i w(i) M(i). memory [..., N, W], weights [..., H, N] -> [..., H, W]."""
    return weights @ memory


def erase_add_write(memory: Tensor, weights: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """NTM eqs. 3-4 (and DNC's write): M(i) <- M(i) ∘ Π_h (1 - w_h(i) e_h) + Σ_h w_h(i) a_h.

    memory [..., N, W]; weights [..., H, N]; erase, add [..., H, W] with erase in [0, 1].
    With several write heads the erasures multiply and the additions sum, so the order of the
    heads does not matter (NTM §3.2). One head, the common case, takes the fused form
    M + w (a - M ∘ e), a third of the work.
    """
    if weights.shape[-2] == 1:
        return torch.addcmul(memory, weights.transpose(-1, -2), add - memory * erase)
    for h in range(weights.shape[-2]):  # a few heads; torch.prod over a head axis is far slower
        memory = memory * (1 - weights[..., h, :, None] * erase[..., h, None, :])
    return memory + weights.transpose(-1, -2) @ add


# --- NTM addressing -----------------------------------------------------------------------------
def cosine_similarity(memory: Tensor, keys: Tensor, eps: float = EPS) -> Tensor:
    """NTM eq. 6: K(k, M(i)) = k·M(i) / (|k| |M(i)|), for every head and slot -> [..., H, N].

    The denominator is floored at eps, so an all-zero memory row (DNC's initial memory) scores
    0 with finite gradients instead of 0/0.
    """
    norms = torch.linalg.vector_norm(keys, dim=-1).unsqueeze(-1) * torch.linalg.vector_norm(memory, dim=-1).unsqueeze(-2)
    return (keys @ memory.transpose(-1, -2)) / norms.clamp_min(eps)


def content_weighting(memory: Tensor, keys: Tensor, strengths: Tensor, eps: float = EPS) -> Tensor:
    """NTM eq. 5 / DNC content lookup C(M, k, β): softmax_i(β K(k, M(i))).

    memory [..., N, W], keys [..., H, W], strengths β [..., H] (β ≥ 0) -> weights [..., H, N].
    """
    return torch.softmax(strengths.unsqueeze(-1) * cosine_similarity(memory, keys, eps), dim=-1)


def interpolate(content: Tensor, previous: Tensor, gate: Tensor) -> Tensor:
    """NTM eq. 7: w^g = g w^c + (1 - g) w_{t-1}. gate [..., H] in [0, 1]."""
    g = gate.unsqueeze(-1)
    return g * content + (1 - g) * previous


def circular_shift(weights: Tensor, shift: Tensor) -> Tensor:
    """NTM eq. 8: w̃(i) = Σ_j w(j) s(i - j), indices modulo N.

    ``shift`` [..., H, 2r+1] is a distribution over the offsets -r, ..., 0, ..., +r in that
    order: all mass on +1 moves every weight one slot forward. Loop-free over slots: the weights
    are padded circularly by r on each side and each offset adds one shifted slice.
    """
    n, width = weights.shape[-1], shift.shape[-1]
    r = width // 2
    padded = torch.cat([weights[..., n - r :], weights, weights[..., :r]], dim=-1)  # [..., H, N+2r]
    out = shift[..., r : r + 1] * weights
    for k in range(width):
        if k != r:  # offset k - r: w̃(i) gets w(i - (k - r)) = padded[i + 2r - k]
            out = torch.addcmul(out, shift[..., k : k + 1], padded[..., 2 * r - k : 2 * r - k + n])
    return out


def sharpen(weights: Tensor, gamma: Tensor) -> Tensor:
    """NTM eq. 9: w(i) = w̃(i)^γ / Σ_j w̃(j)^γ, with γ [..., H] ≥ 1, computed as the identical
    softmax(γ ln w̃): its max-subtraction keeps (1/N)^γ from underflowing to 0/0, and exact zeros
    in w̃ (one-hot weights) enter as ln 1e-30, so they stay ≈ 0 with finite gradients."""
    return torch.softmax(gamma.unsqueeze(-1) * torch.log(weights.clamp_min(TINY)), dim=-1)


def ntm_address(
    memory: Tensor, previous: Tensor, keys: Tensor, strength: Tensor, gate: Tensor, shift: Tensor, gamma: Tensor
) -> Tensor:
    """The NTM addressing pipeline of Fig. 2: content -> interpolation -> shift -> sharpening."""
    content = content_weighting(memory, keys, strength)
    return sharpen(circular_shift(interpolate(content, previous, gate), shift), gamma)


# --- DNC: dynamic memory allocation -------------------------------------------------------------
def retention(free_gates: Tensor, read_weights: Tensor) -> Tensor:
    """DNC memory retention ψ_t = Π_i (1 - f_t^i w_{t-1}^{r,i}).

    free_gates [..., R] in [0, 1]; read_weights [..., R, N] (previous step) -> [..., N].
    """
    return (1 - free_gates.unsqueeze(-1) * read_weights).prod(dim=-2)


def update_usage(usage: Tensor, write_weights: Tensor, retention_: Tensor) -> Tensor:
    """DNC usage u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} ∘ w^w_{t-1}) ∘ ψ_t, all [..., N].

    As in DeepMind's reference, usage is not differentiated with respect to the write weights
    (the sort in `allocation` makes that path meaningless); the free gates still get gradients
    through ψ.
    """
    w = write_weights.detach()
    return (usage + w - usage * w) * retention_


def allocation(usage: Tensor, eps: float = EPS) -> Tensor:
    """DNC allocation weighting a_t[φ_t[j]] = (1 - u_t[φ_t[j]]) Π_{i<j} u_t[φ_t[i]].

    φ_t lists the slots by ascending usage; a stable sort breaks ties by slot index, so among
    equally used slots the lowest index is allocated first. Usage is first mapped to
    eps + (1 - eps) u (as DeepMind does) so the cumulative product never underflows to exact
    zero. Returns [..., N]; it sums to 1 - Π_i u_i ≤ 1.
    """
    usage = eps + (1 - eps) * usage
    sorted_usage, order = torch.sort(usage, dim=-1, stable=True)
    shifted = torch.cat([torch.ones_like(sorted_usage[..., :1]), sorted_usage[..., :-1]], dim=-1)
    sorted_allocation = (1 - sorted_usage) * shifted.cumprod(dim=-1)  # exclusive cumprod
    return torch.zeros_like(usage).scatter(-1, order, sorted_allocation)


def write_weighting(allocation_: Tensor, content: Tensor, allocation_gate: Tensor, write_gate: Tensor) -> Tensor:
    """DNC write weighting w^w = g^w (g^a a + (1 - g^a) c^w). Gates [...], weights [..., N]."""
    ga, gw = allocation_gate.unsqueeze(-1), write_gate.unsqueeze(-1)
    return gw * (ga * allocation_ + (1 - ga) * content)


# --- DNC: temporal memory linkage ---------------------------------------------------------------
def update_link(link: Tensor, precedence: Tensor, write_weights: Tensor) -> Tensor:
    """DNC L_t[i, j] = (1 - w[i] - w[j]) L_{t-1}[i, j] + w[i] p_{t-1}[j], with L_t[i, i] = 0.

    link [..., N, N], previous precedence and write weights [..., N]. L[i, j] is the degree to
    which slot i was written to right after slot j.
    """
    w_i = write_weights.unsqueeze(-1)
    scale = (1 - w_i) - write_weights.unsqueeze(-2)  # 1 - w[i] - w[j]
    new = torch.addcmul(w_i * precedence.unsqueeze(-2), scale, link)  # three N x N passes, not five
    new.diagonal(dim1=-2, dim2=-1).zero_()  # in place: addcmul's backward does not need its output
    return new


def update_precedence(precedence: Tensor, write_weights: Tensor) -> Tensor:
    """DNC p_t = (1 - Σ_i w_t[i]) p_{t-1} + w_t: where the last write went. [..., N]."""
    return (1 - write_weights.sum(dim=-1, keepdim=True)) * precedence + write_weights


def directional_weights(link: Tensor, read_weights: Tensor) -> tuple[Tensor, Tensor]:
    """DNC forward f^i = L_t w^{r,i}_{t-1} and backward b^i = L_t^T w^{r,i}_{t-1}.

    link [..., N, N], read_weights [..., R, N] -> (forward, backward), each [..., R, N].
    """
    return read_weights @ link.transpose(-1, -2), read_weights @ link


def read_mode_mixture(backward: Tensor, content: Tensor, forward: Tensor, modes: Tensor) -> Tensor:
    """DNC w^{r,i} = π^i[1] b^i + π^i[2] c^{r,i} + π^i[3] f^i. modes [..., R, 3] sum to 1."""
    return modes[..., 0:1] * backward + modes[..., 1:2] * content + modes[..., 2:3] * forward
