"""Neural controller with a sparse mask (NC / "SNN") and the sparse memory-augmented network
(SMANN) — SMANN paper §2.2–2.3, eqs. (5)–(8) (Anonymous, ICLR 2020 submission).

Both are two layers of constrained LSTM cells (eq. 1, `memrepro.models.clstm`) and a learned
binary mask over time steps, m = f_binary(σ(m′)) (eq. 7), with m′ a parameter of length
``mask_length`` initialised to 0 so that m starts all ones; the gradient of the step function is
the straight-through estimator (Bengio et al. 2013). At step t:

    layer 1 (eq. 5):  c̃ = f ⊙ c_{t−1} + i ⊙ tanh(·);  h = D/2 (tanh(c̃ + u) + tanh(c̃ − u));
                      c_t = (1 − m_t) ⊙ c̃          (the chain is cut into segments where m_t = 1)
    layer 2 (eq. 6):  c̃ as in eq. (1) on layer 1's h;  c_t = m_t ⊙ c̃ + (1 − m_t) ⊙ c_{t−1};
                      h = D/2 (tanh(c_t + u) + tanh(c_t − u))   (updates only where m_t = 1)

and the loss gains ξ‖m‖₁ (eq. 8, ξ = 1e-6) through `extra_loss()`. `NC` reads out layer 2's h
through a linear layer. `SMANN` adds an external memory (§2.3) touched only at steps with m_t = 1:
a content-addressed (cosine) read and an erase/add write with a content-addressed weighting; the
read vector is concatenated with layer 2's h and passed through a fully connected output layer.
At steps with m_t = 0 neither h nor the read vector change, so the output is the previous step's,
as the paper prescribes.

Cost: mask-off steps never touch the memory, in training too — the paper's point ("the access
rate … can accelerate the speed of training and running"); the straight-through gradient then
reaches m′_t through the memory only where m_t = 1 (where it can switch an access off) and through
both controller layers everywhere. Layer 2 is computed at mask-off steps while training, for that
gradient, and skipped without gradients. `diagnostics()` reports the access rate (paper: ≈3 % on
pMNIST, 23 mask-on steps of 784).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memrepro.errors import ConfigError
from memrepro.models.base import SequenceModel
from memrepro.models.clstm import ConstrainedLSTMCell
from memrepro.models.memory import content_weighting, erase_add_write
from memrepro.models.memory import read as read_memory
from memrepro.models.recurrent import check_dropout
from memrepro.tasks.base import check_positive


# --- the mask -------------------------------------------------------------------------------------
class SparseMask(nn.Module):
    """m = f_binary(σ(m′)) with the straight-through gradient dm/dm′ = σ′(m′) (eq. 7)."""

    def __init__(self, length: int):
        super().__init__()
        check_positive("model.mask_length", length)
        self.logits = nn.Parameter(torch.zeros(length))  # m′ = 0 -> σ = 0.5 -> m = 1 everywhere

    def forward(self, stop: int | None = None, start: int = 0) -> Tensor:
        """m over the steps start … stop − 1 (default: the whole mask)."""
        length = self.logits.numel()
        if stop is not None and stop > length:
            raise ConfigError(f"model.mask_length={length}: the sequences have {stop} steps; set it to at least {stop}")
        p = torch.sigmoid(self.logits[start:stop])
        return (p >= 0.5).to(p.dtype) + (p - p.detach())  # value: exactly 0/1; gradient: that of p


class NCState(NamedTuple):
    t: int  # the next step's index into the mask
    h1: Tensor
    c1: Tensor
    h2: Tensor
    c2: Tensor


class NC(SequenceModel):
    """The neural controller with sparse mask (SMANN §2.2, "NC_1 (32-32)", "NC_2 (32-64)")."""
    compile_steps = 8  # compile=true: 8 steps of a layer per graph (docs/benchmarks.md, "Step-loop models")

    def __init__(self, input_size: int, output_size: int, hidden_sizes=(32, 32), mask_length: int = 1024, xi: float = 1e-6,
                 dropout: float = 0.1, init: str = "chrono", t_max: float | None = 784, forget_bias: float = 1.0):
        super().__init__(input_size, output_size)
        hidden_sizes = list(hidden_sizes)
        if len(hidden_sizes) != 2:
            raise ConfigError(f"model.hidden_sizes={hidden_sizes}: the neural controller has exactly two layers, e.g. [32, 32]")
        for i, h in enumerate(hidden_sizes):
            check_positive(f"model.hidden_sizes[{i}]", h)
        check_positive("model.xi", xi, allow_zero=True)
        check_dropout(dropout)
        h1, h2 = hidden_sizes
        self.layer1 = ConstrainedLSTMCell(input_size, h1, init, t_max, forget_bias)
        self.layer2 = ConstrainedLSTMCell(h1, h2, init, t_max, forget_bias)
        self.mask = SparseMask(mask_length)
        self.xi = xi
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(self.readout_size(), output_size)
        self.last_steps = mask_length  # length of the latest sequence, for the access rate

    def readout_size(self) -> int:
        return self.layer2.hidden_size

    # --- eqs. (5) and (6), one step each (steps of `Scan`: (h, (h, c))) -----------------------
    def layer1_step(self, wx_t: Tensor, keep_t: Tensor, state: tuple[Tensor, Tensor]):
        """Eq. (5); ``keep_t`` = 1 − m_t."""
        c_tilde = self.layer1.candidate(wx_t, *state)
        h = self.layer1.output(c_tilde)
        return h, (h, keep_t * c_tilde)

    def layer2_step(self, wx_t: Tensor, m_t: Tensor, state: tuple[Tensor, Tensor]):
        """Eq. (6): c = m_t c̃ + (1 − m_t) c, one lerp."""
        c = torch.lerp(state[1], self.layer2.candidate(wx_t, *state), m_t)
        h = self.layer2.output(c)
        return h, (h, c)

    # --- SequenceModel ---------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> NCState:
        z1 = self.readout.weight.new_zeros(batch_size, self.layer1.hidden_size)
        z2 = self.readout.weight.new_zeros(batch_size, self.layer2.hidden_size)
        return NCState(0, z1, z1, z2, z2)

    def controller_step(self, x_t: Tensor, state: NCState) -> tuple[NCState, Tensor]:
        """Both layers at one step: the new state and m_t."""
        m_t = self.mask(state.t + 1, state.t)[0]
        h1, (_, c1) = self.layer1_step(self.layer1.input(x_t), 1 - m_t, (state.h1, state.c1))
        h2, (_, c2) = self.layer2_step(self.layer2.input(h1), m_t, (state.h2, state.c2))
        self.last_steps = state.t + 1
        return NCState(state.t + 1, h1, c1, h2, c2), m_t

    def step(self, x_t: Tensor, state: NCState):
        state, _ = self.controller_step(x_t, state)
        return self.readout(self.dropout(state.h2)), state

    def controller(self, x: Tensor, state: NCState) -> tuple[Tensor, Tensor, NCState]:
        """Both layers over a whole sequence, layer by layer (one batched input projection each):
        layer 2's h for every step [B, T, H2], the mask [T] and the final state."""
        T = x.shape[1]
        m = self.mask(state.t + T, state.t)
        m_steps = m.view(1, T, 1)  # time on dim 1, as `Scan` takes its inputs
        hs1, (h1, c1) = self.scan(self.layer1_step, (self.layer1.input(x), 1 - m_steps), (state.h1, state.c1))
        wx2 = self.layer2.input(hs1)
        if torch.is_grad_enabled():  # every step: the straight-through gradient reaches m′_t at mask-off steps too
            hs2, (h2, c2) = self.scan(self.layer2_step, (wx2, m_steps), (state.h2, state.c2))
        else:  # m_t = 0 leaves layer 2 as it is: run it on the mask-on steps only and hold its h in between
            on = m > 0.5
            hs2, (h2, c2) = self.scan.held(self.layer2_step, (wx2[:, on], m_steps[:, on]), (state.h2, state.c2), on, state.h2)
        self.last_steps = state.t + T
        return hs2, m, NCState(state.t + T, h1, c1, h2, c2)

    def forward(self, x: Tensor, state=None, return_states: bool = False):
        if return_states:
            return super().forward(x, state, return_states=True)
        hs2, _, _ = self.controller(x, self.initial_state(x.shape[0]) if state is None else state)
        return self.readout(self.dropout(hs2))

    def extra_loss(self) -> Tensor:
        """ξ‖m‖₁ (eq. 8) over the whole mask."""
        return self.xi * self.mask().sum()

    def diagnostics(self) -> dict[str, float]:
        """Mask-on steps within the latest sequence length, and their share (the access rate)."""
        with torch.no_grad():
            on = int((self.mask(self.last_steps) > 0.5).sum())
        return {"mask_on": float(on), "access_rate": on / self.last_steps}

    def trace(self, state: NCState) -> dict[str, Tensor]:
        return {"hidden": state.h2}


class SMANNState(NamedTuple):
    t: int
    h1: Tensor
    c1: Tensor
    h2: Tensor
    c2: Tensor
    memory: Tensor  # [B, N, W]
    read: Tensor  # [B, W], the latest read vector


class SMANN(NC):
    """NC + an external memory accessed only at mask-on steps (SMANN §2.3). One content-addressed
    read head and one write head (erase/add); as in the NTM, the read sees the memory before this
    step's write, and both heads are addressed on that same memory."""

    def __init__(self, input_size: int, output_size: int, hidden_sizes=(32, 32), memory_slots: int = 128, memory_width: int = 20,
                 mask_length: int = 1024, xi: float = 1e-6, dropout: float = 0.1, init: str = "chrono", t_max: float | None = 784,
                 forget_bias: float = 1.0):
        check_positive("model.memory_slots", memory_slots)
        check_positive("model.memory_width", memory_width)
        self.memory_slots, self.memory_width = memory_slots, memory_width
        super().__init__(input_size, output_size, hidden_sizes, mask_length, xi, dropout, init, t_max, forget_bias)
        W = memory_width
        self.interface = nn.Linear(self.layer2.hidden_size, 4 * W + 2)  # read key, write key, β_r, β_w, erase, add

    def readout_size(self) -> int:
        return self.layer2.hidden_size + self.memory_width

    def access(self, iface_t: Tensor, m_t: Tensor, state: tuple[Tensor, Tensor]):
        """One mask-on step, a step of `Scan`: (read, (memory, read)), blended by m_t = 1 so that
        the straight-through gradient reaches m′_t."""
        memory, read = state
        W = self.memory_width
        keys, strengths, erase, add = iface_t.split([2 * W, 2, W, W], dim=-1)
        w = content_weighting(memory, keys.view(-1, 2, W), F.softplus(strengths))  # [B, 2, N]: read, write
        new_read = read_memory(memory, w[:, :1])[:, 0]
        new_memory = erase_add_write(memory, w[:, 1:], torch.sigmoid(erase).unsqueeze(1), torch.tanh(add).unsqueeze(1))
        read = torch.lerp(read, new_read, m_t)
        return read, (torch.lerp(memory, new_memory, m_t), read)

    def initial_state(self, batch_size: int) -> SMANNState:
        nc = super().initial_state(batch_size)
        memory = nc.h1.new_full((batch_size, self.memory_slots, self.memory_width), 1e-6)  # constant init (Collier & Beel 2018)
        return SMANNState(*nc, memory, nc.h1.new_zeros(batch_size, self.memory_width))

    def step(self, x_t: Tensor, state: SMANNState):
        nc, m_t = self.controller_step(x_t, NCState(*state[:5]))
        memory, read = state.memory, state.read
        if m_t.item() > 0.5:
            read, (memory, _) = self.access(self.interface(nc.h2), m_t, (memory, read))
        y = self.readout(self.dropout(torch.cat([nc.h2, read], dim=-1)))
        return y, SMANNState(*nc, memory, read)

    def forward(self, x: Tensor, state=None, return_states: bool = False):
        if return_states:
            return super().forward(x, state, return_states=True)
        if state is None:
            state = self.initial_state(x.shape[0])
        hs2, m, _ = self.controller(x, NCState(*state[:5]))
        on = m > 0.5  # the memory loop runs over the mask-on steps only
        iface = self.interface(hs2[:, on])
        reads, _ = self.scan.held(self.access, (iface, m[on].view(1, -1, 1)), (state.memory, state.read), on, state.read)
        return self.readout(self.dropout(torch.cat([hs2, reads], dim=-1)))

    def trace(self, state: SMANNState) -> dict[str, Tensor]:
        return {"hidden": state.h2, "memory": state.memory, "read": state.read}
