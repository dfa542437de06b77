"""Split policy, toy sets, the registry and the Dataset container."""

import numpy as np
import pytest

from jaxnn import data
from jaxnn.data import splits, toy


def test_proportional_counts_by_hand():
  # 10 of 20: exact halves.
  assert splits.proportional_counts([10, 6, 4], 10).tolist() == [5, 3, 2]
  # 3 of 10 split 5/3/2: exact shares 1.5, 0.9, 0.6 -> floors 1, 0, 0; remainders .5 .9 .6 -> +1
  # to the two largest remainders (classes 1 and 2).
  assert splits.proportional_counts([5, 3, 2], 3).tolist() == [1, 1, 1]
  # Ties go to the lower class index: 1 of 2+2.
  assert splits.proportional_counts([2, 2], 1).tolist() == [1, 0]
  assert splits.proportional_counts([7, 0, 3], 0).tolist() == [0, 0, 0]
  assert splits.proportional_counts([7, 0, 3], 10).tolist() == [7, 0, 3]
  with pytest.raises(ValueError):
    splits.proportional_counts([1, 1], 3)


def test_validation_split_is_stratified_disjoint_and_seeded():
  labels = np.repeat(np.arange(4), [100, 50, 30, 20])
  train, val = splits.validation_split(labels, 0.2, seed=0)
  assert len(val) == 40 and len(train) == 160
  assert np.intersect1d(train, val).size == 0
  assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(200))
  assert np.bincount(labels[val]).tolist() == [20, 10, 6, 4]
  again = splits.validation_split(labels, 0.2, seed=0)
  assert np.array_equal(again[1], val)
  assert not np.array_equal(splits.validation_split(labels, 0.2, seed=1)[1], val)
  with pytest.raises(ValueError, match="val_fraction"):
    splits.validation_split(labels, 1.0, seed=0)


def test_subset_errors_name_the_field():
  labels = np.arange(10) % 2
  with pytest.raises(ValueError, match="train_subset=11 exceeds the 10"):
    splits.stratified_subset(labels, 11, 0, splits.PURPOSE_TRAIN_SUBSET, "train_subset")
  with pytest.raises(ValueError, match="val_subset"):
    splits.stratified_subset(labels, -1, 0, splits.PURPOSE_VAL_SUBSET, "val_subset")
  with pytest.raises(ValueError, match="test_subset=2000 exceeds"):
    data.load("xor", n=100, test_subset=2000)


@pytest.mark.parametrize("name", sorted(toy.GENERATORS))
def test_toy_sets(name):
  ds = data.load(name, n=200, n_test=100, noise=0.0, val_fraction=0.25)
  assert ds.sizes() == {"train": 150, "val": 50, "test": 100}
  assert ds.train.x.dtype == np.float32 and ds.train.x.shape == (150, 2)
  assert ds.num_classes == 2 and set(np.unique(ds.train.y)) == {0, 1}
  assert ds.mean.shape == (2,) and ds.std.shape == (2,)
  x, y = toy.make_points(name, 400, 0.0, np.random.default_rng(0))
  r = np.linalg.norm(x, axis=1)
  if name == "circle":
    assert r[y == 1].max() <= 2.5 and r[y == 0].min() >= 3.5 and r.max() <= 5.0
  elif name == "xor":
    assert np.all((x[:, 0] * x[:, 1] > 0) == (y == 1)) and np.abs(x).min() >= 0.3
  elif name == "gauss":
    np.testing.assert_allclose(x[y == 1].mean(0), [2, 2], atol=0.3)
    np.testing.assert_allclose(x[y == 0].mean(0), [-2, -2], atol=0.3)
  else:
    assert r.max() <= 5.0
  if name != "xor":
    assert np.bincount(y).tolist() == [200, 200]
  noisy, _ = toy.make_points(name, 400, 0.2, np.random.default_rng(0))
  assert not np.allclose(noisy, x)


def test_toy_data_seed_is_independent_of_split_seed():
  a = data.load("spiral", n=100, seed=0, noise=0.1)
  b = data.load("spiral", n=100, seed=1, noise=0.1)
  both = lambda d: np.sort(np.concatenate([d.train.x, d.val.x]), axis=0)  # noqa: E731
  np.testing.assert_array_equal(both(a), both(b))  # same cloud, different carve
  assert not np.array_equal(a.val.x, b.val.x)
  c = data.load("spiral", n=100, seed=0, noise=0.1, data_seed=5)
  assert not np.array_equal(both(a), both(c))


def test_registry_names_and_aliases():
  assert data.list_datasets() == sorted(data.DATASETS)
  assert {"cifar10", "cifar100", "mnist", "fashion_mnist", "kmnist", "kuzushiji49", "circle",
          "xor", "gauss", "spiral"} == set(data.list_datasets())
  assert data.load("Gaussian", n=20).name == "gauss"
  with pytest.raises(ValueError, match="unknown name 'cifar11'.*known: cifar10"):
    data.load("cifar11")
  with pytest.raises(ValueError, match="needs a path"):
    data.load("folder:")


def test_dataset_container():
  ds = data.load("circle", n=50, n_test=20)
  assert ds.sizes() == {"train": 40, "val": 10, "test": 20}
  assert ds.input_shape == (2,)
  assert ds.describe().startswith("circle: train 40 / val 10 / test 20, 2 float32, 2 classes")
  with pytest.raises(ValueError):  # read-only: one copy is shared by every bucket
    ds.train.x[0, 0] = 1.0
  with pytest.raises(AttributeError):
    ds.name = "other"


def test_dataset_from_raw_checks_labels():
  x = np.zeros((6, 2, 2, 1), np.uint8)
  raw = data.RawData(x, np.array([0, 1, 2, 0, 1, 2]), x, np.array([0, 1, 2, 0, 1, 3]),
                     ("a", "b", "c"), source="unit test")
  with pytest.raises(data.DataFormatError, match=r"unit test.*test labels span \[0, 3\]"):
    data.dataset_from_raw("t", raw)
  ok = data.RawData(x, raw.train_y, x, raw.train_y, ("a", "b", "c"))
  ds = data.dataset_from_raw("t", ok, val_fraction=0.5)
  assert ds.sizes() == {"train": 3, "val": 3, "test": 6}
  assert sorted(ds.val.y.tolist()) == [0, 1, 2]
