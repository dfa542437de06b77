"""Seeded, stratified selection of examples: the validation carve and the quick-run subsets.

Stratified means each class keeps its share: class c gets round(n * count_c / total) of the n
examples taken, rounded by largest remainder so the total is exactly n. Each purpose draws from
its own random stream (`np.random.default_rng([seed, purpose])`), so asking for a train subset
never changes which examples form the validation set. Returned indices are sorted, which keeps
results independent of how the caller later orders them.
"""

from __future__ import annotations

import numpy as np

# One random stream per purpose, so the purposes never disturb each other.
PURPOSE_VALIDATION = 0
PURPOSE_TRAIN_SUBSET = 1
PURPOSE_VAL_SUBSET = 2
PURPOSE_TEST_SUBSET = 3


def proportional_counts(class_counts: np.ndarray, n_take: int) -> np.ndarray:
  """Splits `n_take` across classes in proportion to their sizes (largest remainder).

  Args:
    class_counts: int [K] examples available per class.
    n_take: total to take, 0 <= n_take <= class_counts.sum().

  Returns:
    int64 [K] per-class counts summing to `n_take`, each <= its class count. Ties between equal
    remainders go to the lower class index.
  """
  class_counts = np.asarray(class_counts, np.int64)
  total = int(class_counts.sum())
  if not 0 <= n_take <= total:
    raise ValueError(f"cannot take {n_take} examples out of {total}")
  if total == 0:
    return np.zeros_like(class_counts)
  exact = class_counts * n_take / total
  counts = np.floor(exact).astype(np.int64)
  remainder = exact - counts
  # Stable sort on -remainder: the largest remainders first, lower class index on ties.
  order = np.argsort(-remainder, kind="stable")
  counts[order[: n_take - int(counts.sum())]] += 1
  return counts


def stratified_take(labels: np.ndarray, n_take: int, seed: int,
                    purpose: int) -> tuple[np.ndarray, np.ndarray]:
  """Draws `n_take` indices stratified by label.

  Args:
    labels: int [N] class indices (non-negative).
    n_take: how many to take.
    seed: the user's seed.
    purpose: one of the PURPOSE_* constants; selects an independent random stream.

  Returns:
    (taken, rest): sorted int64 index arrays partitioning range(N).
  """
  labels = np.asarray(labels)
  n = len(labels)
  if n == 0:
    empty = np.zeros(0, np.int64)
    return empty, empty
  classes, inverse = np.unique(labels, return_inverse=True)
  quota = proportional_counts(np.bincount(inverse, minlength=len(classes)), n_take)
  rng = np.random.default_rng([int(seed), int(purpose)])
  taken = []
  for k in range(len(classes)):
    members = np.flatnonzero(inverse == k)
    taken.append(members[rng.permutation(len(members))[: quota[k]]])
  taken = np.sort(np.concatenate(taken))
  mask = np.ones(n, bool)
  mask[taken] = False
  return taken, np.flatnonzero(mask)


def validation_split(labels: np.ndarray, val_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Carves a stratified validation set out of the official training set.

  Args:
    labels: int [N] labels of the official training set.
    val_fraction: share of it for validation, in [0, 1); round(N * val_fraction) examples.
    seed: the user's seed.

  Returns:
    (train_indices, val_indices), sorted, disjoint, covering range(N).
  """
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
  n_val = int(round(len(labels) * val_fraction))
  val, train = stratified_take(labels, n_val, seed, PURPOSE_VALIDATION)
  return train, val


def stratified_subset(labels: np.ndarray, size: int | None, seed: int, purpose: int,
                      field: str) -> np.ndarray:
  """Indices of a stratified subset of `size` examples (all of them when `size` is None).

  Args:
    labels: int [N] labels of the split to subsample.
    size: wanted size, or None for everything.
    seed: the user's seed.
    purpose: PURPOSE_* constant of this subset.
    field: the option's name, for the error message (e.g. 'train_subset').

  Returns:
    Sorted int64 indices into `labels`.
  """
  n = len(labels)
  if size is None:
    return np.arange(n, dtype=np.int64)
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
    raise ValueError(f"{field}={size!r} must be a non-negative int or None")
  if size > n:
    raise ValueError(f"{field}={size} exceeds the {n} examples available")
  taken, _ = stratified_take(labels, int(size), seed, purpose)
  return taken
