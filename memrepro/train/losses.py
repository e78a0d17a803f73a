"""Loss and standard metrics per output kind, so tasks never repeat them.

| kind       | loss                                   | metric                                   |
|------------|----------------------------------------|------------------------------------------|
| bits       | BCE with logits, mean over scored bits | ``bit_errors``: wrong bits per sequence  |
| classes    | cross-entropy, mean over scored steps  | ``error``: share of wrong scored steps   |
| regression | MSE, mean over scored values           | ``mse``                                  |
| pixels     | BCE with logits, mean over scored bits | ``nll``: nats per sequence (image)       |

Every metric is "lower is better", which lets the trainer pick the best checkpoint uniformly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from memrepro.tasks.base import Batch

PRIMARY_METRIC = {"bits": "bit_errors", "classes": "error", "regression": "mse", "pixels": "nll"}


def _expand_mask(mask: Tensor, like: Tensor) -> Tensor:
    """Broadcast a [B, T] (or [B, T, G]) mask over the trailing axes of ``like``."""
    while mask.dim() < like.dim():
        mask = mask.unsqueeze(-1)
    return mask.expand_as(like).to(like.dtype)


def _group_logits(outputs: Tensor, targets: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """[B, T, G*C] logits and [B, T] or [B, T, G] ids -> logits [B, T, G, C], ids [B, T, G]."""
    if targets.dim() == 2:
        targets = targets.unsqueeze(-1)
    return outputs.reshape(*targets.shape, num_classes), targets


def loss_and_metrics(kind: str, outputs: Tensor, batch: Batch, num_classes: int | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """The differentiable loss and the detached standard metric (tensors, to avoid host syncs)."""
    targets, mask = batch.targets, batch.mask
    if kind == "classes":
        logits, ids = _group_logits(outputs, targets, num_classes)
        m = _expand_mask(mask, ids.float())
        ce = F.cross_entropy(logits.flatten(0, -2), ids.flatten(), reduction="none").view_as(m)
        denom = m.sum().clamp_min(1)
        loss = (ce * m).sum() / denom
        wrong = (logits.argmax(-1) != ids).float()
        return loss, {"error": ((wrong * m).sum() / denom).detach()}
    m = _expand_mask(mask, targets)
    denom = m.sum().clamp_min(1)
    batch_size = targets.shape[0]
    if kind == "regression":
        se = (outputs - targets) ** 2
        loss = (se * m).sum() / denom
        return loss, {"mse": loss.detach()}
    if kind in ("bits", "pixels"):
        bce = F.binary_cross_entropy_with_logits(outputs, targets, reduction="none") * m
        loss = bce.sum() / denom
        if kind == "pixels":
            return loss, {"nll": (bce.sum() / batch_size).detach()}
        wrong = ((outputs > 0).float() != targets).float() * m
        return loss, {"bit_errors": (wrong.sum() / batch_size).detach()}
    raise ValueError(f"unknown output kind {kind!r}")


def sequence_correct(kind: str, outputs: Tensor, batch: Batch, num_classes: int | None) -> Tensor:
    """[B] bool: every scored output of the sequence is right (rounded, or argmax for classes) —
    the Memory Forcing paper's "correct prediction" (distance exactly 0 after rounding, §4.2)."""
    if kind == "classes":
        predicted = outputs.reshape(*batch.targets.shape[:2], -1, num_classes).argmax(-1).reshape(batch.targets.shape)
        wrong = predicted != batch.targets
    elif kind in ("bits", "pixels"):
        wrong = (outputs > 0).float() != batch.targets
    else:
        raise ValueError(f"correct predictions are defined for bits, pixels and classes outputs, not {kind}")
    mask = batch.mask.bool()
    while wrong.dim() > mask.dim():
        wrong = wrong.any(-1)
    return ~(wrong & mask).any(-1)


def predictions(kind: str, outputs: Tensor, num_classes: int | None = None) -> Tensor:
    """What the model predicts, for plots: probabilities, class ids or values."""
    if kind in ("bits", "pixels"):
        return torch.sigmoid(outputs)
    if kind == "classes":
        return outputs.reshape(*outputs.shape[:-1], -1, num_classes).argmax(-1)
    return outputs
