"""A catalogue of bad inputs: each ends in one line naming the problem, a non-zero exit, no
traceback, and no existing file modified. The CLI runs in-process (its checks run before Hydra
starts), which keeps this catalogue fast."""
import sys

import pytest

from conftest import SMOKE
from memrepro import cli

BASE = ["task=copy", "model=lstm"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding one finished run, a corrupt checkpoint and a file in the way."""
    from memrepro.config import compose
    from memrepro.run import run

    root = tmp_path_factory.mktemp("bad")
    run(compose([*BASE, *SMOKE]), root / "outputs/good", {"model": "lstm", "task": "copy"})
    corrupt = root / "outputs/corrupt"
    run(compose([*BASE, *SMOKE]), corrupt, {"model": "lstm", "task": "copy"})
    (corrupt / "checkpoint.pt").write_bytes(b"\x80\x02garbage")
    (root / "afile").write_text("not a folder")
    # IDX files whose training images stop half-way (the labels and test files are fine)
    from memrepro.data.idx import write_idx
    import torch

    trunc = root / "truncated"
    trunc.mkdir()
    for name, n in (("train", 20), ("t10k", 10)):
        write_idx(trunc / f"{name}-images-idx3-ubyte", torch.zeros(n, 28, 28, dtype=torch.uint8))
        write_idx(trunc / f"{name}-labels-idx1-ubyte", torch.zeros(n, dtype=torch.uint8))
    images = trunc / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    return root


CASES = {
    "unknown model": (["model=lstmm"], "unknown model 'lstmm'"),
    "unknown task": (["task=copi"], "unknown task 'copi'"),
    "unknown trainer": (["trainer=fast"], "unknown trainer 'fast'"),
    "unknown scale": (["scale=huge"], "unknown scale 'huge'"),
    "unknown experiment": (["experiment=nope"], "unknown experiment 'nope'"),
    "unknown model in a sweep": (["-m", "model=rnn,foo"], "unknown model 'foo'"),
    "misspelt setting": (["model.hiden_size=4"], "model.hiden_size"),
    "unparsable override": (["model.hidden_size=[1,"], "cannot parse"),
    "zero hidden size": (["model.hidden_size=0"], "model.hidden_size=0"),
    "negative hidden size": (["model.hidden_size=-5"], "model.hidden_size=-5"),
    "non-numeric hidden size": (["model.hidden_size=abc"], "model.hidden_size='abc'"),
    "zero layers": (["model.num_layers=0"], "model.num_layers=0"),
    "dropout of 1.5": (["model.dropout=1.5"], "model.dropout=1.5"),
    "ffnn zero layer": (["model=ffnn", "model.hidden_sizes=[8,0]"], "model.hidden_sizes[1]=0"),
    "unknown activation": (["model=ffnn", "model.activation=swish"], "model.activation='swish'"),
    "negative length": (["task.lengths=[-3,5]"], "task.lengths"),
    "inverted length range": (["task.lengths=[5,2]"], "task.lengths"),
    "zero bits": (["task.bits=0"], "task.bits"),
    "zero eval size": (["task.eval_size=0"], "task.eval_size=0"),
    "empty split": (["task=add", "task.splits=[1.0,0.0,0.0]"], "empty"),
    "two splits": (["task=add", "task.splits=[0.8,0.2]"], "task.splits"),
    "negative dataset": (["task=add", "task.dataset_size=-1"], "task.dataset_size=-1"),
    "zero add length": (["task=add", "task.length=0"], "task.length=0"),
    "zero batch": (["trainer.batch_size=0"], "trainer.batch_size=0"),
    "negative steps": (["trainer.steps=-1"], "trainer.steps=-1"),
    "non-numeric learning rate": (["trainer.optimizer.lr=fast"], "trainer.optimizer.lr='fast': must be a number"),
    "fractional batch": (["trainer.batch_size=1.5"], "trainer.batch_size=1.5: must be an integer"),
    "fractional steps": (["trainer.steps=10.5"], "trainer.steps=10.5"),
    "fractional eval_every": (["trainer.eval_every=2.5"], "trainer.eval_every=2.5"),
    "fractional epochs": (["task=add", "trainer.epochs=2.5"], "trainer.epochs=2.5"),
    "epochs on an online task": (["trainer.epochs=3"], "trainer.epochs has no effect here"),
    "memory forcing on copy": (["trainer=memory_forcing"], "trainer.variant=classifier"),
    "unknown launcher": (["-m", "hydra/launcher=nope"], "unknown launcher 'nope'"),
    "slurm off a cluster": (["-m", "hydra/launcher=slurm"], "no SLURM on this machine"),
    "--cfg with an unknown name": (["--cfg", "job", "model=lstmm"], "unknown model 'lstmm'"),
    "--cfg with a misspelt setting": (["--cfg", "job", "model.hiden_size=3"], "model.hiden_size"),
    "--cfg in a sweep": (["-m", "--cfg", "job"], "drop -m"),
    "negative learning rate": (["trainer.optimizer.lr=-0.1"], "trainer.optimizer"),
    "unknown optimizer": (["trainer.optimizer._target_=torch.optim.Nope"], "trainer"),
    "negative clip": (["trainer.clip_norm=-1"], "trainer.clip_norm=-1"),
    "bad nonfinite policy": (["trainer.nonfinite=ignore"], "trainer.nonfinite='ignore'"),
    "early stop without metric": (["trainer.early_stop={value:1}"], "trainer.early_stop"),
    "non-numeric seed": (["seed=abc"], "seed='abc'"),
    "negative threads": (["threads=-1"], "threads=-1"),
    "missing device": (["device=cuda:7"], "device='cuda:7'"),
    "existing run without resume": (["run_dir={root}/outputs/good"], "already holds a run"),
    "resume of nothing": (["run_dir={root}/outputs/none", "resume=true"], "holds no run"),
    "resume with other settings": (["run_dir={root}/outputs/good", "resume=true", "model.hidden_size=9"], "differ"),
    "corrupt checkpoint": (["run_dir={root}/outputs/corrupt", "resume=true"], "unreadable"),
    "output under a file": (["run_dir={root}/afile/run"], "cannot write under"),
    "missing data files": (["task=seq_mnist", "task.data_dir={root}/nodata"], "not found in"),
    "unknown dataset": (["task=seq_mnist", "task.dataset=cifar"], "task.dataset='cifar'"),
    "truncated data file": (["task=seq_mnist", "task.data_dir={root}/truncated", "run_dir={root}/outputs/trunc"], "train-images-idx3-ubyte"),
}
# cases that get as far as a new run folder (the data is read when training starts): that folder
# records the failure; every file that existed before is still untouched
NEW_RUN_FOLDER = {"truncated data file"}


def snapshot(folder):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, workdir, monkeypatch, capsys):
    args, expected = CASES[name]
    monkeypatch.chdir(workdir)
    before = snapshot(workdir)
    argv = [a.replace("{root}", str(workdir)) for a in [*BASE, *SMOKE, *args]]
    if "-m" in argv:
        argv = ["-m", *[a for a in argv if a != "-m"]]
    monkeypatch.setattr(sys, "argv", ["memrepro", *argv])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code not in (0, None)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("memrepro: error: ") and expected in err, err
    after = snapshot(workdir)
    if name in NEW_RUN_FOLDER:
        after = {p: v for p, v in after.items() if p in before}
    assert after == before


# --- the whole class: every numeric setting given a string, a fraction, a negative and a zero ---
COMBOS = [["task=copy", "model=lstm"], ["task=add", "model=smann"], ["task=extended_recall", "model=nmn"], ["task=copy", "model=dnc"]]
# values that are legitimate for a setting, and why
ALLOWED = {"model.forget_bias": {"-3"},  # a gate bias may be negative
           "model.t_max": {"-3", "2.5"}}  # a real number, read only under model.init=chrono
BUDGET_OF_OTHER_REGIME = {"add": "trainer.steps", "copy": "trainer.epochs", "extended_recall": "trainer.epochs"}


def numeric_settings(cfg, prefix):
    for key, value in cfg.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            yield from numeric_settings(value, name)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield name, value


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "+".join(a.split("=")[1] for a in c))
def test_every_numeric_setting_rejects_bad_values_in_one_line(combo):
    from omegaconf import OmegaConf

    from memrepro.config import compose
    from memrepro.errors import MemreproError

    cfg = OmegaConf.to_container(compose(combo), resolve=True)
    task = combo[0].split("=")[1]
    settings = [(k, v) for group in ("model", "task", "trainer") for k, v in numeric_settings(cfg[group], group) if k != BUDGET_OF_OTHER_REGIME[task]]
    assert len(settings) >= 10
    for key, default in settings:
        must_fail = [v for v in ["abc", "2.5" if isinstance(default, int) else "abc", "-3"] if v not in ALLOWED.get(key, ())]
        for value in [*must_fail, "0"]:
            try:
                cli.check_overrides([*combo, f"{key}={value}"])
            except MemreproError as e:
                message = str(e)
                assert "\n" not in message and key.rsplit(".", 1)[-1] in message, (key, value, message)
                continue
            assert value not in must_fail, f"{key}={value} was accepted"
