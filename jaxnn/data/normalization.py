"""Per-channel statistics on the host and the normalization applied inside the compiled step.

Images stay uint8 on the device (4x less memory than float32, and one copy serves every member);
`normalize` turns a batch into float32 inside the jitted program, where XLA fuses it with the
first layer. Statistics are computed once on the training split, in chunks so a 50000x32x32x3
set never materializes as one float64 array.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

_CHUNK = 8192  # examples per chunk: bounds the temporaries of the accumulation


def _uint8_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
  """Exact first and second moments of uint8 data from per-channel value histograms."""
  channels = x.shape[-1]
  counts = np.zeros((channels, 256), np.int64)
  for start in range(0, len(x), _CHUNK):
    flat = x[start:start + _CHUNK].reshape(-1, channels)
    for c in range(channels):
      counts[c] += np.bincount(flat[:, c], minlength=256)
  values = np.arange(256) / 255.0
  return counts @ values, counts @ np.square(values), int(counts[0].sum())


def _float_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
  channels = x.shape[-1]
  total = np.zeros(channels)
  total_sq = np.zeros(channels)
  count = 0
  for start in range(0, len(x), _CHUNK):
    chunk = x[start:start + _CHUNK].astype(np.float64).reshape(-1, channels)
    total += chunk.sum(0)
    total_sq += np.square(chunk).sum(0)
    count += chunk.shape[0]
  return total, total_sq, count


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and standard deviation over every axis but the last, in `normalize` units.

  Args:
    x: uint8 [N, ..., C] (statistics of x / 255, exact, from value histograms) or
      float [N, ..., D] (float64 accumulation).

  Returns:
    (mean, std), float32 [C]; a channel with zero spread gets std 1 so normalizing it is safe.
  """
  x = np.asarray(x)
  channels = x.shape[-1]
  total, total_sq, count = (_uint8_moments if x.dtype == np.uint8 else _float_moments)(x)
  if count == 0:
    return np.zeros(channels, np.float32), np.ones(channels, np.float32)
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
  std = np.where(std > 1e-12, std, 1.0)
  return mean.astype(np.float32), std.astype(np.float32)


def normalize(x, mean, std) -> jnp.ndarray:
  """Maps raw inputs to float32 (x / 255 for uint8, then (x - mean) / std on the last axis).

  Jit-able and vmap-able; the uint8 test is on the dtype, which is static.

  Args:
    x: uint8 or float array [..., C].
    mean: [C] in the units after the /255 step (e.g. `Dataset.mean`).
    std: [C], same units.

  Returns:
    float32 array of x's shape.
  """
  x = jnp.asarray(x)
  if x.dtype == jnp.uint8:
    x = x.astype(jnp.float32) / 255.0
  else:
    x = x.astype(jnp.float32)
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
