"""Differentiable Neural Computer (Graves et al. 2016, "Hybrid computing using a neural network
with dynamic external memory", Nature 538; equations from its Methods section).

Per step: the controller reads [x_t; r_{t-1}]; a linear layer emits the interface vector
ξ_t (Methods, "Interface parameters"); then, in the paper's order,
  1. retention ψ_t and usage u_t from the previous read/write weights ("Dynamic memory allocation");
  2. allocation a_t (sort-based) and write content weighting c^w_t;
  3. write weighting w^w_t = g^w (g^a a_t + (1 - g^a) c^w_t) and the erase/add write;
  4. link matrix L_t and precedence p_t ("Temporal memory linkage");
  5. read weightings mixing backward, content and forward modes; read vectors r_t = M_t^T w^r_t;
  6. output y_t = W [h_t; r_t] ("Controller network": W_y h_t + W_r [r_t^1 ... r_t^R]).
One write head, several read heads. Interface activations: keys raw, strengths oneplus,
erase/free/allocation/write gates sigmoid, read modes softmax (Methods). Controller outputs
and model outputs are clipped to ±``clip_value`` as in DeepMind's reference (clip_value=20).

Worked example (copy, 8 bits, defaults): x_t [B, 9] -> y_t [B, 8]; memory [B, 16, 16],
4 read heads, link [B, 16, 16].
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from memrepro.models import memory as mem
from memrepro.models.base import SequenceModel
from memrepro.models.controller import Controller, check_clip, clip
from memrepro.tasks.base import check_int


class DNCState(NamedTuple):
    controller: tuple  # (h, c) per LSTM layer
    memory: Tensor  # [B, N, W]
    reads: Tensor  # [B, R, W]
    read_weights: Tensor  # [B, R, N]
    write_weights: Tensor  # [B, N]
    usage: Tensor  # [B, N]
    link: Tensor  # [B, N, N]
    precedence: Tensor  # [B, N]


class DNC(SequenceModel):
    def __init__(
        self,
        input_size: int,
        output_size: int,
        controller: str = "lstm",
        controller_size: int = 64,
        controller_layers: int = 1,
        memory_slots: int = 16,
        memory_width: int = 16,
        read_heads: int = 4,
        clip_value: float | None = 20.0,
    ):
        super().__init__(input_size, output_size)
        for name, value in (("memory_slots", memory_slots), ("memory_width", memory_width), ("read_heads", read_heads)):
            check_int(f"model.{name}", value)
        check_clip(clip_value)
        self.slots, self.width, self.read_heads, self.clip_value = memory_slots, memory_width, read_heads, clip_value
        R, W = read_heads, memory_width
        # ξ_t: read keys | read strengths | write key | write strength | erase | write vector |
        #      free gates | allocation gate | write gate | read modes (3 per read head)
        self.splits = [R * W, R, W, 1, W, W, R, 1, 1, 3 * R]
        self.controller = Controller(input_size + R * W, controller_size, controller_layers, controller)
        self.interface = nn.Linear(controller_size, sum(self.splits))
        self.output = nn.Linear(controller_size + R * W, output_size)

    def initial_state(self, batch_size: int) -> DNCState:
        # Everything starts empty, as in DeepMind's reference: zero memory, usage, link and weights.
        B, N, R, W = batch_size, self.slots, self.read_heads, self.width
        zeros = self.output.weight.new_zeros
        return DNCState(
            self.controller.initial_state(B), zeros(B, N, W), zeros(B, R, W), zeros(B, R, N),
            zeros(B, N), zeros(B, N), zeros(B, N, N), zeros(B, N),
        )

    def step(self, x_t: Tensor, state: DNCState) -> tuple[Tensor, DNCState]:
        B, R, W = x_t.shape[0], self.read_heads, self.width
        h, controller = self.controller([x_t, state.reads.flatten(1)], state.controller)
        (read_keys, read_strengths, write_key, write_strength, erase, write_vector,
         free_gates, allocation_gate, write_gate, read_modes) = clip(self.interface(h), self.clip_value).split(self.splits, dim=-1)

        usage = mem.update_usage(state.usage, state.write_weights, mem.retention(torch.sigmoid(free_gates), state.read_weights))
        write_content = mem.content_weighting(state.memory, write_key.unsqueeze(1), mem.oneplus(write_strength)).squeeze(1)
        write_weights = mem.write_weighting(
            mem.allocation(usage), write_content, torch.sigmoid(allocation_gate).squeeze(-1), torch.sigmoid(write_gate).squeeze(-1)
        )
        memory = mem.erase_add_write(state.memory, write_weights.unsqueeze(1), torch.sigmoid(erase).unsqueeze(1), write_vector.unsqueeze(1))

        link = mem.update_link(state.link, state.precedence, write_weights)
        precedence = mem.update_precedence(state.precedence, write_weights)
        forward, backward = mem.directional_weights(link, state.read_weights)
        read_content = mem.content_weighting(memory, read_keys.view(B, R, W), mem.oneplus(read_strengths))
        read_weights = mem.read_mode_mixture(backward, read_content, forward, torch.softmax(read_modes.view(B, R, 3), dim=-1))
        reads = mem.read(memory, read_weights)

        y = clip(self.output(torch.cat([h, reads.flatten(1)], dim=-1)), self.clip_value)
        return y, DNCState(controller, memory, reads, read_weights, write_weights, usage, link, precedence)

    def trace(self, state: DNCState) -> dict[str, Tensor]:
        hidden = {"hidden": state.controller[-1][0]} if state.controller else {}  # feed-forward: none
        return {
            **hidden,
            "memory": state.memory,
            "read_weights": state.read_weights,
            "write_weights": state.write_weights.unsqueeze(1),
            "usage": state.usage.unsqueeze(1),
        }
