"""Batch transforms: each is ``t(batch, rng) -> batch`` on float32 (N, C, H, W), random per sample."""
from __future__ import annotations

from typing import Callable, Sequence, Tuple, Union

import numpy as np

__all__ = ["Compose", "RandomCrop", "RandomHorizontalFlip", "Normalize"]

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in self.transforms:
            batch = t(batch, rng)
        return batch


class RandomCrop:
    """Zero-pad by ``padding`` then crop ``size`` at a random offset per sample (CIFAR-style augmentation)."""

    def __init__(self, size: Union[int, Tuple[int, int]], padding: int = 0) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if padding < 0:
            raise ValueError(f"RandomCrop: padding must be non-negative, got {padding}")
        self.padding = padding

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n, c, h, w = batch.shape
        p = self.padding
        th, tw = self.size
        if th > h + 2 * p or tw > w + 2 * p:
            raise ValueError(f"RandomCrop: size {self.size} larger than padded image {(h + 2 * p, w + 2 * p)}")
        padded = np.pad(batch, ((0, 0), (0, 0), (p, p), (p, p))) if p else batch
        ys = rng.integers(0, h + 2 * p - th + 1, n)
        xs = rng.integers(0, w + 2 * p - tw + 1, n)
        # gather with broadcast index arrays: one vectorised fancy-index instead of a loop over samples
        rows = (ys[:, None] + np.arange(th))[:, None, :, None]
        cols = (xs[:, None] + np.arange(tw))[:, None, None, :]
        return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]


class RandomHorizontalFlip:
    """Mirror each sample left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        flip = rng.random(batch.shape[0]) < self.p
        out = batch.copy()
        out[flip] = batch[flip, :, :, ::-1]
        return out


class Normalize:
    """``(x - mean) / std`` per channel (scalars or sequences)."""

    def __init__(self, mean: Union[float, Sequence[float]] = 0.0, std: Union[float, Sequence[float]] = 1.0) -> None:
        self.mean = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
        if np.any(self.std == 0):
            raise ValueError("Normalize: std must be non-zero")

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return ((batch - self.mean) / self.std).astype(np.float32, copy=False)
