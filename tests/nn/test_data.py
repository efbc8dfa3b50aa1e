"""DataLoader, transforms and datasets."""
import os

import numpy as np
import pytest

from megq import data as D


def _ds(n=10):
    return D.ArrayDataset(np.arange(n * 4, dtype=np.uint8).reshape(n, 1, 2, 2), np.arange(n))


def test_loader_batches_and_drop_last():
    ds = _ds(10)
    dl = D.DataLoader(ds, batch_size=4)
    batches = list(dl)
    assert len(dl) == 3 and [len(y) for _, y in batches] == [4, 4, 2]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int32
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), np.arange(10))
    dl = D.DataLoader(ds, batch_size=4, drop_last=True)
    assert len(dl) == 2 and [len(y) for _, y in dl] == [4, 4]
    with pytest.raises(ValueError, match="batch_size"):
        D.DataLoader(ds, batch_size=0)


def test_seeded_shuffle():
    ds = _ds(20)
    def order(dl):
        return np.concatenate([y for _, y in dl])
    a, b = D.DataLoader(ds, 6, shuffle=True, seed=3), D.DataLoader(ds, 6, shuffle=True, seed=3)
    e1a, e1b = order(a), order(b)
    np.testing.assert_array_equal(e1a, e1b)
    assert sorted(e1a) == list(range(20)) and not np.array_equal(e1a, np.arange(20))
    assert not np.array_equal(order(a), e1a)  # next epoch, new permutation


def test_transforms():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 2, 5, 5)).astype(np.float32)
    crop = D.transforms.RandomCrop(5, padding=2)(x, np.random.default_rng(1))
    assert crop.shape == x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(16):  # every sample is some 5x5 window of its padded image
        assert any(np.array_equal(crop[i], padded[i, :, r:r + 5, c:c + 5]) for r in range(5) for c in range(5))
    flip = D.transforms.RandomHorizontalFlip(0.5)(x, np.random.default_rng(2))
    flipped = [np.array_equal(flip[i], x[i, :, :, ::-1]) for i in range(16)]
    kept = [np.array_equal(flip[i], x[i]) for i in range(16)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    norm = D.transforms.Normalize([1.0, 2.0], [2.0, 4.0])(x, rng)
    np.testing.assert_allclose(norm[:, 1], (x[:, 1] - 2.0) / 4.0, rtol=1e-6)


def test_digits_embedded():
    images, labels = D.load_digits()
    assert images.shape == (1797, 8, 8) and images.max() == 16 and images.min() == 0
    assert np.bincount(labels).min() >= 174
    tr, te = D.digits(True), D.digits(False)
    assert len(tr) == 1437 and len(te) == 360 and tr.images.shape[1:] == (1, 8, 8)
    here = os.path.dirname(D.__file__)
    assert os.path.exists(os.path.join(here, "digits-LICENSE.txt"))


def test_fashion_mnist(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        D.FashionMNIST(root=str(tmp_path))
    if not os.path.exists(os.path.join(D.FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("dataset-fashion-mnist not installed")
    ds = D.FashionMNIST(train=False)
    assert ds.images.shape == (10000, 1, 28, 28) and ds.images.dtype == np.uint8
    assert np.bincount(ds.labels).tolist() == [1000] * 10


def test_image_folder(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
    try:
        from PIL import Image
    except ImportError:
        (tmp_path / "cat" / "a.png").write_bytes(b"not really")
        ds = D.ImageFolder(str(tmp_path))
        with pytest.raises(ImportError, match="pip install pillow"):
            ds[0]
        return
    Image.new("RGB", (6, 4), (255, 0, 0)).save(tmp_path / "cat" / "a.png")
    Image.new("RGB", (6, 4), (0, 0, 255)).save(tmp_path / "dog" / "b.png")
    ds = D.ImageFolder(str(tmp_path), size=3)
    assert ds.classes == ["cat", "dog"] and len(ds) == 2
    img, label = ds[1]
    assert img.shape == (3, 3, 3) and label == 1 and img[2].min() == 255
    x, y = next(iter(D.DataLoader(ds, 2)))
    assert x.shape == (2, 3, 3, 3) and list(y) == [0, 1]


def test_progress_passthrough():
    assert list(D.progress(range(3), disable=True)) == [0, 1, 2]
    assert list(D.progress(range(3), total=3)) == [0, 1, 2]
