"""The model seam: every model is a `SequenceModel` driven one step at a time.

State is an explicit value (a tensor, a tuple or a dataclass of tensors), never a module
attribute, so free-running generation and the forcing trainers can drive `step` themselves.
`forward` loops over `step` by default; a model may override it with a fused kernel as long as
it gives the same outputs.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_leaves, tree_structure, tree_unflatten

from memrepro.models.scan import Scan
from memrepro.tasks.base import check_positive

State = Any


class SequenceModel(nn.Module):
    """Maps inputs [B, T, I] to outputs [B, T, O] (logits or values, per the task's output kind)."""

    # Attributes the latest forward leaves on the module for `extra_loss` and `diagnostics` (Skip
    # RNN's update count): a forward stacked over seeds (memrepro.train.stacked) gives each seed's
    # model its own share of them.
    forward_values: tuple[str, ...] = ()
    # False for models whose gradients never pass through a Python time loop (fused or batched
    # operators only): compile=true has nothing to compile there.
    scans = True
    # compile=true: time steps per TorchInductor graph, unless compile_steps says otherwise. One for
    # whole-model steps (an 8-step DNC graph takes minutes to compile); cell stacks take 8.
    compile_steps = 1

    def __init__(self, input_size: int, output_size: int):
        super().__init__()
        check_positive("model.input_size", input_size)
        check_positive("model.output_size", output_size)
        self.input_size = input_size
        self.output_size = output_size
        self.scan = Scan()  # the time loops, eager or compiled (compile=true: memrepro.train.compiled)

    def initial_state(self, batch_size: int) -> State:
        raise NotImplementedError  # abstract

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One time step: x_t [B, I] -> (y_t [B, O], next state)."""
        raise NotImplementedError  # abstract

    def forward(self, x: Tensor, state: State = None, return_states: bool = False):
        """Run a whole sequence. With ``return_states`` also return the list of states after each
        step (for plots of memory contents and head weights)."""
        y, states, _ = self.run_steps(x, state, return_states)
        return (y, states) if return_states else y

    def run_steps(self, x: Tensor, state: State = None, keep_states: bool = False) -> tuple[Tensor, list, State]:
        """The step loop: outputs [B, T, O], the states after each step (when kept), the last state."""
        if state is None:
            state = self.initial_state(x.shape[0])
        if not keep_states:
            y, state = self.scan(self.step, (x,), state)
            return y, [], state
        if self.scan.compiling and all(isinstance(leaf, Tensor) for leaf in tree_leaves(state)):
            # compiled training that wants every state (the forcing trainers): the states come out
            # of the scan stacked [B, T, ...] leaf by leaf, and are handed back one per step
            (y, stacked), state = self.scan(self.step_and_state, (x,), state)
            steps = zip(*(leaf.unbind(1) for leaf in tree_leaves(stacked)))
            return y, [tree_unflatten(list(leaves), tree_structure(stacked)) for leaves in steps], state
        outputs, states = [], []
        for x_t in x.unbind(1):  # not x[:, t]: a slice's backward writes a full-size gradient
            y, state = self.step(x_t, state)
            outputs.append(y)
            states.append(state)
        return torch.stack(outputs, dim=1), states, state

    def step_and_state(self, x_t: Tensor, state: State):
        """`step` whose output carries the new state too (for `run_steps` keeping states)."""
        y, state = self.step(x_t, state)
        return (y, state), state

    def extra_loss(self) -> Tensor | float:
        """Regularisers added to the task loss (e.g. SMANN's L1 mask penalty)."""
        return 0.0

    def diagnostics(self) -> dict[str, float]:
        """Scalars logged beside the metrics (e.g. a memory access rate)."""
        return {}

    def trace(self, state: State) -> dict[str, Tensor]:
        """Named tensors of one state: ``hidden`` (the controller's) and ``memory`` are the features
        of the forcing trainers' discriminators, so they keep their graph (never detached here);
        the memory figure draws every key (memory, read/write weights)."""
        return {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
