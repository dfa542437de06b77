"""Random uint8 images with random labels: a Dataset of the right shapes and nothing to learn.

For benchmarks and calibrations that time or size programs (whose cost depends on shapes only),
so they run anywhere without a data folder."""

from __future__ import annotations

import numpy as np

from jaxnn.data.containers import Dataset, Split


def random_images(n: int, n_val: int, shape: tuple[int, ...], num_classes: int = 10,
                  seed: int = 0) -> Dataset:
  """`n` training and `n_val` validation images of `shape` (the validation split doubles as the
  test split); mean 127.5 and std 64 per channel, roughly those of uniform bytes."""
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, size=(n + n_val,) + tuple(shape), dtype=np.uint8)
  y = rng.integers(0, num_classes, size=n + n_val).astype(np.int32)
  train, val = Split(x[:n], y[:n]), Split(x[n:], y[n:])
  channels = shape[-1]
  return Dataset("synthetic", train, val, val, num_classes,
                 tuple(map(str, range(num_classes))), np.full(channels, 127.5, np.float32),
                 np.full(channels, 64.0, np.float32))
