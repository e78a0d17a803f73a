"""The MNIST family of image datasets as uint8 tensors: MNIST, Fashion-MNIST and scikit-learn's
8×8 digits.

* ``mnist`` / ``fashion_mnist`` are read from the four standard IDX files (raw or gzip) found in
  ``data_dir`` — in the plain layout (``data_dir/train-images-idx3-ubyte.gz``), in a subfolder
  named after the dataset, or in torchvision's layout (``data_dir/MNIST/raw/...``), so existing
  downloads work without torchvision. Fashion-MNIST is also found where Debian's
  ``dataset-fashion-mnist`` package installs it. ``download=True`` fetches missing files.
* ``digits`` is scikit-learn's bundled copy of the UCI optical digits test set (1,797 images,
  8×8, grey levels 0–16), which needs no download at all; it has no official train/test split, so
  we fix one (the last 360 images are the test set).

`load_images` returns ``{"train_images": [N, H, W] uint8, "train_labels": [N] int64,
"test_images", "test_labels"}`` with pixel values scaled to 0–255 for every dataset.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import torch
from torch import Tensor

from memrepro.data.idx import read_idx
from memrepro.errors import ConfigError, DataError

DATASETS = ("mnist", "fashion_mnist", "digits")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # package dataset-fashion-mnist

FILES = {  # split -> base name of the IDX file; the .gz or the extracted file both work
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SIZES = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "digits": (1437, 360)}
IMAGE_SHAPES = {"mnist": (28, 28), "fashion_mnist": (28, 28), "digits": (8, 8)}
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}


def check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ConfigError(f"task.dataset={dataset!r}: choose one of {', '.join(DATASETS)}")


def search_dirs(dataset: str, data_dir: str | Path) -> list[Path]:
    """Folders searched, in order, for the IDX files of ``dataset``."""
    root = Path(data_dir).expanduser()
    dirs = [root, root / dataset, root / dataset.replace("_", "-"), root / TORCHVISION_FOLDERS[dataset] / "raw"]
    if dataset == "fashion_mnist":
        dirs.append(DEBIAN_FASHION_MNIST)
    return list(dict.fromkeys(dirs))


def find_idx_file(dataset: str, split: str, data_dir: str | Path) -> Path:
    """The first existing ``<name>.gz`` or ``<name>`` in the search folders, else a DataError that
    says where we looked and how to get the data."""
    name = FILES[split]
    dirs = search_dirs(dataset, data_dir)
    for folder in dirs:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    debian = " or `apt-get install dataset-fashion-mnist`" if dataset == "fashion_mnist" else ""
    raise DataError(
        f"{name}[.gz] for task.dataset={dataset} not found in {', '.join(str(d) for d in dirs)}: "
        f"set task.data_dir, pass task.download=true{debian}, or use task.dataset=digits (bundled with scikit-learn)"
    )


def download(dataset: str, data_dir: str | Path) -> None:
    """Fetch the missing IDX files of ``dataset`` into ``data_dir/<dataset>/`` (atomic per file)."""
    target = Path(data_dir).expanduser() / dataset
    target.mkdir(parents=True, exist_ok=True)
    for split, name in FILES.items():
        try:
            find_idx_file(dataset, split, data_dir)
            continue
        except DataError:
            pass
        url = MIRRORS[dataset] + name + ".gz"
        with tempfile.NamedTemporaryFile(dir=target, delete=False) as tmp:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    shutil.copyfileobj(response, tmp)
            except OSError as err:
                os.unlink(tmp.name)
                raise DataError(f"download of {url} failed ({err}): fetch the file by hand into {target}") from None
        os.replace(tmp.name, target / f"{name}.gz")


def load_images(dataset: str, data_dir: str | Path = "data", download_missing: bool = False) -> dict[str, Tensor]:
    """Train and test images [N, H, W] (uint8, 0–255) and labels [N] (int64) of ``dataset``."""
    check_dataset(dataset)
    if dataset == "digits":
        return load_digits()
    if download_missing:
        download(dataset, data_dir)
    out = {}
    for split in FILES:
        path = find_idx_file(dataset, split, data_dir)
        values = read_idx(path)
        count = SIZES[dataset][0 if split.startswith("train") else 1]
        shape = (count, *IMAGE_SHAPES[dataset]) if split.endswith("images") else (count,)
        if tuple(values.shape) != shape or values.dtype != torch.uint8:
            raise DataError(f"{path}: holds {values.dtype} {list(values.shape)}, expected uint8 {list(shape)} for {dataset}")
        out[split] = values if split.endswith("images") else values.long()
    return out


def load_digits() -> dict[str, Tensor]:
    """scikit-learn's 8×8 digits, grey levels rescaled from 0–16 to 0–255; fixed split."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DataError("task.dataset=digits needs scikit-learn: pip install scikit-learn") from None
    bunch = sklearn_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).mul(255 / 16).round().to(torch.uint8)
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    n_train = SIZES["digits"][0]
    return {
        "train_images": images[:n_train],
        "train_labels": labels[:n_train],
        "test_images": images[n_train:],
        "test_labels": labels[n_train:],
    }
