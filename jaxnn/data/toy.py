"""The four 2-D sets of the TensorFlow playground: circle, xor, gauss, spiral.

Seconds-fast data for demos and tests of the whole engine. Points live in about [-6, 6]^2 (the
playground's radius-5 world). A label is decided on the clean point; then Gaussian noise with
standard deviation `noise * 5` is added to each coordinate, so noise blurs the class boundary
(noise=0.1 -> std 0.5). Classes are balanced exactly except for xor, whose classes come from
uniform points (about half each). Labels are 0/1; the data set still has num_classes=2 so models
use one softmax logit per class like every other set.
"""

from __future__ import annotations

import numpy as np

from jaxnn.data.containers import RawData

RADIUS = 5.0
CLASS_NAMES = ("0", "1")


def _halves(n: int) -> tuple[int, int]:
  return n // 2, n - n // 2


def circle(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Label 1 inside radius 2.5, label 0 on the ring between 3.5 and 5 (clean points)."""
  n_in, n_out = _halves(n)
  radius = np.concatenate([rng.uniform(0, 0.5 * RADIUS, n_in),
                           rng.uniform(0.7 * RADIUS, RADIUS, n_out)])
  angle = rng.uniform(0, 2 * np.pi, n)
  x = np.stack([radius * np.sin(angle), radius * np.cos(angle)], 1)
  y = np.concatenate([np.ones(n_in), np.zeros(n_out)])
  return x, y


def xor(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Uniform points in [-5, 5]^2 kept 0.3 away from the axes; label 1 where x * y > 0."""
  padding = 0.3
  magnitude = rng.uniform(padding, RADIUS, (n, 2))
  x = magnitude * rng.choice([-1.0, 1.0], (n, 2))
  y = (x[:, 0] * x[:, 1] > 0).astype(np.float64)
  return x, y


def gauss(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Two unit-variance Gaussian blobs: label 1 around (2, 2), label 0 around (-2, -2)."""
  n_pos, n_neg = _halves(n)
  centres = np.concatenate([np.full((n_pos, 2), 2.0), np.full((n_neg, 2), -2.0)])
  x = centres + rng.normal(0, 1, (n, 2))
  y = np.concatenate([np.ones(n_pos), np.zeros(n_neg)])
  return x, y


def spiral(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Two interleaved arms of 1.75 turns each, radius growing from 0 to 5; arm 1 is label 1."""
  del rng  # the clean spiral is deterministic; noise is added by the caller
  xs, ys = [], []
  for label, (count, phase) in enumerate(zip(_halves(n), (np.pi, 0.0))):
    t = np.arange(count) / max(count, 1)
    angle = 1.75 * 2 * np.pi * t + phase
    r = RADIUS * t
    xs.append(np.stack([r * np.sin(angle), r * np.cos(angle)], 1))
    ys.append(np.full(count, float(label)))
  return np.concatenate(xs), np.concatenate(ys)


GENERATORS = {"circle": circle, "xor": xor, "gauss": gauss, "spiral": spiral}


def make_points(name: str, n: int, noise: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Draws `n` labelled points of toy set `name`.

  Args:
    name: one of GENERATORS.
    n: number of points.
    noise: noise standard deviation as a fraction of the radius 5.
    rng: numpy generator.

  Returns:
    (float32 [n, 2], int32 [n]) in a random order.
  """
  if name not in GENERATORS:
    raise ValueError(f"toy: unknown set {name!r}; known: {', '.join(GENERATORS)}")
  x, y = GENERATORS[name](n, rng)
  x = x + rng.normal(0, noise * RADIUS, x.shape)
  order = rng.permutation(n)
  return x[order].astype(np.float32), y[order].astype(np.int32)


def load_toy(name: str, n: int = 1000, noise: float = 0.1, n_test: int | None = None,
             data_seed: int = 0) -> RawData:
  """Generates a toy set's train and test points.

  Args:
    name: circle, xor, gauss or spiral.
    n: training points (before the validation carve).
    noise: see `make_points`.
    n_test: test points (default: n).
    data_seed: seed of the points themselves, independent of the split seed so different split
      seeds see the same cloud.

  Returns:
    RawData with float32 [N, 2] inputs.
  """
  n_test = n if n_test is None else n_test
  for field, value in (("n", n), ("n_test", n_test)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
      raise ValueError(f"{name}: {field}={value!r} must be an int >= 2")
  if not 0.0 <= noise:
    raise ValueError(f"{name}: noise={noise} must be >= 0")
  train = make_points(name, n, noise, np.random.default_rng([data_seed, 0]))
  test = make_points(name, n_test, noise, np.random.default_rng([data_seed, 1]))
  return RawData(*train, *test, CLASS_NAMES,
                 source=f"toy {name} (n={n}, n_test={n_test}, noise={noise}, seed={data_seed})")
