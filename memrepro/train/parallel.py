"""Several seeds of one configuration trained in one process, in lockstep (``trainer.parallel_seeds``).

Each seed is a *lane*: its own `Trainer` (optimizer and scheduler state, clipping, data generator,
evaluation sets, curriculum, early stop, checkpoints, metrics log) and its own model, in its own run
folder. Only the forward pass is shared: `memrepro.train.stacked` runs the lanes' models as one
batched call over a seed axis, so a small recurrent model pays its per-step Python and dispatch
overhead once for all seeds instead of once per seed. The lanes do not mix, so the backward pass
of the summed losses gives each lane the gradient of its own loss; then each lane clips and steps
exactly as `Trainer._update` does. Hence the same metrics as separate runs, up to float rounding
(batched kernels sum in a different order).

* ``extra_loss()`` is taken from each lane's own module, so it must depend on the parameters only
  (as the seam says: regularisers), not on values a forward pass left on the module.
* A lane that fails (a non-finite loss) or stops early leaves the lockstep; the others go on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from memrepro.errors import MemreproError
from memrepro.tasks.base import Task
from memrepro.train.stacked import StackedForward
from memrepro.train.trainer import Trainer


@dataclass
class Lane:
    """One seed's run inside a parallel job."""

    trainer: Trainer
    model: torch.nn.Module
    task: Task
    run_dir: Path
    seed: int
    resume: bool = False
    result: dict | None = None  # what `Trainer.fit` would have returned
    error: MemreproError | None = None  # why this lane stopped (the others went on)

    @property
    def running(self) -> bool:
        return self.result is None and self.error is None

    def call(self, method, *args):
        """A lane's own step; a user-facing error ends this lane only."""
        try:
            return method(*args)
        except MemreproError as e:
            self.error = e


def fit_parallel(lanes: list[Lane], device="cpu", progress: bool = True) -> StackedForward:
    """Train every lane to its end (as `Trainer.fit` would); fills ``lane.result`` or
    ``lane.error``. Errors that are not a lane's own (bugs, interrupts) propagate."""
    for lane in lanes:
        lane.call(lane.trainer.start, lane.model, lane.task, lane.run_dir, lane.seed, lane.resume, device)
    forward = StackedForward()
    running = [lane for lane in lanes if lane.running]
    steps = [lane.trainer.state.step for lane in running]
    bar = tqdm(total=max((lane.trainer.total for lane in running), default=0), initial=min(steps, default=0), disable=not progress,
               desc=f"{type(lanes[0].model).__name__}/{type(lanes[0].task).__name__} ×{len(lanes)}", dynamic_ncols=True, leave=False)
    while running:
        for lane in running:
            if lane.trainer.done:
                lane.result = lane.call(lane.trainer._final)
        running = [lane for lane in running if lane.running]
        if not running:
            break
        _update(running, forward)
        bar.update(1)
        for lane in running:
            if lane.running:
                lane.call(lane.trainer.after_update)
        running = [lane for lane in running if lane.running]
    bar.close()
    return forward


def _update(lanes: list[Lane], forward: StackedForward) -> None:
    """`Trainer._update` for all lanes at once: one forward, one backward, per-lane steps.
    A trainer with its own objective (the forcing trainers: free-running passes, discriminators)
    computes it lane by lane; the backward pass and the steps are still shared."""
    batches = [lane.trainer._next_batch() for lane in lanes]
    for lane in lanes:
        lane.model.train()
    if type(lanes[0].trainer)._objective is Trainer._objective:
        outputs = forward([lane.model for lane in lanes], batches)
        losses = [lane.trainer._loss(y, b) for lane, y, b in zip(lanes, outputs, batches)]
    else:
        losses = [lane.trainer._objective(b) for lane, b in zip(lanes, batches)]
    for lane in lanes:
        lane.trainer.optimizer.zero_grad(set_to_none=True)
    sum(total for _, _, total in losses).backward()
    for lane, batch, (loss, metrics, total) in zip(lanes, batches, losses):
        lane.call(lane.trainer._apply, batch, loss, total, metrics)
