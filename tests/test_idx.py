"""IDX reader and MNIST-family loaders: hand-made bytes, generated files, real Fashion-MNIST."""
import gzip
from collections import Counter

import pytest
import torch

from memrepro.data.idx import parse_idx, read_idx, write_idx
from memrepro.data.mnist import DEBIAN_FASHION_MNIST, find_idx_file, load_images
from memrepro.errors import ConfigError, DataError


def test_parse_hand_made_int32_is_big_endian():
    # magic 00 00 0C (int32) 02 dims; dims 1 x 2; values 256 and -2, big-endian
    data = bytes([0, 0, 0x0C, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFE])
    assert parse_idx(data).tolist() == [[256, -2]]


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.float32, torch.float64])
def test_write_read_round_trip(tmp_path, suffix, dtype):
    values = (torch.arange(24) * 7 - 60).reshape(2, 3, 4).to(dtype)  # uint8 wraps negatives: fine
    if dtype.is_floating_point:
        values = values / 3
    path = tmp_path / f"x-idx3{suffix}"
    write_idx(path, values)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == dtype and torch.equal(back, values)


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"  # no .gz, but compressed
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 3, 5, 6, 7])))
    assert read_idx(path).tolist() == [5, 6, 7]


def test_truncated_file_names_file_and_sizes(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    write_idx(path, torch.zeros(4, 5, 5, dtype=torch.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: truncated: dimensions \[4, 5, 5\] need 116 bytes, the file has 106"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "a.gz"
    write_idx(path, torch.arange(200, dtype=torch.uint8))
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DataError, match="a.gz: unreadable or corrupt gzip"):
        read_idx(path)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x89PNG\r\n", "not an IDX file"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 0]), "unknown IDX dtype code 0x07"),
        (bytes([0, 0, 8, 0]), "declares 0 dimensions"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 1]), "truncated header"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 1, 9, 9]), "trailing bytes"),
    ],
    ids=["magic", "dtype", "ndim", "header", "trailing"],
)
def test_corrupt_headers(tmp_path, data, message):
    path = tmp_path / "bad"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_missing_file_says_where_and_how(tmp_path):
    with pytest.raises(DataError) as err:
        load_images("mnist", tmp_path)
    text = str(err.value)
    assert "train-images-idx3-ubyte" in text and str(tmp_path / "MNIST" / "raw") in text
    assert "task.download=true" in text and "task.dataset=digits" in text and "\n" not in text
    with pytest.raises(ConfigError, match="task.dataset='emnist'"):
        load_images("emnist", tmp_path)


def test_finds_torchvision_layout_and_prefers_gzip(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"):
        write_idx(raw / name, torch.zeros(3, dtype=torch.uint8))
    assert find_idx_file("fashion_mnist", "test_labels", tmp_path) == raw / "t10k-labels-idx1-ubyte.gz"


def test_wrong_shape_is_a_data_error(tmp_path):
    for name, shape in [("train-images-idx3-ubyte", (2, 28, 28)), ("train-labels-idx1-ubyte", (2,)),
                        ("t10k-images-idx3-ubyte", (2, 28, 28)), ("t10k-labels-idx1-ubyte", (2,))]:
        write_idx(tmp_path / name, torch.zeros(shape, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"expected uint8 \[60000, 28, 28\] for mnist"):
        load_images("mnist", tmp_path)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="real data: apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_from_debian(tmp_path):
    data = load_images("fashion_mnist", tmp_path)  # nothing in tmp_path: found in the Debian folder
    assert data["train_images"].shape == (60000, 28, 28) and data["test_images"].shape == (10000, 28, 28)
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    assert Counter(data["train_labels"].tolist()) == {c: 6000 for c in range(10)}
    assert Counter(data["test_labels"].tolist()) == {c: 1000 for c in range(10)}
    # The published mean pixel intensity of the training set is 0.2860 (of 255).
    assert data["train_images"].float().mean().item() / 255 == pytest.approx(0.2860, abs=5e-4)


def test_digits_dataset_shapes():
    pytest.importorskip("sklearn")
    data = load_images("digits")
    assert data["train_images"].shape == (1437, 8, 8) and data["test_images"].shape == (360, 8, 8)
    assert data["train_images"].dtype == torch.uint8 and data["train_images"].max() == 255
    assert set(data["test_labels"].tolist()) == set(range(10))
