"""What every contender of the peers benchmark shares: the split, the space, the trace.

The split is the engine's own (`jaxnn.data.load`, stratified and seeded), handed to Keras Tuner
and to the plain Flax loop as the same arrays, so every contender sees the same 40000 / 10000
CIFAR-10 images (or the `--quick` subset). The space mirrors sweeps/flags/cifar_mlp_random.flags
(the seed study): 1-5 hidden layers, widths per layer from {64..2048}, relu/gelu/tanh, L2 and
dropout from small choices, Adam at lr 1e-3, batch 128.

A trace is the list of (seconds since the contender started, validation accuracy of one
member-epoch), in the order they happened; time-to-target and best-within-budget come from it.
Data loading is outside the clock for everyone; compiles and each tool's own overhead are inside.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

FLAGFILE = "sweeps/flags/cifar_mlp_random.flags"
DEPTH = (1, 5)
WIDTHS = (64, 128, 256, 512, 1024, 2048)
ACTIVATIONS = ("relu", "gelu", "tanh")
L2 = (1e-5, 5e-5, 1e-4)
DROPOUT = (0.0, 0.2, 0.3, 0.5)
LR = 1e-3
BATCH = 128


@dataclasses.dataclass(frozen=True)
class Budget:
  """The sizes one comparison runs at (the seed study's, or the --quick smoke sizes)."""
  trials: int
  epochs: int
  train_subset: int | None
  val_subset: int | None
  seed: int = 0


# The seed budget, Keras Tuner 10 trials x 3 epochs (~346 s on the idle 2-core CPU), so
# that all seven contenders run in one sitting of well under an hour; the flagfile's own 40 x 10
# would take Keras Tuner alone over an hour here.
FULL = Budget(trials=10, epochs=3, train_subset=None, val_subset=None)
QUICK = Budget(trials=3, epochs=2, train_subset=2000, val_subset=500)
# A probe of where each tool's time goes per member-epoch, at the full data size.
PROBE = Budget(trials=3, epochs=1, train_subset=None, val_subset=None)
BUDGETS = {"full": FULL, "quick": QUICK, "probe": PROBE}


def runner_args(**choices) -> tuple[argparse.Namespace, Budget]:
  """The command line every contender's runner takes (--data_dir, --out, --budget), plus one
  required choice per keyword (e.g. strategy=("random", "bayes")); returns (args, budget)."""
  parser = argparse.ArgumentParser()
  for name, values in choices.items():
    parser.add_argument(f"--{name}", choices=values, required=True)
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--budget", choices=tuple(BUDGETS), default="full")
  args = parser.parse_args()
  return args, BUDGETS[args.budget]


def load_split(data_dir: str, budget: Budget):
  """The engine's CIFAR-10 split (a `jaxnn.data.Dataset`, uint8 images)."""
  from jaxnn import data
  return data.load("cifar10", data_dir, val_fraction=0.2, seed=budget.seed,
                   train_subset=budget.train_subset, val_subset=budget.val_subset,
                   test_subset=1000)


def flat_float(dataset, split) -> tuple[np.ndarray, np.ndarray]:
  """A split as float32 [N, 3072], normalized with the train statistics as the engine does."""
  x = (split.x.astype(np.float32) / 255.0 - dataset.mean) / dataset.std
  return x.reshape(len(x), -1).astype(np.float32), split.y.astype(np.int32)


class Trace:
  """Collects (seconds since start, val accuracy, parameters of the member, member number) per
  member-epoch."""

  def __init__(self):
    self.start = time.perf_counter()
    self.points: list[tuple[float, float, int, int]] = []

  def add(self, val_acc: float, params: int = 0, member: int = 0) -> None:
    self.points.append((time.perf_counter() - self.start, float(val_acc), int(params),
                        int(member)))

  def dump(self, path: str, **extra) -> None:
    with open(path, "w") as f:
      json.dump({"points": self.points, "wall": time.perf_counter() - self.start, **extra}, f)


def summarize(points, target: float | None) -> tuple[float, float | None]:
  """(best val accuracy, seconds until the target was first reached or None)."""
  best = max((p[1] for p in points), default=float("nan"))
  reached = None
  if target is not None:
    reached = next((p[0] for p in points if p[1] >= target), None)
  return best, reached


def members_reaching(points, target: float | None) -> int | None:
  """How many distinct members reached the target at some epoch (how many of a contender's
  draws were good enough: a measure of the luck of the draw)."""
  if target is None or not points or len(points[0]) < 4:
    return None
  return len({p[3] for p in points if p[1] >= target})
