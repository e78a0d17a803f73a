"""The reason a row differs comes from its runs' own data, never a default text."""
import pandas as pd

from memrepro.results.evidence import reason
from memrepro.results.tables import compare


def runs_of(**final):
    n = len(next(iter(final.values())))
    return pd.DataFrame({"run_dir": [f"r{i}" for i in range(n)], "status": ["completed"] * n, "error": [""] * n,
                         "output_kind": ["classification"] * n, "output_size": [2] * n, **final})


def curve(values, column="val_error", runs=("r0",)):
    return pd.DataFrame([{"run_dir": r, "step": 100 * (i + 1), column: v} for r in runs for i, v in enumerate(values)])


ROW = {"label": "x", "metric": "test_error"}


def test_a_classifier_at_chance_on_a_flat_curve():
    why = reason(ROW, runs_of(test_error=[0.5, 0.49]), curve([0.5, 0.5, 0.49, 0.5]), 0.495, 0.1, 0.1)
    assert why.startswith("ours higher; at chance (0.495; chance 0.5)") and "plateaued (val_error" in why


def test_a_curve_still_falling_names_the_budget():
    why = reason(ROW, runs_of(test_error=[0.3]), curve([0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1]), 0.3, 0.1, 0.25)
    # the last quarter (3 evaluations): 0.2 -> 0.1
    assert "still improving at the end (val_error -50% over the last 3 evaluations at 0.25× the paper's updates)" in why
    assert "chance" not in why


def test_a_curve_turning_up_and_a_loss_at_the_memoryless_baseline():
    runs = runs_of(test_loss=[0.16, 0.15], test_baseline=[0.1475, 0.1475]).assign(output_kind="classification", output_size=9)
    why = reason({"label": "c", "metric": "test_loss"}, runs, curve([0.3, 0.1, 0.12, 0.15], "val_loss"), 0.155, 0.09, None)
    assert "not below the task's baseline (0.155 vs test_baseline 0.147)" in why
    assert "getting worse at the end (val_loss +50%" in why


def test_a_published_value_below_the_tasks_bayes_error():
    runs = runs_of(test_error=[0.42], test_bayes_error=[0.407])
    why = reason(ROW, runs, curve([0.45, 0.43, 0.42]), 0.42, 0.136, 1.0)
    assert "the paper's 0.136 is below the task's Bayes error 0.407" in why and "at the task's Bayes error" not in why


def test_a_floor_our_runs_beat_is_not_theirs():
    # sorted classification logs the memory-less Bayes error: an RNN with memory goes below it
    runs = runs_of(test_error=[0.0008], test_bayes_error=[0.0459])
    why = reason(ROW, runs, curve([0.002, 0.001, 0.0008]), 0.0008, 0.018, 1.0)
    assert "Bayes" not in why


def test_diverged_seeds_and_the_rows_note():
    runs = runs_of(test_error=[0.3, float("nan")]).assign(status=["completed", "failed"], error=["", "non-finite loss at step 7"])
    why = reason({**ROW, "note": "the paper trains by gradient descent"}, runs, pd.DataFrame(), 0.3, 0.1, None)
    assert why == "ours higher; 1 of 2 seeds diverged; the paper trains by gradient descent"


def test_a_forcing_row_whose_term_never_acted_is_not_a_match():
    paper = {"rows": [{"label": "PF", "model": "dnc", "task": "mnist_generation", "metric": "test_nll", "value": 46.3}], "tolerance": {"abs": 5.0}}
    runs = pd.DataFrame({"run_dir": ["a", "b"], "model": "dnc", "task": "mnist_generation", "overrides": [[], []], "status": "completed",
                         "error": "", "test_nll": [46.0, 46.5], "forcing_engaged": [0.0, 0.0]})
    table = compare(runs, paper)
    assert table["verdict"].tolist() == ["✗ not reproduced"] and "forcing never engaged" in table["likely reason"].iloc[0]
    table = compare(runs.assign(forcing_engaged=[0.2, 0.0]), paper)
    assert table["verdict"].tolist() == ["✓ matches"]


def test_seeds_that_learnt_and_lost_it_on_a_rows_stand_in_curve():
    # the metric (a share counted in training) has no curve; the row names the evaluated one
    runs = runs_of(train_correct_fraction=[0.0, 0.1, 0.0]).assign(output_kind="bits", output_size=6)
    curves = pd.concat([curve([20.0, 35.0, 36.0, 36.0], "eval_bit_errors", ["r0"]),
                        curve([20.0, 0.2, 30.0, 34.0], "eval_bit_errors", ["r1"]),
                        curve([36.0, 35.0, 36.0, 36.0], "eval_bit_errors", ["r2"])])
    row = {"label": "MF", "metric": "train_correct_fraction", "curve": "eval_bit_errors"}
    why = reason(row, runs, curves, 0.033, 0.5, 1.0)
    # r0: best 20, last 36; r1: best 0.2, last 34; r2 never learnt (best 35 of last 36)
    assert "worse at the end than at its best in 2 of 3 seeds (eval_bit_errors best 10.1, last 35, mean of those seeds)" in why
    assert "eval_bit_errors" not in reason({**row, "curve": None}, runs, curves, 0.033, 0.5, 1.0)
