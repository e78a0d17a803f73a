"""The NTM paper's algorithmic tasks beyond copy (Graves, Wayne & Danihelka 2014, §4.2-4.5).

All three are online tasks with ``bits`` outputs; every generator is batched (per-sequence
lengths are handled with index arithmetic, no loop over the batch). Sequences of different
lengths in one batch are padded at the end with zeros that are not scored.

* `RepeatCopy` (§4.2): copy a sequence a given number of times, then emit an end marker.
* `AssociativeRecall` (§4.3): after a list of items, a query item asks for the item after it.
* `PrioritySort` (§4.5): output the vectors with the highest priorities, highest first.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from memrepro.errors import ConfigError
from memrepro.tasks.base import Batch, Task, check_int, check_range, lesson_high


def random_bits(shape, generator: torch.Generator) -> Tensor:
    return torch.randint(0, 2, shape, generator=generator).float()


def uniform_int(lo: int, hi: int, size: int, generator: torch.Generator) -> Tensor:
    """Integers drawn uniformly from [lo, hi] (both included)."""
    return torch.randint(lo, hi + 1, (size,), generator=generator)


def check_int_range(name: str, pair) -> tuple[int, int]:
    """A [min, max] pair of integers ≥ 1 with min ≤ max."""
    if len(pair) != 2:
        raise ConfigError(f"{name}={list(pair)}: give two integers [min, max]")
    check_int(f"{name}[0]", pair[0])
    check_int(f"{name}[1]", pair[1])
    check_range(name, *pair)
    return tuple(pair)


def parse_cases(name: str, cases, width: int) -> list[tuple[int, ...]]:
    """A list of evaluation cases, each a list of ``width`` positive integers."""
    out = []
    for i, case in enumerate(cases):
        case = [case] if isinstance(case, int) else list(case)
        if len(case) != width:
            raise ConfigError(f"{name}[{i}]={case}: give {width} positive integers")
        for j, v in enumerate(case):
            check_int(f"{name}[{i}][{j}]", v)
        out.append(tuple(case))
    return out


class RepeatCopy(Task):
    """NTM §4.2. Input: ``L`` random ``bits``-bit vectors, then one step with a delimiter flag and
    the repeat count R on a separate channel, normalised by the mean and standard deviation of the
    training counts ("normalised to have mean zero and variance one"). Output: the L vectors
    R times, then an end marker on an extra output channel. Training: L and R uniform in 1..10.

    Curriculum (ours; the paper trains without one): with ``num_lessons`` = K > 1 the upper ends of
    both ranges grow linearly, lesson k drawing L up to lo + ceil((hi − lo)·(k + 1)/K) and R
    likewise; the count keeps the full range's normalisation, so lessons share one input scale.

    Worked example (bits=2, L=2, R=2; channels = bits | delimiter | count), T = L+1+L·R+1 = 8:
        inputs  x1 x2 [0 0|1|c] 0 0 0 0 0        targets 0 0 0 x1 x2 x1 x2 [0 0|1]
        mask    0  0  0         1 1 1 1 1        (the end marker is scored too)
    """

    output_kind = "bits"

    def __init__(
        self,
        bits: int = 8,
        length: tuple[int, int] = (1, 10),
        repeats: tuple[int, int] = (1, 10),
        eval_cases=((10, 20), (20, 10)),
        num_lessons: int = 1,
        dataset_size: int | None = None,
        splits=(0.7, 0.1, 0.2),
        eval_size: int = 256,
    ):
        super().__init__(dataset_size, splits, eval_size)
        check_int("task.bits", bits)
        self.bits, self.length, self.repeats = bits, check_int_range("task.length", length), check_int_range("task.repeats", repeats)
        self.eval_cases = parse_cases("task.eval_cases", eval_cases, 2)
        check_int("task.num_lessons", num_lessons)
        self.num_lessons = num_lessons
        self.input_size, self.output_size = bits + 2, bits + 1
        lo, hi = self.repeats
        self.count_mean = (lo + hi) / 2
        self.count_std = math.sqrt(((hi - lo + 1) ** 2 - 1) / 12) or 1.0  # std of the uniform integers

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        length, repeats = ((lo, lesson_high(lo, hi, self.lesson, self.num_lessons)) for lo, hi in (self.length, self.repeats))
        return self.make(batch_size, generator, length, repeats)

    def extra_eval_sets(self, generator: torch.Generator) -> dict[str, Batch]:
        return {f"len{L}_rep{R}": self.make(self.eval_size, generator, (L, L), (R, R)) for L, R in self.eval_cases}

    def make(self, batch_size: int, generator: torch.Generator, length, repeats) -> Batch:
        L = uniform_int(*length, batch_size, generator)[:, None]  # [B, 1]
        R = uniform_int(*repeats, batch_size, generator)[:, None]
        steps = int((L + 2 + L * R).max())
        longest = int(L.max())
        seq = random_bits((batch_size, longest, self.bits), generator)
        seq *= (torch.arange(longest)[None, :] < L).unsqueeze(-1).float()  # rows shorter than the longest
        t = torch.arange(steps)[None, :]  # [1, T]
        rel = t - (L + 1)  # time since the output phase began
        inputs = torch.zeros(batch_size, steps, self.input_size)
        inputs[:, :longest, : self.bits] = seq
        delimiter = (t == L).float()
        inputs[..., self.bits] = delimiter
        inputs[..., self.bits + 1] = delimiter * (R - self.count_mean) / self.count_std
        copying = (rel >= 0) & (rel < L * R)
        source = (rel.clamp(min=0) % L).unsqueeze(-1).expand(-1, -1, self.bits)
        targets = torch.zeros(batch_size, steps, self.output_size)
        targets[..., : self.bits] = torch.gather(seq, 1, source) * copying.unsqueeze(-1)
        targets[..., self.bits] = (rel == L * R).float()
        mask = ((rel >= 0) & (rel <= L * R)).float()
        return Batch(inputs, targets, mask)


class AssociativeRecall(Task):
    """NTM §4.3. Items of ``item_length`` random ``bits``-bit vectors, each preceded by a
    delimiter on channel ``bits``; then a query (a random item that is not the last one) framed
    by a second delimiter on channel ``bits + 1``; the target is the item that followed the query.
    Training: 2 to 6 items of three 6-bit vectors; the paper tests generalisation up to 12 and more.

    Worked example (2 items A = a1 a2 a3, B = b1 b2 b3; d = item delimiter, q = query delimiter):
        inputs   d a1 a2 a3 d b1 b2 b3 q a1 a2 a3 q  0  0  0
        targets  0 ...                            b1 b2 b3     (scored only there)
    """

    output_kind = "bits"

    def __init__(
        self,
        bits: int = 6,
        item_length: int = 3,
        items: tuple[int, int] = (2, 6),
        eval_items=(12,),
        dataset_size: int | None = None,
        splits=(0.7, 0.1, 0.2),
        eval_size: int = 256,
    ):
        super().__init__(dataset_size, splits, eval_size)
        check_int("task.bits", bits)
        check_int("task.item_length", item_length)
        items = check_int_range("task.items", items)
        if items[0] < 2:
            raise ConfigError(f"task.items={list(items)}: need at least 2 items (a query and the item after it)")
        self.eval_items = [k for (k,) in parse_cases("task.eval_items", eval_items, 1)]
        if min(self.eval_items, default=2) < 2:
            raise ConfigError(f"task.eval_items={list(eval_items)}: every case needs at least 2 items")
        self.bits, self.item_length, self.items = bits, item_length, items
        self.input_size, self.output_size = bits + 2, bits

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        return self.make(batch_size, generator, self.items)

    def extra_eval_sets(self, generator: torch.Generator) -> dict[str, Batch]:
        return {f"items{k}": self.make(self.eval_size, generator, (k, k)) for k in self.eval_items}

    def make(self, batch_size: int, generator: torch.Generator, items) -> Batch:
        B, n, bits = batch_size, self.item_length, self.bits
        k = uniform_int(*items, B, generator)  # items per sequence
        K = int(k.max())
        values = random_bits((B, K, n, bits), generator)
        query = (torch.rand(B, generator=generator) * (k - 1)).long()  # 0 .. k-2
        steps = K * (n + 1) + 2 * n + 2
        rows = torch.arange(B)

        blocks = torch.zeros(B, K, n + 1, self.input_size)
        blocks[:, :, 0, bits] = 1.0
        blocks[:, :, 1:, :bits] = values
        blocks *= (torch.arange(K)[None, :] < k[:, None]).float()[..., None, None]  # drop unused items
        inputs = torch.zeros(B, steps, self.input_size)
        inputs[:, : K * (n + 1)] = blocks.flatten(1, 2)

        query_block = torch.zeros(B, n + 2, self.input_size)
        query_block[:, 1 : n + 1, :bits] = values[rows, query]
        query_block[:, [0, n + 1], bits + 1] = 1.0
        start = (k * (n + 1))[:, None]  # the query follows the last item
        query_steps = start + torch.arange(n + 2)[None, :]
        inputs.scatter_(1, query_steps[..., None].expand(-1, -1, self.input_size), query_block)

        answer_steps = start + n + 2 + torch.arange(n)[None, :]
        targets = torch.zeros(B, steps, bits).scatter_(1, answer_steps[..., None].expand(-1, -1, bits), values[rows, query + 1])
        mask = torch.zeros(B, steps).scatter_(1, answer_steps, 1.0)
        return Batch(inputs, targets, mask)


class PrioritySort(Task):
    """NTM §4.5. ``inputs`` random ``bits``-bit vectors, each with a priority drawn uniformly from
    [-1, 1] on channel ``bits``; a delimiter on channel ``bits + 1``; then the ``outputs``
    highest-priority vectors, sorted by decreasing priority (the paper: 20 in, 16 out).

    Worked example (inputs=3, outputs=2): priorities (0.1, 0.9, -0.5) of x1 x2 x3 ->
        inputs   [x1|.1] [x2|.9] [x3|-.5] delim  0  0
        targets   0       0       0        0     x2 x1
    """

    output_kind = "bits"

    def __init__(
        self,
        bits: int = 8,
        inputs: int = 20,
        outputs: int = 16,
        dataset_size: int | None = None,
        splits=(0.7, 0.1, 0.2),
        eval_size: int = 256,
    ):
        super().__init__(dataset_size, splits, eval_size)
        check_int("task.bits", bits)
        check_int("task.inputs", inputs)
        check_int("task.outputs", outputs)
        if outputs > inputs:
            raise ConfigError(f"task.outputs={outputs}: cannot sort out more vectors than task.inputs={inputs}")
        self.bits, self.num_inputs, self.num_outputs = bits, inputs, outputs
        self.input_size, self.output_size = bits + 2, bits

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        B, n, m, bits = batch_size, self.num_inputs, self.num_outputs, self.bits
        values = random_bits((B, n, bits), generator)
        priority = torch.rand(B, n, generator=generator) * 2 - 1
        order = priority.topk(m, dim=1).indices  # sorted, highest priority first
        inputs = torch.zeros(B, n + 1 + m, self.input_size)
        inputs[:, :n, :bits] = values
        inputs[:, :n, bits] = priority
        inputs[:, n, bits + 1] = 1.0
        targets = torch.zeros(B, n + 1 + m, bits)
        targets[:, n + 1 :] = torch.gather(values, 1, order[..., None].expand(-1, -1, bits))
        mask = torch.zeros(B, n + 1 + m)
        mask[:, n + 1 :] = 1.0
        return Batch(inputs, targets, mask)
