"""Algorithmic sequences of Joulin & Mikolov 2015 (§4.1, Table 1; the slides' stack-RNN table).

Strings of one language are concatenated into a stream and the model predicts the next symbol
at every step (a language model; ``classes`` output). Only part of each string is predictable:
in a^n b^n, once the first b is seen the remaining b's and the next string's first a are
determined. A length n counts as solved when every such deterministic symbol is predicted
correctly; the paper reports the share of n in 2..60 solved (``n2_60/unsolved`` = 1 - that).

| language      | string                  | vocabulary      | deterministic after           |
|---------------|-------------------------|-----------------|-------------------------------|
| anbn          | a^n b^n                 | a b             | the first b                   |
| anbncn        | a^n b^n c^n             | a b c           | the first b                   |
| anbncndn      | a^n b^n c^n d^n         | a b c d         | the first b                   |
| anb2n         | a^n b^2n                | a b             | the first b                   |
| anbmcnm       | a^n b^m c^(n+m)         | a b c           | the first c                   |
| memorization  | w = w^R, w ∈ {1..k}^n   | = 1 .. k        | the '=' (up to the last symbol) |

Sizes follow the authors' generator (facebookarchive/Stack-RNN, task.h): for a^n b^m c^(n+m)
the size is n + m with m uniform in 1..size-1; for memorization the size is |w|.

Worked example (anbn, one row with sizes 2 then 1, tokens a a b b a b | a):
    inputs   a a b b a b        targets  a b b a b a
    deterministic mask          0 0 1 1 0 1
Training: sizes uniform in ``train_n`` = [2, 19] (n < 20) with the authors' curriculum: lesson
l draws sizes in [2, 2 + l], one lesson more per step of the trainer's curriculum.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from memrepro.errors import ConfigError
from memrepro.tasks.base import Batch, Task, check_int
from memrepro.tasks.ntm_suite import check_int_range

LETTERS = {"anbn": 2, "anbncn": 3, "anbncndn": 4}  # a^n b^n ...: as many letters as blocks
VOCABULARY = {**LETTERS, "anb2n": 2, "anbmcnm": 3}  # memorization: '=' and `alphabet` symbols
LANGUAGES = ("anbn", "anbncn", "anbncndn", "anb2n", "anbmcnm", "memorization")
SCORES = ("all", "deterministic")


class FormalLanguage(Task):
    output_kind = "classes"

    def __init__(
        self,
        language: str = "anbn",
        train_n: tuple[int, int] = (2, 19),
        curriculum: bool = True,
        seq_len: int = 200,
        score: str = "all",
        eval_n: tuple[int, int] = (2, 60),
        eval_strings: int = 5,
        alphabet: int = 2,
        dataset_size: int | None = None,
        splits=(0.7, 0.1, 0.2),
        eval_size: int = 256,
    ):
        super().__init__(dataset_size, splits, eval_size)
        if language not in LANGUAGES:
            raise ConfigError(f"task.language={language!r}: choose one of {', '.join(LANGUAGES)}")
        if score not in SCORES:
            raise ConfigError(f"task.score={score!r}: choose one of {', '.join(SCORES)}")
        train_n, eval_n = check_int_range("task.train_n", train_n), check_int_range("task.eval_n", eval_n)
        if language == "anbmcnm" and min(train_n[0], eval_n[0]) < 2:
            raise ConfigError("task.train_n/eval_n: a^n b^m c^(n+m) needs sizes n + m ≥ 2")
        check_int("task.seq_len", seq_len)
        check_int("task.eval_strings", eval_strings)
        check_int("task.alphabet", alphabet)
        self.language, self.train_n, self.eval_n = language, train_n, eval_n
        self.seq_len, self.score, self.eval_strings, self.alphabet = seq_len, score, eval_strings, alphabet
        self.num_lessons = train_n[1] - train_n[0] + 1 if curriculum else 1
        vocab = alphabet + 1 if language == "memorization" else VOCABULARY[language]
        self.num_classes = self.input_size = self.output_size = vocab

    # --- batches --------------------------------------------------------------------------------
    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        lo, hi = self.train_n
        hi = min(hi, lo + self.lesson) if self.num_lessons > 1 else hi
        strings = -(-(self.seq_len + 1) // self.length(lo))  # enough strings to fill the row
        sizes = torch.randint(lo, hi + 1, (batch_size, strings), generator=generator)
        tokens, deterministic, _ = self.streams(sizes, self.seq_len + 1, generator)
        mask = deterministic[:, :-1] if self.score == "deterministic" else torch.ones(batch_size, self.seq_len)
        return self.batch(tokens, mask.float())

    def extra_eval_sets(self, generator: torch.Generator) -> dict[str, Batch]:
        """One row per size n in ``eval_n``: ``eval_strings`` strings of size n, scored on their
        deterministic symbols (including the first symbol of the string that follows)."""
        lo, hi = self.eval_n
        sizes = torch.arange(lo, hi + 1)[:, None].expand(-1, self.eval_strings + 1)
        steps = int(self.length(sizes[:, :-1]).sum(1).max()) + 1
        tokens, deterministic, inside = self.streams(sizes, steps, generator)
        scored = deterministic & inside & (torch.arange(steps) < self.length(sizes[:, :-1]).sum(1, keepdim=True))
        return {f"n{lo}_{hi}": self.batch(tokens, scored[:, :-1].float(), inside[:, :-1])}

    def metrics(self, outputs: Tensor, batch: Batch) -> dict[str, float]:
        """``unsolved``: share of sequences (rows with a scored step) with a wrong scored prediction."""
        scored = batch.mask > 0
        rows = scored.any(dim=1)
        wrong = ((outputs.argmax(-1) != batch.targets) & scored).any(dim=1)
        return {"unsolved": float((wrong & rows).sum() / rows.sum().clamp_min(1))}

    def batch(self, tokens: Tensor, mask: Tensor, present: Tensor | None = None) -> Batch:
        """tokens [B, T+1] -> one-hot inputs of the first T, next-symbol targets, mask [B, T]."""
        inputs = F.one_hot(tokens[:, :-1], self.input_size).float()
        if present is not None:  # padding after a row's end: no symbol at all
            inputs = inputs * present.unsqueeze(-1)
        return Batch(inputs, tokens[:, 1:], mask)

    # --- the languages --------------------------------------------------------------------------
    def length(self, n):
        """Length of a string of size n (an int or a tensor of sizes)."""
        if self.language == "anb2n":
            return 3 * n
        if self.language in ("anbmcnm", "memorization"):
            return 2 * n + (self.language == "memorization")
        return LETTERS[self.language] * n

    def streams(self, sizes: Tensor, steps: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Concatenate strings of the given sizes [B, S] row by row; return the first ``steps``
        tokens [B, steps], whether the token after each is determined, and whether a token is
        inside the row's strings (False in the padding after them)."""
        B, S = sizes.shape
        ends = self.length(sizes).cumsum(dim=1)
        t = torch.arange(steps).repeat(B, 1)
        string = torch.searchsorted(ends, t, right=True)  # index of the string holding step t
        inside = string < S
        string = string.clamp(max=S - 1)
        n = sizes.gather(1, string)
        j = t - (ends.gather(1, string) - self.length(n))  # position inside the string

        if self.language in LETTERS or self.language == "anb2n":
            symbol = (j // n) if self.language in LETTERS else (j >= n).long()
            deterministic = j >= n  # from the first b on
        elif self.language == "anbmcnm":
            m = (torch.rand(B, S, generator=generator) * (sizes - 1)).long() + 1  # 1 .. size-1
            m = m.gather(1, string)
            symbol = (j >= n - m).long() + (j >= n).long()  # a for j < n-m, b up to n, then c
            deterministic = j >= n
        else:  # memorization: w, '=', reversed w with symbols 1..k and '=' = 0
            longest = int(sizes.max())
            w = torch.randint(1, self.alphabet + 1, (B, S * longest), generator=generator)
            mirrored = torch.where(j < n, j, 2 * n - j).clamp(0, longest - 1)  # w's index read at j
            symbol = torch.where(j == n, 0, w.gather(1, string * longest + mirrored))
            deterministic = (j >= n) & (j < 2 * n)
        return symbol * inside, deterministic & inside, inside
