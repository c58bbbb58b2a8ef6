"""In-memory images (:mod:`cckl_core.data.images`): the synthetic data set, :class:`ImageData`, class-balanced
subsets and their sizes, per-sample crop and flip, and batching. No network, no CIFAR files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cckl_core import data
from cckl_core.data import Batches, ImageData
from cckl_core.data import images as images_mod


# --------------------------------------------------------------------------- synthetic
def test_synthetic_shape_dtype_balanced_and_deterministic():
    a = data.synthetic("train", n=200, seed=0)
    b = data.synthetic("train", n=200, seed=0)
    assert a.images.dtype == torch.uint8 and a.images.shape == (200, 3, 32, 32)
    assert a.labels.dtype == torch.long and a.labels.shape == (200,)
    assert a.num_classes == 10 and len(a.classes) == 10
    assert torch.bincount(a.labels, minlength=10).tolist() == [20] * 10
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = data.synthetic("train", n=200, seed=1)
    assert not torch.equal(a.images, c.images)
    test = data.synthetic("test", n=200, seed=0)
    assert not torch.equal(a.images, test.images)
    # not a constant image: the pixels use a range of grey levels
    assert a.images.float().std() > 5


def test_synthetic_is_learnable_by_nearest_class_mean():
    """Class templates are visible: a nearest-class-mean classifier beats chance by far."""
    train, test = data.synthetic("train", n=300), data.synthetic("test", n=100)
    x, xt = train.float().flatten(1), test.float().flatten(1)
    means = torch.stack([x[train.labels == c].mean(0) for c in range(10)])
    pred = torch.cdist(xt, means).argmin(1)
    assert (pred == test.labels).float().mean() > 0.5


def test_load_synthetic():
    d = data.load("synthetic", "test", n=50)
    assert len(d) == 50 and d.split == "test" and d.name == "synthetic"
    assert torch.bincount(d.labels, minlength=10).tolist() == [5] * 10


def test_image_data_validation_and_float():
    with pytest.raises(ValueError):
        ImageData(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), ["a"])  # not uint8
    with pytest.raises(ValueError):
        ImageData(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), ["a"])
    imgs = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    d = ImageData(imgs, torch.zeros(1, dtype=torch.long), ["a"])
    x = d.float()
    assert x.dtype == torch.float32
    torch.testing.assert_close(x.flatten(), torch.tensor([0.0, 0.2, 1.0]))


# --------------------------------------------------------------------------- balanced subsets
def test_balanced_indices_class_balanced_sorted_deterministic():
    labels = torch.tensor([0] * 30 + [1] * 12 + [2] * 50 + [3] * 9)[torch.randperm(101, generator=torch.Generator().manual_seed(0))]
    idx = data.balanced_indices(labels, 34, seed=3)
    assert len(idx) == 34 and len(set(idx.tolist())) == 34
    assert torch.equal(idx, torch.sort(idx).values)
    assert torch.bincount(labels[idx], minlength=4).tolist() == [9, 9, 8, 8]  # first n % K classes get one more
    assert torch.equal(idx, data.balanced_indices(labels, 34, seed=3))
    assert not torch.equal(idx, data.balanced_indices(labels, 34, seed=4))
    assert data.balanced_indices(labels, None) is None
    assert data.balanced_indices(labels, 101) is None
    with pytest.raises(ValueError):
        data.balanced_indices(labels, 0)
    with pytest.raises(ValueError):
        data.balanced_indices(labels, 80)  # class 3 has only 9 samples, 20 asked for


def test_subset_tracks_origin():
    d = data.synthetic("train", n=100)
    s = d.subset(20, seed=1)
    assert len(s) == 20
    assert torch.bincount(s.labels, minlength=10).tolist() == [2] * 10
    assert torch.equal(s.images, d.images[s.indices]) and torch.equal(s.labels, d.labels[s.indices])
    s2 = s.subset(10, seed=2)
    assert torch.equal(s2.images, d.images[s2.indices])  # origin composes through two subsets
    assert torch.bincount(s2.labels, minlength=10).tolist() == [1] * 10
    assert d.subset(None) is d


# --------------------------------------------------------------------------- augmentation
def crop_flip_oracle(x: np.ndarray, oy: np.ndarray, ox: np.ndarray, flip: np.ndarray, pad: int) -> np.ndarray:
    out = np.empty_like(x)
    h, w = x.shape[-2:]
    for b in range(len(x)):
        padded = np.pad(x[b], ((0, 0), (pad, pad), (pad, pad)), mode="constant", constant_values=0)
        crop = padded[:, oy[b]:oy[b] + h, ox[b]:ox[b] + w]
        out[b] = crop[:, :, ::-1] if flip[b] else crop
    return out


@pytest.mark.parametrize("pad", [4, 2, 0])
def test_random_crop_flip_matches_per_sample_oracle(pad):
    x = torch.rand(16, 3, 32, 32)
    out = data.random_crop_flip(x, torch.Generator().manual_seed(42), pad=pad)
    gen = torch.Generator().manual_seed(42)  # replay the draws: offsets (2, B), then flips (B,)
    oy, ox = torch.randint(0, 2 * pad + 1, (2, 16), generator=gen)
    flip = torch.rand(16, generator=gen) < 0.5
    ref = crop_flip_oracle(x.numpy(), oy.numpy(), ox.numpy(), flip.numpy(), pad)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(out.numpy(), ref)
    assert flip.any() and (~flip).any()
    if pad:
        assert len(set(zip(oy.tolist(), ox.tolist()))) > 1
        assert ((oy != pad) | (ox != pad)).any()  # some images really are shifted (zero border)


def test_random_crop_flip_uint8_and_no_shared_crop():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8).repeat(8, 1, 1, 1)
    out = data.random_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert len({tuple(o.flatten().tolist()) for o in out}) > 2  # per-sample parameters, not one per batch


# --------------------------------------------------------------------------- batches
def _indexed_data(n: int = 53) -> ImageData:
    """Images that encode their own index in pixel (0, 0, 0) and (1, 0, 0)."""
    imgs = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    imgs[:, 0, 0, 0] = torch.arange(n) % 256
    imgs[:, 1, 0, 0] = torch.arange(n) // 256
    return ImageData(imgs, torch.arange(n) % 5, [str(c) for c in range(5)])


def _collect(batches: Batches, epoch: int):
    batches.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in batches]


def test_batches_cover_each_sample_once_without_augmentation():
    d = _indexed_data()
    for shuffle in (False, True):
        b = Batches(d, batch_size=8, shuffle=shuffle, augment=False, seed=1)
        assert len(b) == 7
        got = _collect(b, 0)
        xs, ys = torch.cat([x for x, _ in got]), torch.cat([y for _, y in got])
        assert xs.dtype == torch.float32 and 0.0 <= xs.min() and xs.max() <= 1.0
        assert [len(y) for _, y in got] == [8] * 6 + [5]
        idx = (xs[:, 0, 0, 0] * 255).round().long() + 256 * (xs[:, 1, 0, 0] * 255).round().long()
        assert sorted(idx.tolist()) == list(range(len(d)))
        torch.testing.assert_close(xs, d.images[idx].float() / 255, rtol=0, atol=0)
        assert torch.equal(ys, d.labels[idx])
        if not shuffle:
            assert idx.tolist() == list(range(len(d)))
        else:
            assert idx.tolist() != list(range(len(d)))


def test_batches_drop_last():
    b = Batches(_indexed_data(), batch_size=8, drop_last=True)
    assert len(b) == 6 and len(list(b)) == 6
    with pytest.raises(ValueError):
        Batches(_indexed_data(), batch_size=0)


@pytest.mark.parametrize("augment", [False, True])
def test_batches_deterministic_per_seed_and_epoch(augment):
    d = _indexed_data()
    one = Batches(d, batch_size=16, shuffle=True, augment=augment, seed=7)
    two = Batches(d, batch_size=16, shuffle=True, augment=augment, seed=7)
    e0a, e1a = _collect(one, 0), _collect(one, 1)
    e1b, e0b = _collect(two, 1), _collect(two, 0)  # other order of epochs: the same batches
    for (xa, ya), (xb, yb) in zip(e0a + e1a, e0b + e1b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(e0a, e1a))  # epochs differ
    other = _collect(Batches(d, batch_size=16, shuffle=True, augment=augment, seed=8), 0)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(e0a, other))  # seeds differ
    for x, _ in e0a:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and 0 <= x.min() and x.max() <= 1


def test_batches_augmentation_is_crop_flip_of_the_shuffled_batch():
    d = _indexed_data(20)
    b = Batches(d, batch_size=20, shuffle=True, augment=True, seed=3)
    b.set_epoch(2)
    (x, y), = list(b)
    gen = torch.Generator().manual_seed(1_000_003 * 3 + 2)
    order = torch.randperm(20, generator=gen)
    expected = data.random_crop_flip(d.images[order].float() / 255, gen)
    torch.testing.assert_close(x, expected, rtol=0, atol=0)
    assert torch.equal(y, d.labels[order])


def test_batches_channels_last():
    b = Batches(_indexed_data(10), batch_size=4, channels_last=True)
    x, _ = next(iter(b))
    assert x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("n", [0, -3, 2.5, "10", True])
def test_n_must_be_a_positive_integer(n):
    with pytest.raises(ValueError, match="positive integer"):
        data.load("synthetic", "test", n=n)
    with pytest.raises(ValueError, match="positive integer"):
        data.balanced_indices(torch.arange(20) % 2, n)


def test_balanced_indices_n_equal_to_len_and_numpy_integer():
    labels = torch.arange(20) % 4
    assert data.balanced_indices(labels, 20) is None
    assert data.balanced_indices(labels, None) is None
    assert len(data.balanced_indices(labels, np.int64(8))) == 8
    with pytest.raises(ValueError, match=r"n=21 is more than the split holds \(20 samples\)"):
        data.balanced_indices(labels, 21)


# --------------------------------------------------------------------------- synthetic memory guard
def test_synthetic_that_cannot_fit_is_refused(monkeypatch):
    with pytest.raises(ValueError) as err:
        data.load("synthetic", "train", n=10**9)  # about 90 TiB of working memory
    msg = str(err.value)
    assert "n=1,000,000,000" in msg and "GiB" in msg and "fewer" in msg
    monkeypatch.setattr(images_mod, "_available_memory", lambda: 1_000_000)  # 1 MB left
    with pytest.raises(ValueError, match="n=100 images needs about"):
        data.synthetic("train", n=100)
    assert len(data.synthetic("train", n=10)) == 10  # 10 * 3072 * 32 bytes < 1 MB
    with pytest.raises(ValueError, match="num_classes"):
        data.synthetic("train", n=10, num_classes=0)
