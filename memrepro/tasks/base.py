"""The task seam: a `Task` produces `Batch`es; the trainer and the loss code know nothing else.

A task declares its sizes and `output_kind`; loss and the standard metrics follow from the kind
(see `memrepro.train.losses`). Two data regimes:

* online (``dataset_size`` is None): fresh sequences from `sample()` at every step, as in the
  NTM paper; evaluation on a fixed set drawn once from a dedicated seed;
* dataset (``dataset_size`` = N): N sequences drawn once, split train/validation/test by
  ``splits`` (the SMANN protocol). Data-backed tasks (MNIST) override `make_splits`.

Curriculum: a task may define ``num_lessons`` > 1 and read ``self.lesson`` in `sample()`; the
trainer moves through the lessons and stores the current one in its checkpoints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from memrepro.errors import ConfigError

OUTPUT_KINDS = ("bits", "classes", "regression", "pixels")


@dataclass
class Batch:
    """One batch, batch-first.

    inputs  [B, T, I] float
    targets [B, T, O] float (bits/regression/pixels) or [B, T] / [B, T, G] long (classes,
            G groups of ``num_classes`` logits each)
    mask    [B, T] (or the targets' leading shape for grouped classes) float, 1 where scored
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor

    def to(self, device) -> "Batch":
        return Batch(*(getattr(self, f.name).to(device) for f in fields(self)))

    def __getitem__(self, index) -> "Batch":
        """Select sequences (rows) of every field: ``batch[idx]``."""
        return Batch(*(getattr(self, f.name)[index] for f in fields(self)))

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @staticmethod
    def cat(batches: list["Batch"]) -> "Batch":
        """Concatenate along the batch axis, padding shorter sequences with unscored zeros."""
        T = max(b.inputs.shape[1] for b in batches)

        def pad(t: Tensor) -> Tensor:
            extra = T - t.shape[1]
            if extra == 0:
                return t
            shape = (t.shape[0], extra, *t.shape[2:])
            return torch.cat([t, t.new_zeros(shape)], dim=1)

        return Batch(*(torch.cat([pad(getattr(b, f.name)) for b in batches]) for f in fields(Batch)))


class Task:
    """Base class of every task. Subclasses set the sizes and implement `sample`."""

    input_size: int
    output_size: int
    output_kind: str
    num_classes: int | None = None  # classes kind: logits per group (output_size = groups * num_classes)
    num_lessons: int = 1

    def __init__(
        self,
        dataset_size: int | None = None,
        splits: tuple[float, float, float] = (0.7, 0.1, 0.2),
        eval_size: int = 256,
    ):
        check_int("task.eval_size", eval_size)
        if dataset_size is not None:
            check_int("task.dataset_size", dataset_size)
            if len(splits) != 3 or any(s < 0 for s in splits) or abs(sum(splits) - 1) > 1e-6:
                raise ConfigError(f"task.splits={list(splits)}: give three non-negative fractions summing to 1")
            sizes = split_sizes(dataset_size, splits)
            empty = [name for name, n in zip(("train", "val", "test"), sizes) if n == 0]
            if empty:
                raise ConfigError(
                    f"task.splits={list(splits)} with task.dataset_size={dataset_size} leaves the "
                    f"{'/'.join(empty)} split empty: raise dataset_size or the split fraction"
                )
        self.dataset_size = dataset_size
        self.splits = tuple(splits)
        self.eval_size = eval_size
        self.lesson = 0

    # --- to implement -------------------------------------------------------------------------
    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        raise NotImplementedError  # abstract

    # --- optional hooks ---------------------------------------------------------------------
    def extra_eval_sets(self, generator: torch.Generator) -> dict[str, Batch]:
        """Further fixed evaluation sets, e.g. lengths beyond training (``len60``)."""
        return {}

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        """Task-specific metrics beside the standard ones of the output kind."""
        return {}

    def check_data(self) -> None:
        """Raise a DataError now if the task's data files are missing (the CLI calls this before
        anything is written; generated tasks have nothing to check)."""

    def set_lesson(self, lesson: int) -> None:
        self.lesson = min(lesson, self.num_lessons - 1)

    # --- data regimes -----------------------------------------------------------------------
    @property
    def online(self) -> bool:
        return self.dataset_size is None

    def make_splits(self, generator: torch.Generator) -> dict[str, Batch]:
        """The fixed dataset regime: draw ``dataset_size`` sequences once and split them."""
        data = self.sample(self.dataset_size, generator)
        n_train, n_val, _ = split_sizes(self.dataset_size, self.splits)
        return {
            "train": data[:n_train],
            "val": data[n_train : n_train + n_val],
            "test": data[n_train + n_val :],
        }

    def describe(self) -> str:
        return f"{type(self).__name__}(in={self.input_size}, out={self.output_size}, {self.output_kind})"


def lesson_high(lo: int, hi: int, lesson: int, num_lessons: int) -> int:
    """A range's upper end at ``lesson`` of a linear curriculum: lo + ceil((hi − lo)·(k + 1)/K),
    so the last lesson reaches ``hi``."""
    return lo + math.ceil((hi - lo) * (lesson + 1) / num_lessons)


def split_sizes(n: int, splits) -> tuple[int, int, int]:
    n_train = int(round(n * splits[0]))
    n_val = int(round(n * splits[1]))
    return n_train, n_val, n - n_train - n_val


def check_positive(name: str, value, allow_zero: bool = False) -> None:
    """Raise a one-line ConfigError unless ``value`` is a positive (or non-negative) number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        need = "≥ 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r}: must be a number {need}")


def check_range(name: str, lo, hi) -> None:
    """A (min, max) pair of lengths: both ≥ 1 and min ≤ max."""
    check_positive(f"{name}[0]", lo)
    check_positive(f"{name}[1]", hi)
    if lo > hi:
        raise ConfigError(f"{name}=[{lo}, {hi}]: the minimum exceeds the maximum")


def check_int(name: str, value, minimum: int = 1) -> None:
    """Raise a one-line ConfigError unless ``value`` is an integer ≥ ``minimum`` (lengths, counts)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name}={value!r}: must be an integer ≥ {minimum}")
