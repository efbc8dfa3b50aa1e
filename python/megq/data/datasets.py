"""Built-in datasets: digits (embedded), Fashion-MNIST (Debian package), ImageNet-style folders (Pillow)."""
from __future__ import annotations

import gzip
import os
from typing import List, Optional, Tuple

import numpy as np

from .dataset import ArrayDataset, Dataset

__all__ = ["load_digits", "digits", "FashionMNIST", "ImageFolder", "FASHION_MNIST_DIR"]

_HERE = os.path.dirname(os.path.abspath(__file__))
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def load_digits() -> Tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits: images (1797, 8, 8) uint8 in 0..16 and labels (1797,) int32 (embedded; see
    ``digits-LICENSE.txt``)."""
    with gzip.open(os.path.join(_HERE, "digits.csv.gz"), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int32)
    return table[:, :64].reshape(-1, 8, 8).astype(np.uint8), table[:, 64].astype(np.int32)


def digits(train: bool = True, test_size: int = 360, seed: int = 0) -> ArrayDataset:
    """A reproducible train/test split of the digits as (N, 1, 8, 8) images (values 0..16).

    The same ``seed`` and ``test_size`` give disjoint train (1,437 by default) and test (360) sets.
    """
    images, labels = load_digits()
    if not 0 < test_size < len(labels):
        raise ValueError(f"digits: test_size must be in (0, {len(labels)}), got {test_size}")
    order = np.random.default_rng(seed).permutation(len(labels))
    idx = order[test_size:] if train else order[:test_size]
    return ArrayDataset(images[idx, None], labels[idx])


def _read_idx(path: str, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


class FashionMNIST(ArrayDataset):
    """Fashion-MNIST (60,000 train / 10,000 test, 1x28x28 uint8) read from Debian's ``dataset-fashion-mnist``
    files (IDX .gz) in ``root``."""

    def __init__(self, train: bool = True, root: str = FASHION_MNIST_DIR) -> None:
        prefix = "train" if train else "t10k"
        img = os.path.join(root, f"{prefix}-images-idx3-ubyte.gz")
        lab = os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz")
        if not (os.path.exists(img) and os.path.exists(lab)):
            raise FileNotFoundError(
                f"Fashion-MNIST files not found in {root!r}. Install them with "
                "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or pass root= to a folder holding "
                f"{os.path.basename(img)} and {os.path.basename(lab)}."
            )
        images = _read_idx(img, 16).reshape(-1, 1, 28, 28)
        labels = _read_idx(lab, 8)
        super().__init__(images, labels)


_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolder(Dataset):
    """ImageNet-style folder: ``root/<class_name>/<image>``; classes sorted by name -> labels 0..K-1.

    Images are decoded with Pillow (``pip install pillow``), converted to ``mode`` ("RGB" or "L"), resized to
    ``size`` (int or (h, w); None keeps the size, then all images must share it) and returned as CHW uint8.
    """

    def __init__(self, root: str, size: Optional[object] = None, mode: str = "RGB") -> None:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"ImageFolder: root {root!r} is not a directory")
        self.root, self.mode = root, mode
        self.size = (size, size) if isinstance(size, int) else size
        self.classes: List[str] = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        if not self.classes:
            raise ValueError(f"ImageFolder: no class sub-folders in {root!r}")
        self.samples: List[Tuple[str, int]] = []
        for label, cls in enumerate(self.classes):
            folder = os.path.join(root, cls)
            for name in sorted(os.listdir(folder)):
                if name.lower().endswith(_IMAGE_EXT):
                    self.samples.append((os.path.join(folder, name), label))
        if not self.samples:
            raise ValueError(f"ImageFolder: no images ({', '.join(_IMAGE_EXT)}) under {root!r}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Tuple[np.ndarray, int]:
        try:
            from PIL import Image
        except ImportError as e:
            raise ImportError("ImageFolder needs Pillow to decode images: `pip install pillow`") from e
        path, label = self.samples[index]
        with Image.open(path) as im:
            im = im.convert(self.mode)
            if self.size is not None:
                im = im.resize((self.size[1], self.size[0]), Image.BILINEAR)
            arr = np.asarray(im, np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return arr, label
