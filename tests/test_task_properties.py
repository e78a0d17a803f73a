"""Property-based tests of every task generator: any valid parameters give batches with the
declared shapes, finite values, targets in range and a mask that scores at least one step."""
import math

import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from memrepro.tasks import algorithmic, graph, nmn_tasks
from memrepro.tasks.base import Batch, Task

ints = st.integers
PROPERTY = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_batch(task: Task, batch: Batch, batch_size: int) -> None:
    B, T, I = batch.inputs.shape
    assert B == batch_size and I == task.input_size and T >= 1
    assert torch.isfinite(batch.inputs).all()
    assert batch.mask.shape[:2] == (B, T) and ((batch.mask == 0) | (batch.mask == 1)).all()
    assert (batch.mask.flatten(1).sum(1) >= 1).all(), "every sequence scores at least one step"
    if task.output_kind == "classes":
        groups = task.output_size // task.num_classes
        assert groups * task.num_classes == task.output_size
        assert batch.targets.shape[:2] == (B, T) and batch.targets.dtype == torch.long
        assert (batch.targets.numel() == B * T * groups) and batch.targets.min() >= 0 and batch.targets.max() < task.num_classes
    else:
        assert batch.targets.shape == (B, T, task.output_size) and torch.isfinite(batch.targets).all()
        if task.output_kind in ("bits", "pixels"):
            assert ((batch.targets == 0) | (batch.targets == 1)).all()


def sample(task: Task, batch_size: int, seed: int) -> None:
    check_batch(task, task.sample(batch_size, torch.Generator().manual_seed(seed)), batch_size)


batch_sizes, seeds = ints(1, 6), ints(0, 2**31 - 1)


@PROPERTY
@given(bits=ints(1, 10), lo=ints(1, 12), extra=ints(0, 12), lessons=ints(1, 4), B=batch_sizes, seed=seeds)
def test_copy(bits, lo, extra, lessons, B, seed):
    task = algorithmic.Copy(bits=bits, lengths=(lo, lo + extra), eval_lengths=(lo + extra + 1,), num_lessons=lessons)
    for lesson in range(lessons):
        task.set_lesson(lesson)
        sample(task, B, seed)
    check_batch(task, task.extra_eval_sets(torch.Generator().manual_seed(seed))[f"len{lo + extra + 1}"], task.eval_size)


@PROPERTY
@given(gap=ints(0, 40), copy_length=ints(1, 12), symbols=ints(2, 10), B=batch_sizes, seed=seeds)
def test_copy_memory(gap, copy_length, symbols, B, seed):
    task = algorithmic.CopyMemory(gap=gap, copy_length=copy_length, num_symbols=symbols)
    sample(task, B, seed)
    assert math.isclose(task.baseline, copy_length * math.log(symbols) / (gap + 2 * copy_length + 1))


@PROPERTY
@given(length=ints(2, 200), B=batch_sizes, seed=seeds)
def test_add(length, B, seed):
    sample(algorithmic.Add(length=length), B, seed)


@PROPERTY
@given(length=ints(1, 150), dt=st.floats(0.1, 2.0), B=ints(2, 6), seed=seeds)
def test_frequency(length, dt, B, seed):
    sample(algorithmic.Frequency(length=length, dt=dt), B, seed)


@PROPERTY
@given(length=ints(1, 8), bits=ints(1, 8), B=batch_sizes, seed=seeds)
def test_memory_recall(length, bits, B, seed):
    sample(nmn_tasks.MemoryRecall(length=length, bits=bits), B, seed)


@PROPERTY
@given(classes=ints(2, 6), history=ints(1, 4), extra=ints(1, 30), noise=st.floats(0, 1), B=batch_sizes, seed=seeds)
def test_classification_recall(classes, history, extra, noise, B, seed):
    sample(nmn_tasks.ClassificationRecall(num_classes=classes, history=history, length=history + extra, noise=noise), B, seed)


@PROPERTY
@given(classes=ints(2, 6), delay=ints(1, 30), extra=ints(1, 30), noise=st.floats(0, 1), B=batch_sizes, seed=seeds)
def test_extended_recall(classes, delay, extra, noise, B, seed):
    sample(nmn_tasks.ExtendedRecall(num_classes=classes, delay=delay, length=delay + extra, noise=noise), B, seed)


@settings(max_examples=6, deadline=None)
@given(classes=ints(2, 6), dims=ints(1, 3), length=ints(1, 40), B=batch_sizes, seed=seeds)
def test_sorted_classification(classes, dims, length, B, seed):
    task = nmn_tasks.SortedClassification(num_classes=classes, dims=dims, length=length, tuning_samples=2000)
    sample(task, B, seed)


@settings(max_examples=6, deadline=None)
@given(lessons=ints(1, 3), B=ints(1, 3), seed=seeds)
def test_graph_tasks(lessons, B, seed):
    for cls in (graph.GraphTraversal, graph.ShortestPath):
        task = cls(lessons=lessons)
        for lesson in range(task.num_lessons):
            task.set_lesson(lesson)
            sample(task, B, seed)
