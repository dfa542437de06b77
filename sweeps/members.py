"""Member bookkeeping: what the host keeps of each member, and the rules read from it.

A member's history, status and events live in a `MemberRun` (what becomes its record); early
stopping, its best epoch, whether it just improved and how members rank are pure functions of
those histories, so the loop (sweeps/run.py) only applies them. `member_meta` and
`member_from_meta` say what a checkpoint holds of a member.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from jaxnn import member as member_lib
from jaxnn import population
from sweeps import vocab
from sweeps.records import Record
from sweeps.strategies.base import Report, Trial

METRICS = vocab.METRICS


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
  """Per-member early stopping on a validation metric (patience 0: off)."""
  patience: int = 0
  min_delta: float = 0.0
  monitor: str = vocab.DEFAULT_MONITOR


@dataclasses.dataclass
class MemberRun:
  """Host-side bookkeeping of one member: what becomes its record."""
  trial: Trial
  spec: member_lib.BucketSpec
  row: dict[str, Any]
  param_count: int
  history: dict[str, list[float | None]] = dataclasses.field(
      default_factory=lambda: {m: [] for m in METRICS})
  status: str = vocab.RUNNING
  target: int = 0
  wall_time: float = 0.0
  events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  since_best: int = 0
  best_monitor: float | None = None
  reason: str | None = None
  test: dict[str, float] | None = None

  @property
  def epochs_run(self) -> int:
    return len(self.history[vocab.VAL_ACC])

  def report(self) -> Report:
    return Report(self.trial.member_id, self.trial.config, self.epochs_run, self.history,
                  self.status)

  def record(self, objective: str) -> Record:
    best = best_epoch(self.history, objective)
    return Record(
        member_id=self.trial.member_id, bucket=self.spec.name(), params=dict(self.trial.config),
        history={k: list(v) for k, v in self.history.items()}, epochs_run=self.epochs_run,
        best_epoch=best, status=self.status, wall_time=self.wall_time,
        param_count=self.param_count, test=self.test, events=list(self.events),
        seed=int(self.row["seed"]), group=self.trial.group, reason=self.reason)


def finite(x) -> float | None:
  x = float(x)
  return x if math.isfinite(x) else None


def best_epoch(history, objective) -> int | None:
  """The first epoch with the best value (ties keep the earlier epoch: the one whose weights
  were kept, since weights are copied on strict improvement only)."""
  values = [(vocab.oriented(v, objective), -i) for i, v in enumerate(history[objective])
            if v is not None]
  return -max(values)[1] if values else None


def improved(run: MemberRun, objective: str) -> bool:
  """Whether the epoch just recorded is the member's (first) best so far."""
  return (run.status not in vocab.FAILED_STATUSES and run.epochs_run > 0
          and best_epoch(run.history, objective) == run.epochs_run - 1)


def early_stop(value: float | None, best_monitor: float | None, since_best: int,
               rule: EarlyStopping) -> tuple[bool, float | None, int]:
  """One epoch of early stopping: the monitored `value` just recorded (None: non-finite),
  the best so far and the epochs since it -> (stop now, new best, new epochs since best)."""
  if rule.patience <= 0 or value is None:
    return False, best_monitor, since_best
  if best_monitor is None or vocab.oriented(value - best_monitor, rule.monitor) > rule.min_delta:
    return False, value, 0
  since_best += 1
  return since_best >= rule.patience, best_monitor, since_best


def after_epoch(run: MemberRun, values: Mapping[str, Any], seconds: float,
                rule: EarlyStopping) -> None:
  """Records one epoch of a member from its host `values` (METRICS and `diverged`): a diverged
  member gets no metrics for that epoch (it is frozen at its last finite state); the others
  append their metrics and apply the early-stopping `rule`."""
  run.wall_time += seconds
  if values[vocab.DIVERGED]:
    run.status = vocab.DIVERGED
    run.reason = f"non-finite loss or parameters in epoch {run.epochs_run}"
    run.events.append({"epoch": run.epochs_run, "kind": vocab.DIVERGED})
    return
  for metric in METRICS:
    run.history[metric].append(finite(values[metric]))
  if rule.patience <= 0:
    return
  stop, run.best_monitor, run.since_best = early_stop(
      run.history[rule.monitor][-1], run.best_monitor, run.since_best, rule)
  if stop:
    run.status = vocab.STOPPED
    run.reason = f"no {rule.monitor} improvement > {rule.min_delta} for {rule.patience} epochs"
    run.events.append({"epoch": run.epochs_run - 1, "kind": vocab.STOPPED})


def wants_epoch(run: MemberRun, sync_at: int | None) -> bool:
  """Whether a member trains another epoch in a phase that ends at `sync_at` (None: its
  target)."""
  if run.status != vocab.RUNNING or run.epochs_run >= run.target:
    return False
  return sync_at is None or run.epochs_run < sync_at


def finish(runs) -> list[MemberRun]:
  """Members at their target become complete; returns every finished one of `runs`."""
  for run in runs:
    if run.status == vocab.RUNNING and run.epochs_run >= run.target:
      run.status = vocab.COMPLETE
  return [run for run in runs if run.status != vocab.RUNNING]


def stopped(run: MemberRun, status: str, reason: str) -> None:
  """A strategy ended a member (Hyperband's pruning) with `status`."""
  run.status, run.reason = status, reason or None
  run.events.append({"epoch": run.epochs_run, "kind": status, "reason": reason})


def promoted(run: MemberRun, epochs: int, reason: str) -> None:
  """A strategy raised a member's target (Hyperband's promotion)."""
  run.target = epochs
  run.events.append({"epoch": run.epochs_run, "kind": "promoted", "to": epochs,
                     "reason": reason})


def extended(run: MemberRun, epochs: int) -> None:
  """A resume with a larger --epochs raised a member's budget; a completed one runs again."""
  if run.status == vocab.COMPLETE:
    run.status = vocab.RUNNING
    run.events.append({"epoch": run.epochs_run, "kind": "extended", "to": epochs})
  run.target = epochs
  run.trial = dataclasses.replace(run.trial, epochs=epochs)


def fail(run: MemberRun, reason: str) -> None:
  """Marks a member failed (it never gets a model), with the reason."""
  run.status, run.reason = vocab.FAILED, reason
  run.events.append({"epoch": run.epochs_run, "kind": vocab.FAILED, "reason": reason})


def exploit_row(child: MemberRun, config: Mapping[str, Any], bucket: member_lib.BucketSpec,
                dataset, dtype: str) -> dict[str, Any]:
  """The numeric row of `config` for `child`'s slot in `bucket` (padded, for packed buckets):
  a PBT exploit may change numbers only, and the child keeps its seed.

  Raises:
    ValueError: `config` needs another program than `bucket`.
  """
  spec, row = member_lib.resolve(config, num_classes=dataset.num_classes,
                                 num_train=dataset.train.x.shape[0])
  spec = population.with_dtype(spec, dtype)
  if not member_lib.fits(spec, bucket):
    raise ValueError(f"exploit: member {child.trial.member_id} cannot take a config with "
                     "another program (only numeric hyperparameters may change)")
  return {**member_lib.fit_row(spec, row, bucket), "seed": child.row["seed"]}


def exploited(child: MemberRun, parent: MemberRun, row: Mapping[str, Any],
              config: Mapping[str, Any], reason: str) -> None:
  """Bookkeeping of a PBT exploit: `child` goes on from `parent`'s weights with `row` and
  `config`. A diverged child gets a new start: running again, and the epochs it did not train
  stay empty (None) in its history, so it counts epochs like the others."""
  if child.status == vocab.DIVERGED:
    gap = parent.epochs_run - child.epochs_run
    for values in child.history.values():
      values.extend([None] * gap)
    child.status, child.reason = vocab.RUNNING, None
  child.row = dict(row)
  before = dict(child.trial.config)   # kept in the event: the lineage plot draws both sides
  child.trial = dataclasses.replace(child.trial, config=dict(config))
  child.events.append({"epoch": child.epochs_run, "kind": "exploit",
                       "parent": parent.trial.member_id, "config": dict(config),
                       "previous": before, "reason": reason})


def ranking(members: Mapping[int, MemberRun], objective: str) -> list[MemberRun]:
  """Finished, non-diverged members best first by the best validation objective."""
  scored = []
  for run in members.values():
    values = [v for v in run.history[objective] if v is not None]
    if run.status in vocab.RANKED_STATUSES and values:
      best = vocab.best(values, objective)
      scored.append((-vocab.oriented(best, objective), run.trial.member_id, run))
  return [run for *_, run in sorted(scored, key=lambda t: t[:2])]


def top_ids(members: Mapping[int, MemberRun], objective: str, k: int) -> set[int]:
  """Members (finished or live, not failed) whose best objective so far ranks in the top `k`."""
  scored = []
  for member_id, run in members.items():
    best = best_epoch(run.history, objective)
    if run.status not in vocab.FAILED_STATUSES and best is not None:
      scored.append((-vocab.oriented(run.history[objective][best], objective), member_id))
  return {member_id for _, member_id in sorted(scored)[:k]}


# What a checkpoint holds of a member besides its trial and bucket spec.
MEMBER_FIELDS = ("row", "param_count", "history", "status", "target", "wall_time", "events",
                 "since_best", "best_monitor", "reason", "test")


def member_meta(run: MemberRun) -> dict[str, Any]:
  """A member as JSON-able checkpoint metadata."""
  meta = {k: getattr(run, k) for k in MEMBER_FIELDS}
  meta["trial"] = dataclasses.asdict(run.trial)
  meta["spec"] = member_lib.spec_to_json(run.spec)   # the bucket's (packed) spec
  return meta


def member_from_meta(meta: Mapping[str, Any], dataset, dtype: str = "float32") -> MemberRun:
  """The member `member_meta` wrote."""
  trial = Trial(**meta["trial"])
  if "spec" in meta:
    spec = member_lib.spec_from_json(meta["spec"])
  else:   # a checkpoint written before packing: the member's own spec
    spec, _ = member_lib.resolve(trial.config, num_classes=dataset.num_classes,
                                 num_train=dataset.train.x.shape[0])
    spec = population.with_dtype(spec, dtype)
  return MemberRun(trial=trial, spec=spec, **{k: meta[k] for k in MEMBER_FIELDS})
