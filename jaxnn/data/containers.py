"""The arrays a data set hands to the trainer, and the raw arrays a source hands to `load`.

A source (IDX files, CIFAR pickles, an image folder, tfds, a toy generator) only produces
`RawData`: the official train and test arrays and the class names. Everything that is policy
(the validation carve, subsets, statistics) happens once, in `dataset.load`, so every source
gets the same splits for the same seed. Arrays are made read-only: the same arrays feed every
bucket of a sweep, and an in-place edit by one consumer would silently change the others.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def _frozen(a: np.ndarray) -> np.ndarray:
  a = np.asarray(a)
  if a.flags.writeable:
    a = a.view()
    a.flags.writeable = False
  return a


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """One split of a data set.

  Attributes:
    x: uint8 [N, H, W, C] for images, float32 [N, D] for toy sets.
    y: int32 [N] class indices in [0, num_classes).
  """
  x: np.ndarray
  y: np.ndarray

  def __post_init__(self):
    if len(self.x) != len(self.y):
      raise ValueError(f"Split: {len(self.x)} inputs but {len(self.y)} labels")
    object.__setattr__(self, "x", _frozen(self.x))
    object.__setattr__(self, "y", _frozen(self.y))

  def __len__(self) -> int:
    return len(self.y)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Train / validation / test splits with what the trainer needs to use them.

  Attributes:
    name: canonical name (`cifar10`, `folder:/path`, a tfds name, `spiral`, ...).
    train: examples to fit on.
    val: examples for selection (carved from the official train set).
    test: the official test set, for the final evaluation of chosen configs only.
    num_classes: number of classes (2 for the binary toy sets: one logit per class).
    class_names: one name per class index.
    mean: float32 [C] (images) or [D] (toy), computed on `train` in the units of `normalize`
      (pixels / 255 for uint8).
    std: float32, same shape as `mean`; a constant channel gets 1.
    source: where the arrays came from (files or tfds builder), for reports.
  """
  name: str
  train: Split
  val: Split
  test: Split
  num_classes: int
  class_names: tuple[str, ...]
  mean: np.ndarray
  std: np.ndarray
  source: str = ""

  def sizes(self) -> dict[str, int]:
    """Returns {'train': N, 'val': N, 'test': N}."""
    return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one example: (H, W, C) for images, (D,) for toy sets."""
    return tuple(self.train.x.shape[1:])

  def describe(self) -> str:
    """One line for logs: name, sizes, example shape, classes and source."""
    s = self.sizes()
    shape = "x".join(str(d) for d in self.input_shape)
    return (f"{self.name}: train {s['train']} / val {s['val']} / test {s['test']}, {shape} "
            f"{self.train.x.dtype}, {self.num_classes} classes"
            + (f", from {self.source}" if self.source else ""))


@dataclasses.dataclass(frozen=True, eq=False)
class RawData:
  """What a source produces: the official train and test sets, before any policy.

  Attributes:
    train_x, train_y: the official training set (uint8 [N,H,W,C] or float32 [N,D]; labels int).
    test_x, test_y: the official test set.
    class_names: one name per label value.
    source: human-readable origin (files, builder), carried into `Dataset.source`.
  """
  train_x: np.ndarray
  train_y: np.ndarray
  test_x: np.ndarray
  test_y: np.ndarray
  class_names: tuple[str, ...]
  source: str = ""
