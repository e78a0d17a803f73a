"""Sequential / permuted / generative MNIST tasks on the offline 8×8 digits, sampling and PNG grid."""
from collections import Counter

import pytest
import torch

from memrepro.models.base import SequenceModel
from memrepro.tasks.mnist import MNISTGeneration, PermutedMNIST, SequentialMNIST, sample_images, save_image_grid

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits_splits():
    task = SequentialMNIST(dataset="digits", val_size=5000)
    return task, task.make_splits(torch.Generator().manual_seed(0))


def test_seq_mnist_splits_and_scoring(digits_splits):
    task, splits = digits_splits
    # val_size is capped at a tenth of the 1437 training images; the rest trains; 360 test images.
    assert {k: len(v) for k, v in splits.items()} == {"train": 1294, "val": 143, "test": 360}
    assert task.dataset_size == 1797 and task.length == 64
    test = splits["test"]
    images = task.images()
    assert test.inputs.shape == (360, 64, 1)
    assert torch.equal(test.inputs[:, :, 0], images["test_images"].flatten(1).float() / 255)
    assert test.mask.sum(1).tolist() == [1.0] * 360 and test.mask[:, -1].eq(1).all()
    assert torch.equal(test.targets[:, -1], images["test_labels"])


def test_train_and_validation_partition_the_training_images(digits_splits):
    task, splits = digits_splits
    rows = lambda pixels: Counter(tuple(x) for x in pixels.tolist())
    split_rows = rows(splits["train"].inputs[:, :, 0]) + rows(splits["val"].inputs[:, :, 0])
    assert split_rows == rows(task.images()["train_images"].flatten(1).float() / 255)


def test_sizes_scale_down():
    task = SequentialMNIST(dataset="digits", train_size=100, val_size=20, test_size=30)
    splits = task.make_splits(torch.Generator().manual_seed(1))
    assert [len(splits[k]) for k in ("train", "val", "test")] == [100, 20, 30]


def test_permutation_is_fixed_by_its_seed():
    a, b, c = (PermutedMNIST(dataset="digits", permutation_seed=s) for s in (7, 7, 8))
    assert torch.equal(a.permutation, b.permutation) and not torch.equal(a.permutation, c.permutation)
    assert torch.equal(a.permutation.sort().values, torch.arange(64))
    plain = SequentialMNIST(dataset="digits")
    images = plain.images()["test_images"][:5]
    assert torch.equal(a.to_batch(images, torch.zeros(5, dtype=torch.long)).inputs,
                       plain.to_batch(images, torch.zeros(5, dtype=torch.long)).inputs[:, a.permutation])


def test_generation_is_next_pixel_prediction():
    task = MNISTGeneration(dataset="digits", train_size=50, val_size=10, test_size=20)
    batch = task.make_splits(torch.Generator().manual_seed(0))["test"]
    assert task.output_kind == "pixels" and batch.targets.shape == (20, 64, 1)
    assert set(batch.targets.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1]) and batch.inputs[:, 0].eq(0).all()
    expected = (task.images()["test_images"][:20].flatten(1).float() / 255 > 0.5).float()
    assert torch.equal(batch.targets[:, :, 0], expected)


class Alternator(SequenceModel):
    """Logit +50 after a 0, -50 after a 1: free-running it must emit 1, 0, 1, 0, ..."""

    def __init__(self):
        super().__init__(1, 1)
        self.scale = torch.nn.Parameter(torch.tensor(100.0))

    def initial_state(self, batch_size):
        return ()

    def step(self, x_t, state):
        return self.scale * (0.5 - x_t), state


def test_sampling_feeds_samples_back():
    pixels = sample_images(Alternator(), num=3, length=6, generator=torch.Generator().manual_seed(0))
    assert pixels.tolist() == [[1.0, 0.0, 1.0, 0.0, 1.0, 0.0]] * 3


def test_png_grid_layout(tmp_path):
    import matplotlib.image

    images = torch.zeros(5, 2, 3)
    images[4] = 1.0
    path = save_image_grid(images.flatten(1), (2, 3), tmp_path / "samples.png", columns=3)
    grid = torch.as_tensor(matplotlib.image.imread(path))[..., 0]
    # 2 rows x 3 columns of 2x3 tiles with 1-pixel white gaps: (2*3+1) x (3*4+1)
    assert grid.shape == (7, 13)
    assert grid[1:3, 1:4].max() == 0 and grid[4:6, 5:8].min() == 1 and grid[0].min() == 1


@pytest.mark.parametrize("name, cls", [("seq_mnist", SequentialMNIST), ("pmnist", PermutedMNIST), ("mnist_generation", MNISTGeneration)])
def test_config_composes_and_builds_at_smoke_scale(name, cls):
    from hydra.utils import instantiate

    from memrepro.config import compose

    task = instantiate(compose(["scale=smoke", f"task={name}", "task.dataset=digits"]).task)
    assert type(task) is cls and not task.online
    # smoke scale: 1% of 55,000 / 5,000 / 10,000 images
    assert (task.n_train, task.n_val, task.n_test) == (550, 50, 100)
    assert len(task.make_splits(torch.Generator().manual_seed(0))["test"]) == 100
