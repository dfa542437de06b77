"""The words of the sweep engine, each defined once: metrics, objectives and their direction,
member statuses, the loop's phases. The loop, the strategies, the records and the reports import
them from here.
"""

from __future__ import annotations

# The per-epoch history every member keeps (one value per epoch, None where not finite).
TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, LR = (
    "train_loss", "train_acc", "val_loss", "val_acc", "lr")
METRICS = (TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, LR)

MAXIMIZE, MINIMIZE = "maximize", "minimize"

# A metric's direction is the direction of its kind, the last word of its name: val_acc,
# best_train_acc and test_acc are accuracies; val_loss and loss are losses.
_KIND_DIRECTIONS = {"acc": MAXIMIZE, "accuracy": MAXIMIZE, "loss": MINIMIZE}

# What a sweep may rank members by (--objective) or early-stop on (--monitor).
OBJECTIVES = {VAL_ACC: MAXIMIZE, VAL_LOSS: MINIMIZE}
DEFAULT_OBJECTIVE, DEFAULT_MONITOR = VAL_ACC, VAL_LOSS

# Member statuses: what the engine writes into records and tells strategies.
RUNNING, COMPLETE, STOPPED, PRUNED, DIVERGED, FAILED = (
    "running", "complete", "stopped", "pruned", "diverged", "failed")
STATUSES = (COMPLETE, STOPPED, PRUNED, DIVERGED, FAILED, RUNNING)
# Finished with a usable model: ranked by the objective, candidates for the test split.
RANKED_STATUSES = (COMPLETE, STOPPED, PRUNED)
# Finished without a usable model: never ranked, never a PBT parent.
FAILED_STATUSES = (DIVERGED, FAILED)

# The sweep loop's phases (a checkpoint records which one it was taken in): asking the strategy,
# training chunks to the phase's sync point, the final test evaluation, finished.
ASK, TRAIN, TEST, DONE = "ask", "train", "test", "done"

# A whole sweep's state as `sweeps.runs` lists it (RUNNING as for a member).
FINISHED, INTERRUPTED = "finished", "interrupted"

# The reference variant of an ablation (what every other variant is compared with).
BASELINE = "baseline"


def direction(metric: str) -> str:
  """MAXIMIZE or MINIMIZE for a metric name (see _KIND_DIRECTIONS).

  Raises:
    ValueError: a metric of no known kind (the direction is never guessed).
  """
  kind = metric.rsplit("_", 1)[-1]
  if kind not in _KIND_DIRECTIONS:
    raise ValueError(f"metric: unknown kind of {metric!r}; known kinds: "
                     f"{', '.join(_KIND_DIRECTIONS)}")
  return _KIND_DIRECTIONS[kind]


def oriented(value: float, metric: str) -> float:
  """`value` turned so that higher is better."""
  return value if direction(metric) == MAXIMIZE else -value


def best(values, metric: str):
  """The best of `values` (max of an accuracy, min of a loss)."""
  return max(values) if direction(metric) == MAXIMIZE else min(values)


assert all(direction(m) == d for m, d in OBJECTIVES.items())
