"""The training loop: optimizer, clipping, curriculum, evaluation cadence, early stop,
checkpoint/resume, progress bar and the metrics log. It knows nothing model- or task-specific.

Two data regimes (chosen by the task, see `memrepro.tasks.base`):

* online  — a fresh batch from `task.sample` at every update; evaluation every ``eval_every``
  updates on a fixed set drawn once from the seed; final metrics = the last evaluation.
* dataset — epochs over a fixed train split; validation after every epoch (and every
  ``eval_every`` updates); the test metrics come from the weights of the lowest validation
  ``best_metric`` (default the loss: "the model parameters with the minimum validation loss",
  SMANN §4). A fixed slice of the training split (``trainset_*``) is evaluated beside it.

Resume is exact: the checkpoint holds model, optimizer, scheduler, lesson, the data generator's
and torch's RNG states, the epoch's shuffle order and the metrics log, so a resumed run ends with
the same metrics as an uninterrupted one.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from memrepro.errors import ConfigError, TrainingDiverged
from memrepro.results import io
from memrepro.tasks.base import Batch, Task, check_int, check_positive
from memrepro.train.losses import PRIMARY_METRIC, loss_and_metrics, sequence_correct

EVAL_CHUNK = 512  # sequences per forward pass at evaluation, to bound memory on long sequences
EVAL_SEED_OFFSET = 7919  # the evaluation data comes from its own stream, independent of training
# A loss past this has diverged though still finite: the tasks' losses (cross-entropy, bitwise
# BCE, MSE on unit-scale targets) start at O(1), so 1e10 is far past any run that still learns.
DIVERGED_LOSS = 1e10


@dataclass
class Progress:
    """Everything about the loop's position that a checkpoint must restore."""

    step: int = 0
    sequences: int = 0
    epoch: int = 0
    epoch_order: torch.Tensor | None = None  # dataset regime: this epoch's shuffle order
    epoch_pos: int = 0
    lesson: int = 0
    skipped: int = 0  # updates skipped for non-finite loss/gradients (nonfinite=skip)
    correct: int = 0  # training sequences predicted entirely right (Memory Forcing's copy metric)
    train_sums: dict = field(default_factory=dict)  # running sums since the last evaluation
    train_count: int = 0
    best_val: float = math.inf
    best_state: dict | None = None
    solved_at: dict | None = None  # first evaluation that met early_stop: step, sequences, seconds
    elapsed: float = 0.0  # training seconds before this process (resume)
    rows: list = field(default_factory=list)
    resumed_at: list = field(default_factory=list)  # the step at which each resume continued
    timing: list = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        optimizer: Callable,
        scheduler: Callable | None = None,
        batch_size: int = 32,
        steps: int = 1000,
        epochs: int = 10,
        eval_every: int = 100,
        checkpoint_every: int = 500,
        clip_norm: float | None = 10.0,
        clip_value: float | None = None,
        early_stop: dict | None = None,
        curriculum: dict | None = None,
        nonfinite: str = "stop",
        best_metric: str = "loss",
        progress: bool = True,
        parallel_seeds: int = 1,
    ):
        for name, value in [("batch_size", batch_size), ("steps", steps), ("epochs", epochs), ("eval_every", eval_every), ("checkpoint_every", checkpoint_every)]:
            check_int(f"trainer.{name}", value)
        for name, value in [("clip_norm", clip_norm), ("clip_value", clip_value)]:
            if value is not None:
                check_positive(f"trainer.{name}", value)
        if not isinstance(parallel_seeds, int) or isinstance(parallel_seeds, bool) or parallel_seeds < 1:
            raise ConfigError(f"trainer.parallel_seeds={parallel_seeds!r}: must be an integer ≥ 1")
        if nonfinite not in ("stop", "skip"):
            raise ConfigError(f"trainer.nonfinite={nonfinite!r}: choose stop or skip")
        for name, rule in [("early_stop", early_stop), ("curriculum", curriculum)]:
            if rule is not None and not (("metric" in rule and "value" in rule) or "every" in rule):
                raise ConfigError(f"trainer.{name}={dict(rule)}: give {{metric: <name>, value: <threshold>}}" + (" or {every: <updates>}" if name == "curriculum" else ""))
        for name, value in getattr(optimizer, "keywords", {}).items():
            if isinstance(value, str) or (name == "lr" and not value > 0):  # no torch optimizer takes a string
                raise ConfigError(f"trainer.optimizer.{name}={value!r}: must be a number" + (" > 0" if name == "lr" else ""))
        try:  # a wrong optimizer setting should fail now, not after the data is built
            optimizer([torch.zeros(1, requires_grad=True)])
        except (TypeError, ValueError) as e:
            raise ConfigError(f"trainer.optimizer: {e}") from None
        self.make_optimizer, self.make_scheduler = optimizer, scheduler
        self.batch_size, self.steps, self.epochs = batch_size, steps, epochs
        self.eval_every, self.checkpoint_every = eval_every, checkpoint_every
        self.clip_norm, self.clip_value = clip_norm, clip_value
        self.early_stop, self.curriculum = early_stop, curriculum
        self.nonfinite, self.progress = nonfinite, progress
        self.best_metric = best_metric
        self.parallel_seeds = parallel_seeds  # read by `memrepro.run`: seeds trained in one process

    # ------------------------------------------------------------------------------------------
    def fit(self, model, task: Task, run_dir: Path, seed: int = 0, resume: bool = False, device="cpu") -> dict:
        """Train ``model`` on ``task``; write metrics.csv/timing.csv/checkpoint.pt into ``run_dir``.
        Returns the final metrics and run statistics (the caller writes summary.json)."""
        self.start(model, task, run_dir, seed, resume, device)
        bar = tqdm(total=self.total, initial=self.state.step, disable=not self.progress, desc=f"{type(model).__name__}/{type(task).__name__}", dynamic_ncols=True, leave=False)
        while not self.done:
            self._update(self._next_batch())
            bar.update(1)
            row = self.after_update()
            if row:
                bar.set_postfix(loss=f"{row.get('train_loss', math.nan):.4g}", **{self._key(): f"{row[self._key()]:.4g}"})
        bar.close()
        return self._final()

    def check_task(self, task: Task) -> None:
        """Refuse a task this trainer cannot train (the forcing trainers need sampled outputs);
        the CLI calls it before any folder is created."""

    def start(self, model, task: Task, run_dir: Path, seed: int = 0, resume: bool = False, device="cpu") -> None:
        """Everything before the first update: optimizer, data streams, evaluation sets, resume.
        `fit` is ``start``, then `_update` and `after_update` until `done`, then `_final`
        (`memrepro.train.parallel` drives several trainers through the same steps in lockstep)."""
        self.check_task(task)
        run_dir = Path(run_dir)
        self.model, self.task, self.device = model.to(device), task, torch.device(device)
        self.optimizer = self.make_optimizer(model.parameters())
        self.scheduler = self.make_scheduler(self.optimizer) if self.make_scheduler else None
        self.generator = torch.Generator().manual_seed(seed)
        self.ckpt_path = run_dir / io.CHECKPOINT
        self.run_dir = run_dir
        self.metric = PRIMARY_METRIC[task.output_kind]

        eval_generator = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
        if task.online:
            task.set_lesson(task.num_lessons - 1)  # evaluate at full difficulty
            self.eval_sets = {"eval": task.sample(task.eval_size, eval_generator)}
            self.eval_sets.update(task.extra_eval_sets(eval_generator))
            task.set_lesson(0)
            self.splits = None
            self.total = self.steps
        else:
            self.splits = task.make_splits(torch.Generator().manual_seed(seed))
            # a fixed slice of the training split, so train and test curves share every metric
            trainset = self.splits["train"][: task.eval_size]
            self.eval_sets = {"val": self.splits["val"], "trainset": trainset, **task.extra_eval_sets(eval_generator)}
            self.total = self.epochs * math.ceil(len(self.splits["train"]) / self.batch_size)

        self.state = Progress()
        if resume:
            self._restore(io.load_checkpoint(self.ckpt_path))
            self.state.resumed_at.append(self.state.step)
        task.set_lesson(self.state.lesson)
        self.stopped = False
        self.start_time = time.perf_counter()

    @property
    def done(self) -> bool:
        return self.stopped or self.state.step >= self.total

    def after_update(self) -> dict | None:
        """Evaluate, move the curriculum, decide early stop and checkpoint when due; returns the
        metrics row when an evaluation ran."""
        s, row = self.state, None
        at_epoch_end = self.splits is not None and s.epoch_pos == 0
        if s.step % self.eval_every == 0 or at_epoch_end or s.step == self.total:
            row = self._evaluate()
            self.stopped = self._advance(row)
        elif self.curriculum and "every" in self.curriculum and s.step % self.curriculum["every"] == 0:
            self._next_lesson()  # a fixed schedule does not wait for an evaluation
        if s.step % self.checkpoint_every == 0 or self.done:
            self._checkpoint()
        return row

    # --- one update ---------------------------------------------------------------------------
    def _next_batch(self) -> Batch:
        s = self.state
        if self.splits is None:
            return self.task.sample(self.batch_size, self.generator).to(self.device)
        train = self.splits["train"]
        if s.epoch_order is None:
            s.epoch_order = torch.randperm(len(train), generator=self.generator)
        idx = s.epoch_order[s.epoch_pos : s.epoch_pos + self.batch_size]
        s.epoch_pos += len(idx)
        if s.epoch_pos >= len(train):
            s.epoch, s.epoch_pos, s.epoch_order = s.epoch + 1, 0, None
        return train[idx].to(self.device)

    def _update(self, batch: Batch) -> None:
        self.model.train()
        loss, metrics, total = self._objective(batch)
        self.optimizer.zero_grad(set_to_none=True)  # after the objective: it may train other nets (forcing)
        total.backward()
        self._apply(batch, loss, total, metrics)

    def _objective(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """Task loss, its metrics, and the total to minimise (teacher forcing; the forcing
        trainers in `memrepro.train.forcing` add adversarial terms here)."""
        return self._loss(self.model(batch.inputs), batch)

    def _loss(self, outputs: Tensor, batch: Batch) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """The task loss of given outputs, its metrics, and the total with the model's regularisers.
        Non-regression tasks also report ``correct``: the share of sequences entirely right, and
        ``sequence_error``: the share not (lower is better, for curriculum and early-stop rules)."""
        loss, metrics = loss_and_metrics(self.task.output_kind, outputs, batch, self.task.num_classes)
        if self.task.output_kind != "regression":
            metrics["correct"] = self.sequence_correct(outputs, batch).float().mean()
            metrics["sequence_error"] = 1 - metrics["correct"]
        return loss, metrics, loss + self.model.extra_loss()

    def sequence_correct(self, outputs: Tensor, batch: Batch) -> Tensor:
        """[B] bool: which sequences of the batch the outputs get entirely right."""
        return sequence_correct(self.task.output_kind, outputs.detach(), batch, self.task.num_classes)

    def _apply(self, batch: Batch, loss: Tensor, total: Tensor, metrics: dict[str, Tensor]) -> None:
        """Clip the gradients that `total.backward()` left, step the optimizer, count the update."""
        model, s = self.model, self.state
        if self.clip_value is not None:
            torch.nn.utils.clip_grad_value_(model.parameters(), self.clip_value)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip_norm or math.inf)
        s.step += 1
        s.sequences += len(batch)
        if "correct" in metrics:
            s.correct += round(metrics["correct"].item() * len(batch))
        last = f"last good checkpoint: {self.ckpt_path}" if self.ckpt_path.exists() else "no checkpoint was written yet"
        if not (torch.isfinite(total) and torch.isfinite(grad_norm)):
            if self.nonfinite == "stop":
                raise TrainingDiverged(f"non-finite {'loss' if not torch.isfinite(total) else 'gradient'} at step {s.step}; {last} (lower the learning rate, clip gradients, or set trainer.nonfinite=skip)")
            s.skipped += 1
            return
        if total.item() > DIVERGED_LOSS:
            raise TrainingDiverged(f"the loss diverged at step {s.step} ({total.item():.3g} > {DIVERGED_LOSS:.0e}); {last} (lower the learning rate or clip gradients)")
        try:
            self.optimizer.step()
        except RuntimeError as e:  # e.g. lr beyond float32: "value cannot be converted ... without overflow"
            if "overflow" not in str(e):
                raise
            raise TrainingDiverged(f"the optimizer's update overflowed at step {s.step} ({str(e).splitlines()[0]}): lower trainer.optimizer.lr") from None
        if self.scheduler is not None:
            self.scheduler.step()
        for name, value in {"loss": loss.detach(), **metrics}.items():
            s.train_sums[name] = s.train_sums.get(name, 0.0) + value.item()
        s.train_count += 1

    def _extra_state(self) -> dict:
        """Trainer-specific state for the checkpoint (subclasses: discriminators, buffers)."""
        return {}

    def _load_extra_state(self, extra: dict) -> None:
        """Inverse of `_extra_state`."""

    # --- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, batch: Batch) -> dict[str, float]:
        """Loss, standard metric and task metrics of the model on one fixed batch."""
        self.model.eval()
        outputs = torch.cat([self.model(batch.inputs[i : i + EVAL_CHUNK].to(self.device)).cpu() for i in range(0, len(batch), EVAL_CHUNK)])
        loss, metrics = loss_and_metrics(self.task.output_kind, outputs, batch, self.task.num_classes)
        return {"loss": loss.item(), **{k: v.item() for k, v in metrics.items()}, **self.task.metrics(outputs, batch)}

    def _evaluate(self) -> dict:
        s = self.state
        n = max(s.train_count, 1)
        row = {"step": s.step, "sequences": s.sequences, "epoch": s.epoch, "lesson": s.lesson}
        row.update({f"train_{k}": v / n for k, v in s.train_sums.items()})
        for name, batch in self.eval_sets.items():
            row.update({f"{name}_{k}": v for k, v in self.evaluate(batch).items()})
        row.update(self.model.diagnostics())
        if s.skipped:
            row["skipped"] = s.skipped
        s.rows.append(row)
        seconds = s.elapsed + time.perf_counter() - self.start_time
        s.timing.append({"step": s.step, "sequences": s.sequences, "seconds": round(seconds, 3)})
        s.train_sums, s.train_count = {}, 0
        io.write_csv(self.run_dir / io.METRICS, s.rows)
        io.write_csv(self.run_dir / io.TIMING, s.timing)
        return row

    def _key(self) -> str:
        return f"{'eval' if self.splits is None else 'val'}_{self.metric}"

    def _advance(self, row: dict) -> bool:
        """Keep the best-validation weights, move the curriculum, decide early stop."""
        s = self.state
        if self.splits is not None and f"val_{self.best_metric}" not in row:
            raise ConfigError(f"trainer.best_metric={self.best_metric!r}: not a validation metric; choose one of {', '.join(k[4:] for k in row if k.startswith('val_'))}")
        if self.splits is not None and row[f"val_{self.best_metric}"] < s.best_val:
            s.best_val = row[f"val_{self.best_metric}"]
            s.best_state = copy.deepcopy(self.model.state_dict())
        if self.curriculum:
            rule = self.curriculum
            if (s.step % rule["every"] == 0) if "every" in rule else row.get(f"train_{rule['metric']}", math.inf) <= rule["value"]:
                self._next_lesson()
        if self.early_stop and s.lesson == self.task.num_lessons - 1:
            value = row.get(self.early_stop["metric"])
            if value is None:
                raise ConfigError(f"trainer.early_stop.metric={self.early_stop['metric']!r}: not a logged metric; choose one of {', '.join(k for k in row if k not in ('step', 'sequences', 'epoch', 'lesson'))}")
            if value <= self.early_stop["value"]:
                s.solved_at = {"step": s.step, "sequences": s.sequences, "seconds": s.timing[-1]["seconds"]}
                return True
        return False

    def _next_lesson(self) -> None:
        s = self.state
        if s.lesson < self.task.num_lessons - 1:
            s.lesson += 1
            self.task.set_lesson(s.lesson)

    # --- checkpoint / resume ------------------------------------------------------------------
    def _checkpoint(self) -> None:
        s = self.state
        s_elapsed = s.elapsed + time.perf_counter() - self.start_time
        io.save_checkpoint(self.ckpt_path, {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "progress": {**vars(s), "elapsed": s_elapsed},
            "extra": self._extra_state(),
        })

    def _restore(self, ckpt: dict) -> None:
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scheduler:
                self.scheduler.load_state_dict(ckpt["scheduler"])
            self.generator.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            self.state = Progress(**ckpt["progress"])
            self._load_extra_state(ckpt.get("extra") or {})
        except (KeyError, RuntimeError, TypeError, ValueError) as e:
            raise io.CheckpointError(f"checkpoint {self.ckpt_path} does not match this model/config ({type(e).__name__}): resume with the run's own settings, or start afresh") from None
        # Rows logged after the checkpoint are recomputed, exactly, by the resumed run.
        io.write_csv(self.run_dir / io.METRICS, self.state.rows)
        io.write_csv(self.run_dir / io.TIMING, self.state.timing)

    # --- the end ------------------------------------------------------------------------------
    def _final(self) -> dict:
        s = self.state
        seconds = s.elapsed + time.perf_counter() - self.start_time if not s.timing else s.timing[-1]["seconds"]
        result = {
            "steps": s.step,
            "sequences": s.sequences,
            "epochs": s.epoch,
            "lesson": s.lesson,
            "lessons": self.task.num_lessons,
            "train_seconds": seconds,
            "sequences_per_second": s.sequences / seconds if seconds > 0 else None,
            "skipped_updates": s.skipped,
            "correct_predictions": s.correct,
            "solved_at": s.solved_at,
            "resumed_at": s.resumed_at,
            "final": {k: v for k, v in s.rows[-1].items() if k not in ("step", "sequences", "epoch", "lesson")},
        }
        if self.task.output_kind != "regression":
            result["final"]["train_correct_fraction"] = s.correct / max(s.sequences, 1)
        if self.splits is not None:
            # The SMANN protocol: test metrics of the best-validation weights.
            if s.best_state is not None:
                self.model.load_state_dict(s.best_state)
            result["best_val"] = s.best_val
            result["final"].update({f"test_{k}": v for k, v in self.evaluate(self.splits["test"]).items()})
        return result
