"""DataLoader: seeded shuffling, batching, ``drop_last``, batch-level transforms, optional progress bar."""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Tuple

import numpy as np

from .dataset import Dataset

__all__ = ["DataLoader"]


class DataLoader:
    """Iterate ``(images float32 (N, C, H, W), labels int32 (N,))`` numpy batches over ``dataset``.

    ``shuffle`` with ``seed``: epoch ``e`` uses permutation ``default_rng(seed + e)``, so runs are reproducible and
    each epoch differs. ``transform(batch, rng) -> batch`` works on a whole batch (see ``megq.data.transforms``).
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 seed: Optional[int] = None, transform: Optional[Callable] = None) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader: dataset must be a Dataset, got {type(dataset).__name__}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.seed, self.transform = seed, transform
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        n = len(self.dataset)
        base = self.seed if self.seed is not None else np.random.SeedSequence().entropy % (2 ** 32)
        rng = np.random.default_rng(base + self.epoch)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        self.epoch += 1
        get_batch = getattr(self.dataset, "get_batch", None) or Dataset.get_batch.__get__(self.dataset)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            images, labels = get_batch(idx)
            images = images.astype(np.float32, copy=False)
            if self.transform is not None:
                images = self.transform(images, rng)
            yield images, np.asarray(labels, np.int32)
