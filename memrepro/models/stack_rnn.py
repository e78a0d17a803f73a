"""Stack-augmented RNN (Joulin & Mikolov 2015, "Inferring Algorithmic Patterns with
Stack-Augmented Recurrent Nets", NIPS; §3.1 and §3.2 for several stacks).

Hidden layer (eq. 1, sigmoid):  h_t = σ(U x_t + P s^k_{t-1} [+ R h_{t-1}])
Actions per stack (softmax):    a_t = softmax(A h_t) over (PUSH, POP[, NO-OP])
Top of each stack (eq. 2):      s_t[0] = a_t[PUSH] σ(D h_t) + a_t[POP] s_{t-1}[1] + a_t[NO-OP] s_{t-1}[0]
Rest of the stack (eq. 3):      s_t[i] = a_t[PUSH] s_{t-1}[i-1] + a_t[POP] s_{t-1}[i+1] + a_t[NO-OP] s_{t-1}[i]
Output:                         y_t = V h_t (logits; the softmax is in the loss)

s^k_{t-1} are the top ``depth`` entries of every stack. Stacks hold scalars, have a fixed
capacity and start filled with the "empty" value -1; a pop shifts -1 in from the bottom (both
as in the authors' code, facebookarchive/Stack-RNN). The recurrent matrix R is optional: the
authors' published runs use recurrence through the stacks only (``-mod 1``), our default.
``rounding`` replaces the action distribution by its argmax when the model is not training
(the "+ rounding" rows of the paper's Table 1, the authors' ``-hard`` flag).

Worked example (a^n b^n, 40 hidden units, 10 stacks, depth 2): x_t [B, 2] one-hot ->
y_t [B, 2]; state = h [B, 40], stacks [B, 10, 200].
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memrepro.errors import ConfigError
from memrepro.models.base import SequenceModel
from memrepro.tasks.base import check_int

EMPTY = -1.0  # value of an empty stack cell (authors' EMPTY_STACK_VALUE)
PUSH, POP, NO_OP = 0, 1, 2
TRACE_DEPTH = 32  # stack entries shown in figures


def stack_update(stacks: Tensor, actions: Tensor, top: Tensor) -> Tensor:
    """Eqs. 2-3 for every stack at once: stacks [B, K, P] (index 0 = top), actions [B, K, 2|3]
    distributions over (PUSH, POP[, NO-OP]), top [B, K] the values a push would put on top."""
    pushed = torch.cat([top.unsqueeze(-1), stacks[..., :-1]], dim=-1)
    popped = torch.cat([stacks[..., 1:], torch.full_like(stacks[..., :1], EMPTY)], dim=-1)
    a = actions.unsqueeze(-1)
    new = a[:, :, PUSH] * pushed + a[:, :, POP] * popped
    return new + a[:, :, NO_OP] * stacks if actions.shape[-1] == 3 else new


class StackState(NamedTuple):
    hidden: Tensor  # [B, H]
    stacks: Tensor  # [B, K, capacity], index 0 = top
    actions: Tensor  # [B, K, A] the last step's action distribution (kept for figures)


class StackRNN(SequenceModel):
    compile_steps = 8  # compile=true: 8 steps per graph, 2.2x eager (docs/benchmarks.md, "Step-loop models")
    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_size: int = 40,
        num_stacks: int = 10,
        depth: int = 2,
        capacity: int = 200,
        no_op: bool = True,
        recurrent: bool = False,
        rounding: bool = False,
    ):
        super().__init__(input_size, output_size)
        for name, value in (("hidden_size", hidden_size), ("num_stacks", num_stacks), ("depth", depth), ("capacity", capacity)):
            check_int(f"model.{name}", value)
        if depth > capacity:
            raise ConfigError(f"model.depth={depth}: must be ≤ model.capacity={capacity}")
        self.hidden_size, self.num_stacks, self.depth, self.capacity = hidden_size, num_stacks, depth, capacity
        self.num_actions = 3 if no_op else 2
        self.recurrent, self.rounding = recurrent, rounding
        # U, P (and R) in one matrix applied to [x_t; s^k_{t-1} (; h_{t-1})].
        self.hidden = nn.Linear(input_size + num_stacks * depth + (hidden_size if recurrent else 0), hidden_size)
        self.actions = nn.Linear(hidden_size, num_stacks * self.num_actions)  # A, one block per stack
        self.push_value = nn.Linear(hidden_size, num_stacks)  # D, one row per stack
        self.output = nn.Linear(hidden_size, output_size)  # V

    def initial_state(self, batch_size: int) -> StackState:
        weight = self.output.weight
        return StackState(
            weight.new_zeros(batch_size, self.hidden_size),
            weight.new_full((batch_size, self.num_stacks, self.capacity), EMPTY),
            weight.new_zeros(batch_size, self.num_stacks, self.num_actions),
        )

    def step(self, x_t: Tensor, state: StackState) -> tuple[Tensor, StackState]:
        stacks = state.stacks
        parts = [x_t, stacks[..., : self.depth].flatten(1)] + ([state.hidden] if self.recurrent else [])
        h = torch.sigmoid(self.hidden(torch.cat(parts, dim=-1)))
        actions = torch.softmax(self.actions(h).view(-1, self.num_stacks, self.num_actions), dim=-1)
        if self.rounding and not self.training:
            actions = F.one_hot(actions.argmax(-1), self.num_actions).to(actions.dtype)
        new = stack_update(stacks, actions, torch.sigmoid(self.push_value(h)))
        return self.output(h), StackState(h, new, actions)

    def trace(self, state: StackState) -> dict[str, Tensor]:
        return {"stacks": state.stacks[..., :TRACE_DEPTH], "actions": state.actions}
