"""Pixel-by-pixel image tasks on the MNIST family.

* `SequentialMNIST` (``task=seq_mnist``): the image is read one pixel per step in raster order
  (784 steps for 28×28, 64 for the 8×8 digits), grey levels scaled to [0, 1]; the class is
  predicted at the last step only. SMANN §4 (after Le et al. 2015), 60k training / 10k test
  images, a validation split taken from the training images.
* `PermutedMNIST` (``task=pmnist``): the same with the pixels shuffled by one fixed permutation
  drawn from ``permutation_seed`` (SMANN §4, after Arjovsky et al. 2016), which stretches the
  temporal dependencies.
* `MNISTGeneration` (``task=mnist_generation``): binarized images (threshold 0.5), next-pixel
  prediction with teacher forcing: the input at step t is pixel t-1 (0 at t = 0), the target is
  pixel t. The metric ``nll`` is the negative log-likelihood in nats per image — the Memory
  Forcing paper's Table 1 metric (§4.1). `sample_images` draws images free-running through
  ``model.step``; `save_image_grid` writes them as a PNG.

Example (8×8 digits, the 4 first pixels of a "0"): pixels 0, 0, 0.31, 0.81, ... are inputs
[[0], [0], [0.31], [0.81], ...]; seq_mnist scores only the last step, whose target is 0.

These are fixed-dataset tasks: `make_splits` takes ``val_size`` random training images for
validation (seeded by the run's generator), ``train_size`` others for training, and the first
``test_size`` test images. Sizes are upper bounds (the 8×8 digits have 1,437 training and 360
test images; validation takes at most a tenth of the training images); null means all.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from memrepro.data.mnist import FILES, IMAGE_SHAPES, SIZES, check_dataset, find_idx_file, load_images
from memrepro.tasks.base import Batch, Task, check_positive


class _ImageSequenceTask(Task):
    """Loads the images once (lazily, so configs compose without the data) and splits them."""

    def __init__(
        self,
        dataset: str = "mnist",
        data_dir: str = "data",
        download: bool = False,
        train_size: int | None = None,
        val_size: int = 5000,
        test_size: int | None = None,
        eval_size: int = 256,
    ):
        check_dataset(dataset)
        n_train_file, n_test_file = SIZES[dataset]
        check_positive("task.val_size", val_size)
        for name, value in (("task.train_size", train_size), ("task.test_size", test_size)):
            if value is not None:
                check_positive(name, value)
        self.n_val = min(val_size, n_train_file // 10)
        self.n_train = min(train_size or n_train_file, n_train_file - self.n_val)
        self.n_test = min(test_size or n_test_file, n_test_file)
        total = self.n_train + self.n_val + self.n_test
        super().__init__(dataset_size=total, splits=(self.n_train / total, self.n_val / total, self.n_test / total), eval_size=eval_size)
        self.dataset, self.data_dir, self.download = dataset, data_dir, download
        self.image_shape = IMAGE_SHAPES[dataset]
        self.length = self.image_shape[0] * self.image_shape[1]
        self._images: dict[str, Tensor] | None = None

    def check_data(self) -> None:
        if self.dataset != "digits" and not self.download:
            for split in FILES:
                find_idx_file(self.dataset, split, self.data_dir)

    def images(self) -> dict[str, Tensor]:
        if self._images is None:
            self._images = load_images(self.dataset, self.data_dir, self.download)
        return self._images

    def pixels(self, images: Tensor) -> Tensor:
        """uint8 [N, H, W] -> float [N, T] in [0, 1], in presentation order."""
        return images.flatten(1).float().div_(255)

    def to_batch(self, images: Tensor, labels: Tensor) -> Batch:
        raise NotImplementedError  # abstract

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """Random training images (the online regime; runs normally use `make_splits`)."""
        data = self.images()
        idx = torch.randint(len(data["train_labels"]), (batch_size,), generator=generator)
        return self.to_batch(data["train_images"][idx], data["train_labels"][idx])

    def make_splits(self, generator: torch.Generator) -> dict[str, Batch]:
        data = self.images()
        order = torch.randperm(len(data["train_labels"]), generator=generator)
        val, train = order[: self.n_val], order[self.n_val : self.n_val + self.n_train]
        return {
            "train": self.to_batch(data["train_images"][train], data["train_labels"][train]),
            "val": self.to_batch(data["train_images"][val], data["train_labels"][val]),
            "test": self.to_batch(data["test_images"][: self.n_test], data["test_labels"][: self.n_test]),
        }

    def describe(self) -> str:
        return f"{super().describe()} {self.dataset} T={self.length}"


class SequentialMNIST(_ImageSequenceTask):
    """Classify an image read one pixel per step (SMANN §4; Le et al. 2015)."""

    input_size = 1
    output_size = 10
    output_kind = "classes"
    num_classes = 10

    def to_batch(self, images: Tensor, labels: Tensor) -> Batch:
        n, T = len(labels), self.length
        inputs = self.pixels(images).unsqueeze(-1)
        # Expanded views: the label sits at every step but only the last one is scored.
        targets = labels[:, None].expand(n, T)
        last = torch.zeros(T)
        last[-1] = 1
        return Batch(inputs, targets, last.expand(n, T))


class PermutedMNIST(SequentialMNIST):
    """Sequential MNIST with the pixels in one fixed random order (SMANN §4; Arjovsky et al. 2016)."""

    def __init__(self, permutation_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.permutation = torch.randperm(self.length, generator=torch.Generator().manual_seed(permutation_seed))

    def pixels(self, images: Tensor) -> Tensor:
        return super().pixels(images)[:, self.permutation]


class MNISTGeneration(_ImageSequenceTask):
    """Next-pixel prediction on binarized images; ``nll`` = nats per image (Memory Forcing §4.1)."""

    input_size = 1
    output_size = 1
    output_kind = "pixels"

    def pixels(self, images: Tensor) -> Tensor:
        return (super().pixels(images) > 0.5).float()

    def to_batch(self, images: Tensor, labels: Tensor) -> Batch:
        pixels = self.pixels(images)
        shifted = torch.cat([pixels.new_zeros(len(pixels), 1), pixels], dim=1).unsqueeze(-1)
        # inputs and targets are two views of one tensor: pixel t-1 in, pixel t out.
        return Batch(shifted[:, :-1], shifted[:, 1:], torch.ones(1, 1).expand(len(pixels), self.length))


@torch.no_grad()
def sample_images(model, num: int, length: int, generator: torch.Generator | None = None) -> Tensor:
    """Free-running generation: feed each sampled pixel back as the next input.

    Returns [num, length] binary pixels. ``generator`` must live on the model's device."""
    state = model.initial_state(num)
    x = torch.zeros(num, 1, device=model.device)
    pixels = torch.empty(num, length, device=model.device)
    for t in range(length):
        logits, state = model.step(x, state)
        x = torch.bernoulli(torch.sigmoid(logits), generator=generator)
        pixels[:, t] = x[:, 0]
    return pixels


def save_image_grid(pixels: Tensor, image_shape: tuple[int, int], path: str | Path, columns: int = 8) -> Path:
    """Write images ([N, H*W] or [N, H, W], values in [0, 1]) as one PNG grid, 1-pixel gaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    H, W = image_shape
    images = pixels.detach().float().cpu().reshape(-1, H, W)
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    blank = torch.ones(rows * columns - len(images), H, W)
    tiles = F.pad(torch.cat([images, blank]), (1, 0, 1, 0), value=1.0)  # white gap left and above
    grid = tiles.reshape(rows, columns, H + 1, W + 1).permute(0, 2, 1, 3).reshape(rows * (H + 1), columns * (W + 1))
    grid = F.pad(grid, (0, 1, 0, 1), value=1.0)
    path = Path(path)
    plt.imsave(path, grid.numpy(), cmap="gray", vmin=0, vmax=1)
    return path
