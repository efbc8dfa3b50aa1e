"""Dataset interfaces: ``Dataset`` (indexable) and ``ArrayDataset`` (in-memory arrays, batched fast path)."""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

__all__ = ["Dataset", "ArrayDataset"]


class Dataset:
    """Map-style dataset: ``len(ds)`` and ``ds[i] -> (image CHW array, int label)``."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Tuple[np.ndarray, int]:
        raise NotImplementedError

    def get_batch(self, indices: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Images (N, C, H, W) and labels (N,) for ``indices``; subclasses with arrays override this."""
        items = [self[int(i)] for i in indices]
        return np.stack([x for x, _ in items]), np.asarray([y for _, y in items], np.int32)


class ArrayDataset(Dataset):
    """Images (N, C, H, W) (any numeric dtype; uint8 keeps memory low) and integer labels (N,)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4:
            raise ValueError(f"ArrayDataset: images must be (N, C, H, W), got shape {images.shape}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"ArrayDataset: labels must have shape ({images.shape[0]},), got {labels.shape}")
        self.images, self.labels = images, labels.astype(np.int32)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: Any) -> Tuple[np.ndarray, int]:
        return self.images[index], int(self.labels[index])

    def get_batch(self, indices: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return self.images[indices], self.labels[indices]
