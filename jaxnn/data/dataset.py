"""`load`: one entry point from a data set name to train / validation / test arrays.

The policy lives here, the same for every source: validation is carved from the official train
set with a seeded stratified split (the official test set is never used for selection), optional
stratified subsets shrink each split for quick runs, and normalization statistics are computed
on the final train split. Same arguments, same arrays: every step is seeded.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from jaxnn.data import registry, splits
from jaxnn.data.containers import Dataset, RawData, Split
from jaxnn.data.errors import DataFormatError
from jaxnn.data.normalization import channel_stats
from jaxnn.data.sources import SourceContext, default_data_dir

COMMON_OPTIONS = ("cache_dir", "download")


def _check_raw(name: str, raw: RawData) -> None:
  where = f"{name} ({raw.source})" if raw.source else name
  k = len(raw.class_names)
  for split, x, y in (("train", raw.train_x, raw.train_y), ("test", raw.test_x, raw.test_y)):
    if x.dtype == np.uint8:
      if x.ndim != 4:
        raise DataFormatError(f"{where}: {split} images must be [N, H, W, C], got {x.shape}")
    elif x.dtype != np.float32 or x.ndim != 2:
      raise DataFormatError(f"{where}: {split} inputs must be uint8 images or float32 [N, D], "
                            f"got {x.dtype} {x.shape}")
    if y.shape != (len(x),):
      raise DataFormatError(f"{where}: {split} has {len(x)} inputs but labels of shape {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= k):
      raise DataFormatError(f"{where}: {split} labels span [{y.min()}, {y.max()}], outside "
                            f"[0, {k}) for {k} class names")
  if raw.train_x.shape[1:] != raw.test_x.shape[1:] or raw.train_x.dtype != raw.test_x.dtype:
    raise DataFormatError(f"{where}: test inputs {raw.test_x.dtype} {raw.test_x.shape[1:]} differ "
                          f"from train inputs {raw.train_x.dtype} {raw.train_x.shape[1:]}")


def dataset_from_raw(name: str, raw: RawData, *, val_fraction: float = 0.2, seed: int = 0,
                     train_subset: int | None = None, val_subset: int | None = None,
                     test_subset: int | None = None) -> Dataset:
  """Applies the split policy to a source's arrays (see `load` for the arguments).

  Returns:
    The Dataset; train and val partition the official train set (before subsets).
  """
  _check_raw(name, raw)
  train_y = np.asarray(raw.train_y, np.int32)
  test_y = np.asarray(raw.test_y, np.int32)
  train_idx, val_idx = splits.validation_split(train_y, val_fraction, seed)
  train_idx = train_idx[splits.stratified_subset(train_y[train_idx], train_subset, seed,
                                                 splits.PURPOSE_TRAIN_SUBSET, "train_subset")]
  val_idx = val_idx[splits.stratified_subset(train_y[val_idx], val_subset, seed,
                                             splits.PURPOSE_VAL_SUBSET, "val_subset")]
  test_idx = splits.stratified_subset(test_y, test_subset, seed, splits.PURPOSE_TEST_SUBSET,
                                      "test_subset")
  train = Split(raw.train_x[train_idx], train_y[train_idx])
  mean, std = channel_stats(train.x)
  return Dataset(
      name=name,
      train=train,
      val=Split(raw.train_x[val_idx], train_y[val_idx]),
      test=Split(raw.test_x[test_idx], test_y[test_idx]),
      num_classes=len(raw.class_names),
      class_names=tuple(raw.class_names),
      mean=mean,
      std=std,
      source=raw.source,
  )


def load(name: str, data_dir: str | Path | None = None, *, val_fraction: float = 0.2,
         seed: int = 0, train_subset: int | None = None, val_subset: int | None = None,
         test_subset: int | None = None, **source_kwargs) -> Dataset:
  """Loads a data set by name into train / validation / test arrays.

  Args:
    name: a registered name (`list_datasets()`: cifar10, cifar100, mnist, fashion_mnist, kmnist,
      kuzushiji49, circle, xor, gauss, spiral), `folder:<path>` (image folder or .tar.gz), or any
      other tfds image-classification name.
    data_dir: folder with the official archives or a tfds data folder; default $JAXNN_DATA_DIR,
      else $TFDS_DATA_DIR, else ~/tensorflow_datasets.
    val_fraction: share of the official train set held out for validation (stratified), [0, 1).
    seed: seeds the validation carve and the subsets.
    train_subset, val_subset, test_subset: sizes of stratified subsets for quick runs (None: all).
    **source_kwargs: `cache_dir` (folder for decoded arrays, False for none), `download`
      (default True: tfds may download when the network answers), and per-source options:
      cifar100 `label_mode` ('fine'|'coarse'); toy sets `n`, `noise`, `n_test`, `data_seed`;
      other tfds names `image_key`, `label_key`, `train_split`, `test_split`.

  Returns:
    A Dataset with uint8 [N, H, W, C] images (float32 [N, 2] for toy sets), int32 labels and
    train-split statistics.

  Raises:
    ValueError: unknown name or option, or impossible sizes.
    DataNotFoundError: the data are nowhere searched and cannot be downloaded (offline: within
      about a second).
    DataFormatError: a file is corrupt, truncated or inconsistent (the message names it).
  """
  data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
  canonical, spec = registry.resolve(name, data_dir)
  options = {k: source_kwargs.pop(k) for k in COMMON_OPTIONS if k in source_kwargs}
  accepted = [p for p in inspect.signature(spec.loader).parameters if p != "ctx"]
  unknown = sorted(set(source_kwargs) - set(accepted))
  if unknown:
    raise ValueError(f"dataset {canonical}: unknown option(s) {', '.join(unknown)}; known: "
                     f"{', '.join([*COMMON_OPTIONS, *accepted]) }")
  ctx = SourceContext(
      data_dir=data_dir,
      cache_dir=options.get("cache_dir"),
      download=bool(options.get("download", True)),
  )
  raw = spec.loader(ctx, **source_kwargs)
  return dataset_from_raw(canonical, raw, val_fraction=val_fraction, seed=seed,
                          train_subset=train_subset, val_subset=val_subset,
                          test_subset=test_subset)
