"""Neural Turing Machine (Graves, Wayne & Danihelka 2014, arXiv:1410.5401).

A controller (LSTM or feed-forward, §4) reads the input and the previous read vectors; one
linear layer turns its output into the parameters of every head: key k, strength β, gate g,
shift distribution s, sharpening γ (§3.3), plus erase e and add a for write heads (§3.2).
Each head addresses memory with content -> interpolation -> shift -> sharpening (eqs. 5-9,
`memory.ntm_address`); read heads read (eq. 2), write heads erase and add (eqs. 3-4).

Choices the paper leaves open (docs/models/ntm.md): activations k = tanh, β = softplus,
g = sigmoid, s = softmax, γ = 1 + softplus, e = sigmoid, a = tanh and clipping of the head
parameters and outputs to ±20 (Collier & Beel 2018, "Implementing Neural Turing Machines");
all heads address the previous memory M_{t-1}, reads happen before the write (as in Collier &
Beel's and loudinthecloud's implementations); every head starts one-hot on slot 0 and the
initial read vectors are reads of the initial memory.

Worked example (copy, 8 bits): x_t [B, 9] -> y_t [B, 8] logits; state = controller (h, c),
memory [B, 128, 20], last reads [B, 1, 20], last weights [B, 2, 128] (read heads first).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memrepro.errors import ConfigError
from memrepro.models import memory as mem
from memrepro.models.base import SequenceModel
from memrepro.models.controller import Controller, check_clip, clip
from memrepro.tasks.base import check_int

MEMORY_INITS = ("constant", "random", "learned")
CONSTANT_INIT = 1e-6  # Collier & Beel 2018: constant initialisation to 10^-6
RANDOM_INIT_STD = 0.5  # Collier & Beel 2018's random/learned initialisation, N(0, 0.5²); the default:
# on copy it alone generalised beyond the training lengths (docs/models/ntm.md, "What makes copy generalise")


class NTMState(NamedTuple):
    controller: tuple  # (h, c) per LSTM layer; () for a feed-forward controller
    memory: Tensor  # [B, N, W]
    reads: Tensor  # [B, R, W] read vectors of the last step
    weights: Tensor  # [B, R + Wh, N] head weights of the last step, read heads first


class NTM(SequenceModel):
    def __init__(
        self,
        input_size: int,
        output_size: int,
        controller: str = "lstm",
        controller_size: int = 100,
        controller_layers: int = 1,
        memory_slots: int = 128,
        memory_width: int = 20,
        read_heads: int = 1,
        write_heads: int = 1,
        shift_range: int = 1,
        memory_init: str = "random",
        clip_value: float | None = 20.0,
        sharpening: bool = True,
    ):
        super().__init__(input_size, output_size)
        for name, value in (("memory_slots", memory_slots), ("memory_width", memory_width), ("read_heads", read_heads), ("write_heads", write_heads)):
            check_int(f"model.{name}", value)
        check_int("model.shift_range", shift_range, minimum=0)
        if 2 * shift_range + 1 > memory_slots:
            raise ConfigError(f"model.shift_range={shift_range}: the 2r+1 shifts must fit in memory_slots={memory_slots}")
        if memory_init not in MEMORY_INITS:
            raise ConfigError(f"model.memory_init={memory_init!r}: choose one of {', '.join(MEMORY_INITS)}")
        check_clip(clip_value)
        self.slots, self.width, self.read_heads, self.write_heads = memory_slots, memory_width, read_heads, write_heads
        self.clip_value = clip_value
        self.sharpening = sharpening  # false: γ = 1, eq. (9) leaves the shifted weighting as it is (a study setting)
        heads, shifts = read_heads + write_heads, 2 * shift_range + 1
        self.shifts = shifts
        # Interface layout: keys | β | g | s | γ for every head, then erase | add for write heads.
        self.splits = [heads * memory_width, heads, heads, heads * shifts, heads, write_heads * memory_width, write_heads * memory_width]
        self.controller = Controller(input_size + read_heads * memory_width, controller_size, controller_layers, controller)
        self.interface = nn.Linear(controller_size, sum(self.splits))
        self.output = nn.Linear(controller_size + read_heads * memory_width, output_size)

        if memory_init == "constant":
            self.register_buffer("memory_init", torch.full((memory_slots, memory_width), CONSTANT_INIT))
        else:
            init = torch.randn(memory_slots, memory_width) * RANDOM_INIT_STD
            if memory_init == "learned":
                self.memory_init = nn.Parameter(init)
            else:
                self.register_buffer("memory_init", init)
        self.register_buffer("weights_init", F.one_hot(torch.zeros(heads, dtype=torch.long), memory_slots).float())

    def initial_state(self, batch_size: int) -> NTMState:
        memory = self.memory_init.expand(batch_size, -1, -1)
        weights = self.weights_init.expand(batch_size, -1, -1)
        reads = mem.read(memory, weights[:, : self.read_heads])
        return NTMState(self.controller.initial_state(batch_size), memory, reads, weights)

    def step(self, x_t: Tensor, state: NTMState) -> tuple[Tensor, NTMState]:
        batch, heads = x_t.shape[0], self.read_heads + self.write_heads
        h, controller = self.controller([x_t, state.reads.flatten(1)], state.controller)
        keys, beta, gate, shift, gamma, erase, add = clip(self.interface(h), self.clip_value).split(self.splits, dim=-1)
        weights = mem.ntm_address(
            state.memory,
            state.weights,
            torch.tanh(keys.view(batch, heads, self.width)),
            F.softplus(beta),
            torch.sigmoid(gate),
            torch.softmax(shift.view(batch, heads, -1), dim=-1),
            mem.oneplus(gamma) if self.sharpening else torch.ones_like(gamma),
        )
        reads = mem.read(state.memory, weights[:, : self.read_heads])
        memory = mem.erase_add_write(
            state.memory,
            weights[:, self.read_heads :],
            torch.sigmoid(erase.view(batch, self.write_heads, self.width)),
            torch.tanh(add.view(batch, self.write_heads, self.width)),
        )
        y = clip(self.output(torch.cat([h, reads.flatten(1)], dim=-1)), self.clip_value)
        return y, NTMState(controller, memory, reads, weights)

    def trace(self, state: NTMState) -> dict[str, Tensor]:
        hidden = {"hidden": state.controller[-1][0]} if state.controller else {}  # feed-forward: none
        return {
            **hidden,
            "memory": state.memory,
            "read_weights": state.weights[:, : self.read_heads],
            "write_weights": state.weights[:, self.read_heads :],
        }
