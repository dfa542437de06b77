"""The real MNIST, Fashion-MNIST and CIFAR-10 (JPEG copy) from shared/datasets.

The CIFAR-10 copy is 60000 JPEGs: it is decoded once per test session into a cache under
pytest's tmp folder (about 10-20 s on 2 cores), and every later load in the session reads the
cache (about 1 s).
"""

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest

from jaxnn import data
from jaxnn.data import idx

DATASETS_DIR = Path(os.environ.get(
    "JAXNN_TEST_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))

pytestmark = pytest.mark.skipif(not (DATASETS_DIR / "mnist").is_dir(),
                                reason=f"real data sets not found in {DATASETS_DIR}")

# Published per-class counts of the official MNIST files.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _rows(*arrays):
  """Sorted 64-bit fingerprints of the examples: a multiset to compare splits by content."""
  digests = [hashlib.blake2b(row.tobytes(), digest_size=8).digest()
             for a in arrays for row in a.reshape(len(a), -1)]
  return np.sort(np.frombuffer(b"".join(digests), np.uint64))


@pytest.fixture(scope="session")
def cifar_cache(tmp_path_factory):
  cache_dir = tmp_path_factory.mktemp("cifar_cache")
  start = time.perf_counter()
  ds = data.load("cifar10", DATASETS_DIR, cache_dir=cache_dir, val_fraction=0.0)
  seconds = time.perf_counter() - start
  print(f"\nCIFAR-10 JPEG copy: decoded 60000 images in {seconds:.1f} s")
  return cache_dir, ds


@pytest.fixture(scope="module")
def mnist():
  return data.load("mnist", DATASETS_DIR)


def test_mnist_shapes_dtypes_and_class_counts(mnist):
  assert mnist.sizes() == {"train": 48000, "val": 12000, "test": 10000}
  for split in (mnist.train, mnist.val, mnist.test):
    assert split.x.dtype == np.uint8 and split.x.shape[1:] == (28, 28, 1)
    assert split.y.dtype == np.int32 and split.y.min() == 0 and split.y.max() == 9
  train_counts = np.bincount(mnist.train.y, minlength=10) + np.bincount(mnist.val.y, minlength=10)
  assert train_counts.tolist() == MNIST_TRAIN_COUNTS
  assert np.bincount(mnist.test.y, minlength=10).tolist() == MNIST_TEST_COUNTS
  assert mnist.num_classes == 10 and mnist.class_names == tuple("0123456789")


def test_mnist_validation_is_stratified_and_partitions_train(mnist):
  val_counts = np.bincount(mnist.val.y, minlength=10)
  np.testing.assert_allclose(val_counts, 0.2 * np.array(MNIST_TRAIN_COUNTS), atol=1)
  raw_x, _ = idx.read_idx_pair(DATASETS_DIR / "mnist/train-images-idx3-ubyte.gz",
                               DATASETS_DIR / "mnist/train-labels-idx1-ubyte.gz")
  # train + val hold exactly the official training images, each once.
  np.testing.assert_array_equal(_rows(mnist.train.x, mnist.val.x), _rows(raw_x))


def test_mnist_full_train_statistics():
  ds = data.load("mnist", DATASETS_DIR, val_fraction=0.0)
  assert ds.sizes() == {"train": 60000, "val": 0, "test": 10000}
  # The widely quoted MNIST normalization constants.
  np.testing.assert_allclose(ds.mean, [0.1307], atol=1e-4)
  np.testing.assert_allclose(ds.std, [0.3081], atol=1e-4)
  assert ds.mean.dtype == np.float32 and ds.std.dtype == np.float32


def test_fashion_mnist_quick_run_subsets_are_stratified_and_deterministic():
  kwargs = dict(train_subset=3200, val_subset=800, test_subset=1000, seed=3)
  ds = data.load("fashion_mnist", DATASETS_DIR, **kwargs)
  assert ds.sizes() == {"train": 3200, "val": 800, "test": 1000}
  assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
  # 6000 per class -> 4800 / 1200 after the carve -> exact shares of the subsets.
  assert np.bincount(ds.train.y).tolist() == [320] * 10
  assert np.bincount(ds.val.y).tolist() == [80] * 10
  assert np.bincount(ds.test.y).tolist() == [100] * 10
  again = data.load("fashion_mnist", DATASETS_DIR, **kwargs)
  for a, b in ((ds.train, again.train), (ds.val, again.val), (ds.test, again.test)):
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
  other = data.load("fashion_mnist", DATASETS_DIR, **{**kwargs, "seed": 4})
  assert not np.array_equal(other.val.x, ds.val.x)


def test_subsets_come_from_their_own_split():
  full = data.load("fashion_mnist", DATASETS_DIR, seed=1)
  small = data.load("fashion_mnist", DATASETS_DIR, seed=1, train_subset=500, val_subset=100,
                    test_subset=100)
  for part, whole in ((small.train, full.train), (small.val, full.val), (small.test, full.test)):
    whole_rows = set(_rows(whole.x).tolist())
    assert all(r in whole_rows for r in _rows(part.x).tolist())
  # The validation set does not depend on whether a train subset was asked for.
  sub = data.load("fashion_mnist", DATASETS_DIR, seed=1, train_subset=500)
  np.testing.assert_array_equal(sub.val.x, full.val.x)


def test_cifar10_jpeg_copy_counts_shapes_and_statistics(cifar_cache):
  _, ds = cifar_cache
  assert ds.sizes() == {"train": 50000, "val": 0, "test": 10000}
  assert ds.train.x.dtype == np.uint8 and ds.train.x.shape[1:] == (32, 32, 3)
  assert ds.class_names == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                            "horse", "ship", "truck")
  assert np.bincount(ds.train.y).tolist() == [5000] * 10
  assert np.bincount(ds.test.y).tolist() == [1000] * 10
  per_class = np.bincount(np.concatenate([ds.train.y, ds.test.y]))
  assert per_class.tolist() == [6000] * 10
  # Channel means of CIFAR-10 (the README gives 124.7, 122.7, 113.9 for the copy's pixels).
  np.testing.assert_allclose(ds.mean * 255, [124.7, 122.7, 113.9], atol=1.0)
  assert "JPEG copy" in ds.source


def test_cifar10_split_from_cache_is_disjoint_and_deterministic(cifar_cache):
  cache_dir, full = cifar_cache
  start = time.perf_counter()
  ds = data.load("cifar10", DATASETS_DIR, cache_dir=cache_dir, seed=7)
  assert time.perf_counter() - start < 15, "the cached arrays should load without decoding"
  assert ds.sizes() == {"train": 40000, "val": 10000, "test": 10000}
  assert np.bincount(ds.val.y).tolist() == [1000] * 10
  np.testing.assert_array_equal(_rows(ds.train.x, ds.val.x), _rows(full.train.x))
  again = data.load("cifar10", DATASETS_DIR, cache_dir=cache_dir, seed=7)
  np.testing.assert_array_equal(ds.val.y, again.val.y)
  np.testing.assert_array_equal(ds.val.x, again.val.x)
