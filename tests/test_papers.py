"""The papers' published numbers (memrepro/papers/*.yaml) and the sweeps that reproduce them
(conf/experiment/*.yaml): schema, internal consistency, and that every row the paper reports is
produced by exactly one cell of its sweep."""
import itertools
import math
import re

import pandas as pd
import pytest
import yaml

from memrepro.config import CONF_DIR, compose, options
from memrepro.results import tables
from memrepro.run import build

PAPERS = sorted(tables.PAPERS_DIR.glob("*.yaml"))
EXPERIMENTS = {p.stem: p for p in sorted((CONF_DIR / "experiment").glob("*.yaml"))}

# The models and tasks the project provides (the issues' names), landed or about to land.
MODELS = {"ffnn", "rnn", "lstm", "gru", "nmn", "ffnn_gaussian", "clstm", "nc", "smann", "janet", "skip_lstm", "skip_gru", "ntm", "dnc", "stack_rnn"}
TASKS = {"copy", "copy_memory", "add", "memory_recall", "classification_recall", "extended_recall", "sorted_classification", "frequency", "sinusoid",
         "repeat_copy", "associative_recall", "priority_sort", "formal_language", "seq_mnist", "pmnist", "mnist_generation", "graph_traversal", "shortest_path"}
TRAINERS = {"default", "professor_forcing", "memory_forcing"}
REQUIRED = {"id", "title", "paper", "source", "experiment", "tolerance", "paper_settings", "rows", "claims", "out_of_scope"}
ROW_KEYS = {"label", "model", "task", "metric", "value", "std", "unit", "source", "approx"}
SEED = "seed"


def load(path):
    return yaml.safe_load(path.read_text())


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def ran(row: dict) -> bool:
    return row.get("model") is not None


# --- the published numbers -------------------------------------------------------------------
@pytest.mark.parametrize("path", PAPERS, ids=lambda p: p.stem)
def test_paper_yaml_follows_the_schema(path):
    paper = load(path)
    assert REQUIRED <= set(paper), REQUIRED - set(paper)
    assert path.stem == paper["id"].replace("-", "_") == paper["experiment"]
    tol = paper["tolerance"]
    assert set(tol) <= {"abs", "rel"} and all(is_number(v) and v >= 0 for v in tol.values()) and any(tol.values())
    labels = [r["label"] for r in paper["rows"]]
    assert len(labels) == len(set(labels)), "row labels must be unique: claims refer to them"
    for row in paper["rows"]:
        assert ROW_KEYS <= set(row), (row["label"], ROW_KEYS - set(row))
        assert row["value"] is None or is_number(row["value"]), row["label"]
        assert row["std"] is None or (is_number(row["std"]) and row["std"] >= 0), row["label"]
        assert isinstance(row["approx"], bool) and row["source"] and row["unit"] and row["metric"]
        if ran(row):
            assert row["model"] in MODELS and row["task"] in TASKS, row["label"]
            assert isinstance(row.get("variant", {}), dict) and isinstance(row.get("task_variant", {}), dict)
        else:
            assert row["value"] is not None, f"{row['label']}: a literature row without a number says nothing"
            assert row["task"] is None
    for item in paper["out_of_scope"]:
        assert item["label"] and item["reason"]


@pytest.mark.parametrize("path", PAPERS, ids=lambda p: p.stem)
def test_claims_are_well_formed_and_hold_on_the_papers_own_numbers(path):
    paper = load(path)
    rows = {r["label"]: r for r in paper["rows"]}
    for claim in paper["claims"]:
        assert claim["op"] in (*tables.OPS, "≈"), claim
        left, right = rows[claim["left"]["label"]], rows[claim["right"]["label"]]
        assert ran(left) and ran(right), f"{claim['text']}: a claim is checked on our numbers, so both rows must be run"
        a, b = left["value"], right["value"]
        if a is None or b is None:
            continue  # the paper shows it in a figure only
        holds = abs(a - b) <= max(0.01, tables.APPROX_REL * abs(b)) if claim["op"] == "≈" else tables.OPS[claim["op"]](a, b)
        assert holds, f"{paper['id']}: '{claim['text']}' does not hold on the paper's numbers {a} {claim['op']} {b}"


ACCURACY = re.compile(r"accuracy (\d+(?:\.\d+)?)(?: ± (\d+(?:\.\d+)?))? %")
PERCENT = re.compile(r"^slide table: (\d+(?:\.\d+)?)%$")
QUOTE_PERCENTAGES = {"smann_1", "smann_2", "smann_3", "smann_4", "slides_stack_rnn"}


@pytest.mark.parametrize("path", PAPERS, ids=lambda p: p.stem)
def test_percentages_are_converted_to_our_units(path):
    """Our classification metrics are error rates (lower is better): a row quoting 'accuracy 97.4
    ± 0.49 %' must hold 0.026 ± 0.0049; a share of n solved quoted as '23.3%' must hold the share
    unsolved, 0.767."""
    checked = 0
    for row in load(path)["rows"]:
        if m := ACCURACY.search(row["source"]):
            assert row["value"] == pytest.approx(1 - float(m[1]) / 100, abs=1e-9), row["label"]
            if m[2]:
                assert row["std"] == pytest.approx(float(m[2]) / 100, abs=1e-9), row["label"]
            checked += 1
        elif m := PERCENT.match(row["source"]):
            assert row["value"] == pytest.approx(1 - float(m[1]) / 100, abs=1e-9), row["label"]
            checked += 1
    assert (checked > 0) == (path.stem in QUOTE_PERCENTAGES), "the patterns must match the tables that quote percentages"


def test_every_paper_has_an_experiment_and_every_experiment_a_paper():
    assert {p.stem for p in PAPERS} == set(EXPERIMENTS)
    for path in PAPERS:
        assert load(EXPERIMENTS[path.stem])["paper"] == load(path)["id"]


def test_the_report_finds_every_table():
    assert tables.paper_ids() == sorted(load(p)["id"] for p in PAPERS)
    for path in PAPERS:
        assert tables.load_paper(load(path)["id"])["title"]


# --- the sweeps --------------------------------------------------------------------------------
def sweep_params(name: str) -> dict[str, list[str]]:
    params = load(EXPERIMENTS[name])["hydra"]["sweeper"]["params"]
    return {k: [v.strip() for v in str(vals).split(",")] for k, vals in params.items()}


def group_choices(config: dict) -> dict[str, str]:
    """The groups a config file's defaults list overrides: {'model': 'nmn', ...}."""
    out = {}
    for entry in config.get("defaults", []):
        if isinstance(entry, dict):
            for key, value in entry.items():
                if key.startswith("override /"):
                    out[key.removeprefix("override /")] = value
    return out


def cells(name: str) -> list[dict]:
    """Every cell of an experiment's grid (seeds aside): its overrides and the model, task and
    trainer it selects, read from the experiment file and the cell files it sweeps over."""
    params = sweep_params(name)
    base = {"model": "lstm", "task": "copy", "trainer": "default", **group_choices(load(EXPERIMENTS[name]))}
    keys = [k for k in params if k != SEED]
    out = []
    for values in itertools.product(*(params[k] for k in keys)):
        choice, overrides = dict(base), []
        for key, value in zip(keys, values):
            overrides.append(f"{key}={value}")
            group = key.lstrip("+")
            if group in ("model", "task", "trainer"):
                choice[group] = value
            elif "." not in group:  # a cell file: conf/<group>/<value>.yaml
                choice.update(group_choices(load(CONF_DIR / group / f"{value}.yaml")))
        out.append({"overrides": overrides, **choice})
    return out


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_file_is_a_paper_sweep(name):
    text = EXPERIMENTS[name].read_text()
    config = yaml.safe_load(text)
    assert text.startswith("# @package _global_\n")
    assert f"make table-{name.replace('_', '-')} SCALE=quick" in text and "Wall time" in text, "header: the run command and the expected wall time"
    hydra = config["hydra"]
    assert set(hydra) == {"sweeper"}, "no launcher (ignored inside a swept experiment) and no sweep dir (the Makefile chooses it)"
    assert sweep_params(name)[SEED] == ["0", "1", "2"]
    for cell in cells(name):
        assert cell["model"] in MODELS and cell["task"] in TASKS and cell["trainer"] in TRAINERS, cell


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_row_is_one_cell_of_the_sweep_and_every_cell_a_row(name):
    """Feed the grid as finished runs to the report's own row matching: each row the paper
    reports must find exactly its three seeds, and no cell may be run for nothing."""
    paper = load(tables.PAPERS_DIR / f"{name}.yaml")
    grid = cells(name)
    runs = pd.DataFrame([{**c, "status": "completed", "overrides": [*c["overrides"], f"seed={s}"], "seed": s, "cell": i}
                         for i, c in enumerate(grid) for s in range(3)])
    used = set()
    for row in filter(ran, paper["rows"]):
        runs[row["metric"]] = runs["cell"].astype(float)
        found = tables.row_values(runs, row)
        assert len(found) == 3 and found.nunique() == 1, f"{row['label']}: matches {len(found)} runs of cells {sorted(set(found))}"
        used.add(int(found.iloc[0]))
    assert used == set(range(len(grid))), f"cells no row reports: {[grid[i]['overrides'] for i in set(range(len(grid))) - used]}"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_cell_composes_and_builds_at_smoke_scale(name):
    grid = cells(name)
    missing = sorted({f"conf/{g}/{c[g]}.yaml" for c in grid for g in ("model", "task", "trainer") if c[g] not in options(g)})
    if missing:
        pytest.skip(f"not on this branch yet (their issues' branches are unmerged): {', '.join(missing)}")
    for cell in grid:
        cfg = compose([f"experiment={name}", "scale=smoke", *cell["overrides"]])
        assert cfg.paper == name.replace("_", "-")
        task, model, trainer = build(cfg)
        assert model.num_parameters() > 0 and task.input_size > 0, cell["overrides"]


# Offline stand-ins for the tables' MNIST data (the 8x8 digits ship with scikit-learn).
OFFLINE = {"mf_1": ["task.dataset=digits"], "smann_1": ["mnist_dataset=digits"], "smann_2": ["mnist_dataset=digits"], "smann_4": ["mnist_dataset=digits"]}


@pytest.mark.parametrize("path", PAPERS, ids=lambda p: p.stem)
def test_every_metric_a_table_reads_is_one_its_runs_write(path, tmp_path):
    """One update of a cell per metric the table reads, at smoke scale: the summary must hold the
    metric, or the row would stay 'not run' however long the sweep trains."""
    from memrepro.run import run

    paper = load(path)
    cells = {}
    for row in filter(ran, paper["rows"]):
        wanted = {**(row.get("variant") or {}), **(row.get("task_variant") or {})}
        cells.setdefault(row["metric"], [f"+{k}={v}" if k.startswith("experiment/") else f"{k}={tables._override_str(v)}" for k, v in wanted.items()])
    for metric, overrides in cells.items():
        cfg = compose([f"experiment={path.stem}", *overrides, *OFFLINE.get(path.stem, []), "scale=smoke", "trainer.steps=1", "trainer.epochs=1",
                       "plots=false", "trainer.progress=false", "threads=1", "compile=false"])
        summary = run(cfg, tmp_path / metric)
        assert metric in {**summary["final"], "parameters": None}, (metric, sorted(summary["final"]))
