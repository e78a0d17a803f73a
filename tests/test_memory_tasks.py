"""NTM-suite and formal-language task generators: shapes and hand-checkable targets."""
import math

import pytest
import torch

from memrepro.errors import ConfigError
from memrepro.tasks.formal_language import LANGUAGES, FormalLanguage
from memrepro.tasks.ntm_suite import AssociativeRecall, PrioritySort, RepeatCopy


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- repeat copy --------------------------------------------------------------------------------
def test_repeat_copy_worked_example():
    task = RepeatCopy(bits=2)
    b = task.make(1, gen(), (2, 2), (3, 3))
    x = b.inputs[0, :2, :2]
    assert b.inputs.shape == (1, 2 + 1 + 6 + 1, 4) and b.targets.shape == (1, 10, 3)
    assert torch.equal(b.inputs[0, 2], torch.tensor([0, 0, 1, (3 - 5.5) / math.sqrt(99 / 12)]))
    assert torch.equal(b.inputs[0, 3:], torch.zeros(7, 4))
    assert torch.equal(b.targets[0, 3:9, :2], torch.cat([x, x, x]))
    assert torch.equal(b.targets[0, :, 2], torch.tensor([0.0] * 9 + [1.0]))  # end marker last
    assert torch.equal(b.mask[0], torch.tensor([0.0] * 3 + [1.0] * 7))


def test_repeat_copy_batches_mixed_lengths():
    b = RepeatCopy().sample(64, gen(1))
    for i in range(64):
        L = int(b.inputs[i, :, 8].argmax())  # the delimiter step
        R = round(float(b.inputs[i, L, 9]) * math.sqrt(99 / 12) + 5.5)
        assert 1 <= L <= 10 and 1 <= R <= 10
        assert b.mask[i].sum() == L * R + 1
        out = b.targets[i, L + 1 : L + 1 + L * R, :8]
        assert torch.equal(out, b.inputs[i, :L, :8].repeat(R, 1))
        assert torch.equal(b.inputs[i, L + 1 :], torch.zeros_like(b.inputs[i, L + 1 :]))
    sets = RepeatCopy(eval_size=4).extra_eval_sets(gen())
    assert {k: v.mask.sum(1).tolist() for k, v in sets.items()} == {"len10_rep20": [201] * 4, "len20_rep10": [201] * 4}


def test_repeat_copy_curriculum_grows_both_ranges_and_keeps_the_count_scale():
    task = RepeatCopy(num_lessons=3)  # upper ends 1 + ceil(9 (k+1) / 3): 4, 7, 10
    for lesson, top in enumerate((4, 7, 10)):
        task.set_lesson(lesson)
        b = task.sample(256, gen(lesson))
        L = b.inputs[..., 8].argmax(1)
        R = (b.inputs[torch.arange(256), L, 9] * math.sqrt(99 / 12) + 5.5).round()
        assert int(L.max()) == top and int(R.max()) == top and int(L.min()) == int(R.min()) == 1


# --- associative recall -------------------------------------------------------------------------
def test_associative_recall_answer_is_the_item_after_the_query():
    task = AssociativeRecall()
    b = task.sample(32, gen(2))
    for i in range(32):
        x = b.inputs[i]
        starts = torch.nonzero(x[:, 6]).flatten().tolist()
        items = [x[s + 1 : s + 4, :6] for s in starts]
        q0, q1 = torch.nonzero(x[:, 7]).flatten().tolist()
        assert 2 <= len(items) <= 6 and q0 == 4 * len(items) and q1 == q0 + 4
        index = next(j for j, item in enumerate(items) if torch.equal(item, x[q0 + 1 : q1, :6]))
        assert index < len(items) - 1
        answer = torch.nonzero(b.mask[i]).flatten().tolist()
        assert answer == [q1 + 1, q1 + 2, q1 + 3]
        assert torch.equal(b.targets[i, answer], items[index + 1])
    assert AssociativeRecall(eval_size=3).extra_eval_sets(gen())["items12"].inputs[:, :, 6].sum(1).tolist() == [12.0] * 3


# --- priority sort ------------------------------------------------------------------------------
def test_priority_sort_outputs_highest_priorities_first():
    b = PrioritySort().sample(16, gen(3))
    assert b.inputs.shape == (16, 37, 10) and b.targets.shape == (16, 37, 8)
    for i in range(16):
        vectors, priorities = b.inputs[i, :20, :8], b.inputs[i, :20, 8].tolist()
        ranked = sorted(range(20), key=lambda j: -priorities[j])[:16]
        assert torch.equal(b.targets[i, 21:], vectors[ranked])
    assert torch.equal(b.mask[0], torch.tensor([0.0] * 21 + [1.0] * 16))
    assert torch.equal(b.inputs[:, 20, 9], torch.ones(16))


def test_priority_sort_hand_example():
    task = PrioritySort(bits=2, inputs=3, outputs=2)
    b = task.sample(1, gen(0))
    p = b.inputs[0, :3, 2]
    first, second = p.argsort(descending=True)[:2].tolist()
    assert torch.equal(b.targets[0, 4:], b.inputs[0, [first, second], :2])


# --- formal languages ---------------------------------------------------------------------------
def decode(batch, row):
    return [int(v) for v in batch.inputs[row].argmax(-1)] + [int(batch.targets[row, -1])]


@pytest.mark.parametrize("language", LANGUAGES)
def test_formal_language_streams_are_strings_of_the_language(language):
    task = FormalLanguage(language, curriculum=False, seq_len=120)
    b = task.sample(4, gen(4))
    assert b.inputs.shape == (4, 120, task.input_size) and b.targets.shape == (4, 120)
    assert torch.equal(b.targets[:, :-1], b.inputs[:, 1:].argmax(-1))  # next-symbol targets
    assert torch.equal(b.mask, torch.ones(4, 120))
    tokens, i = decode(b, 0), 0
    while True:  # parse whole strings off the stream; the last may be cut
        n, s = parse_one(language, tokens[i:])
        if s is None:
            break
        assert 2 <= n <= 19
        i += len(s)
    assert len(tokens) - i < 4 * 19 + 1


def parse_one(language, tokens):
    """Read one string at the start of tokens; (size, string) or (None, None) if cut off."""
    run = lambda k, sym: next((j for j in range(k, len(tokens)) if tokens[j] != sym), None)  # noqa: E731
    if language == "memorization":
        if 0 not in tokens:
            return None, None
        n = tokens.index(0)
        s = tokens[: 2 * n + 1]
        if len(s) < 2 * n + 1:
            return None, None
        assert s[n + 1 :] == s[:n][::-1] and 0 not in s[:n]
        return n, s
    a_end = run(0, 0)
    if a_end is None:
        return None, None
    letters = {"anbn": [1], "anbncn": [1, 2], "anbncndn": [1, 2, 3], "anb2n": [1], "anbmcnm": [1, 2]}[language]
    n = a_end
    if language == "anb2n":
        expected = [0] * n + [1] * 2 * n
    elif language == "anbmcnm":
        m = (run(a_end, 1) or len(tokens)) - a_end
        expected, n = [0] * n + [1] * m + [2] * (n + m), n + m
    else:
        expected = [0] * n + sum(([c] * n for c in letters), [])
    if len(tokens) < len(expected):
        return None, None
    assert tokens[: len(expected)] == expected
    return n, expected


def test_formal_language_worked_example_and_deterministic_mask():
    task = FormalLanguage("anbn", eval_n=(2, 3), eval_strings=2)
    b = task.extra_eval_sets(gen())["n2_3"]
    # n = 2: a a b b a a b b | a (the first symbol of a third string is the last target)
    assert decode(b, 0)[:9] == [0, 0, 1, 1, 0, 0, 1, 1, 0]
    assert b.mask[0].tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0]
    assert decode(b, 0)[8:12] == [0, 0, 1, 1]  # the row goes on into the next, unscored string
    assert b.mask[1].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1]


def test_memorization_deterministic_part_is_the_reversal():
    task = FormalLanguage("memorization", eval_n=(3, 3), eval_strings=1)
    b = task.extra_eval_sets(gen(5))["n3_3"]
    tokens = decode(b, 0)
    assert tokens[3] == 0 and tokens[4:7] == tokens[:3][::-1]
    assert b.mask[0].tolist() == [0, 0, 0, 1, 1, 1, 0]  # predict the 3 reversed symbols after '='


def test_unsolved_metric_counts_rows_with_a_wrong_deterministic_symbol():
    task = FormalLanguage("anbncn", eval_n=(2, 60))
    b = task.extra_eval_sets(gen())["n2_60"]
    perfect = torch.nn.functional.one_hot(b.targets, 3).float()
    assert task.metrics(perfect, b) == {"unsolved": 0.0}
    wrong = perfect.clone()
    row, step = 5, int(torch.nonzero(b.mask[5])[3])
    wrong[row, step] = wrong[row, step].roll(1)
    wrong[7, 0] = wrong[7, 0].roll(1)  # a non-deterministic step: not counted
    assert task.metrics(wrong, b) == {"unsolved": pytest.approx(1 / 59)}


def test_curriculum_grows_the_largest_n():
    task = FormalLanguage("anbn", seq_len=400)
    assert task.num_lessons == 18
    first = decode(task.sample(1, gen()), 0)
    assert set(parse_sizes(first)) == {2}
    task.set_lesson(3)
    sizes = parse_sizes(decode(task.sample(8, gen()), 0))
    assert max(sizes) <= 5 and min(sizes) >= 2


def parse_sizes(tokens):
    sizes, i = [], 0
    while (n := parse_one("anbn", tokens[i:])[0]) is not None:
        sizes.append(n)
        i += 2 * n
    return sizes


@pytest.mark.parametrize(
    "cls, kw, field",
    [
        (RepeatCopy, dict(length=(5, 2)), "task.length"),
        (RepeatCopy, dict(repeats=(1, 2.5)), "task.repeats"),
        (RepeatCopy, dict(eval_cases=[[10]]), "task.eval_cases"),
        (AssociativeRecall, dict(items=(1, 6)), "task.items"),
        (PrioritySort, dict(outputs=30), "task.outputs"),
        (FormalLanguage, dict(language="dyck"), "task.language"),
        (FormalLanguage, dict(score="some"), "task.score"),
        (FormalLanguage, dict(train_n=(2,)), "task.train_n"),
    ],
)
def test_bad_task_config_is_one_line_config_error(cls, kw, field):
    with pytest.raises(ConfigError, match=field) as info:
        cls(**kw)
    assert "\n" not in str(info.value)
