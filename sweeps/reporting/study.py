"""The sweep as an Optuna study, so `optuna-dashboard` and Optuna's own tools can open it.

Every member becomes one trial, created whole with `optuna.trial.create_trial` (params, their
distributions, per-epoch intermediate values of the objective, state, value) and added with
`Study.add_trials`: one storage transaction per member, never one per epoch.

Distributions are the ones the sweep declared (`--space`: uniform/loguniform/quniform become
FloatDistributions, int(...) IntDistributions, choice/grid categorical) wherever the space
declares a parameter once and every member's value lies inside it; otherwise (per-layer lists,
a parameter declared differently under several conditions, PBT perturbing past the declared
range) they are inferred from the values the members took (see `sweeps.reporting.params`):
numbers become Float/IntDistributions spanning the observed range (log-scaled across decades),
strings, bools and lists (as JSON strings) become categorical. A None value is a parameter the
member does not use; it is left out of that trial (Optuna's conditional parameters). `seed` is
not a hyperparameter: it is a user attribute. The study's metric is named after the objective,
and intermediate values are keyed by 1-based epoch, as in every table a person reads.

States: a member that trained to its end, or stopped itself by early stopping, is COMPLETE with
its best value; one cut short by the strategy (successive halving, PBT replacement) is PRUNED,
still with its best value so far; diverged and failed members are FAIL; running ones RUNNING.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import warnings
from typing import Any, Sequence

import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution,
                                  FloatDistribution, IntDistribution)
from optuna.trial import FrozenTrial, TrialState

from sweeps import vocab
from sweeps.records import Record, objective_direction
from sweeps.reporting.params import ParamAxis, categorical_value, param_axes

TRIAL_STATES: dict[str, TrialState] = {
    vocab.COMPLETE: TrialState.COMPLETE,
    # Early stopping ends a run by its own criterion: the member finished, at its best epoch.
    vocab.STOPPED: TrialState.COMPLETE,
    vocab.PRUNED: TrialState.PRUNED,
    vocab.DIVERGED: TrialState.FAIL,
    vocab.FAILED: TrialState.FAIL,
    vocab.RUNNING: TrialState.RUNNING,
}


@contextlib.contextmanager
def _quiet_optuna():
  """Silences Optuna's per-study INFO lines ("A new study created ...") while exporting."""
  verbosity = optuna.logging.get_verbosity()
  optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))
  try:
    yield
  finally:
    optuna.logging.set_verbosity(verbosity)


def default_storage(workdir: str) -> str:
  """The SQLite URL used when none is given: `WORKDIR/report/study.db`."""
  return "sqlite:///" + os.path.abspath(os.path.join(workdir, "report", "study.db"))


def distribution_for(axis: ParamAxis) -> BaseDistribution:
  """The Optuna distribution covering every value a member took for `axis`."""
  if axis.kind == "int":
    return IntDistribution(int(axis.low), int(axis.high), log=axis.log)
  if axis.kind == "float":
    return FloatDistribution(float(axis.low), float(axis.high), log=axis.log)
  return CategoricalDistribution(axis.choices or (None,))


def _param_value(axis: ParamAxis, value: Any) -> Any:
  if axis.kind == "int":
    return int(value)
  if axis.kind == "float":
    return float(value)
  return categorical_value(value)


def _user_attrs(record: Record, objective: str) -> dict[str, Any]:
  """Who the member is, for the dashboard's trial table.

  Kept short on purpose: Optuna's RDB storage spends one query per attribute, and every metric
  is already in results.csv.
  """
  attrs = {
      "member_id": record.member_id, "bucket": record.bucket, "status": record.status,
      "seed": record.seed, "group": record.group, "epochs_run": record.epochs_run,
      "best_epoch": _one_based(record.best_epoch_for(objective)), "test_acc": record.test_acc,
      "reason": record.reason,
  }
  return {k: v for k, v in attrs.items() if v is not None}


def _one_based(epoch: int | None) -> int | None:
  return None if epoch is None else epoch + 1


def declared_distributions(space_lines: Sequence[str] | None) -> dict[str, BaseDistribution]:
  """Optuna distributions of the parameters `--space` declares exactly once with a range or a
  set of plain values (see the module docstring for what is left to inference)."""
  if not space_lines:
    return {}
  from sweeps import space as space_lib
  try:
    space = space_lib.parse(space_lines)
  except space_lib.SpaceError:
    return {}
  counts: dict[str, int] = {}
  for param in space.params:
    counts[param.name] = counts.get(param.name, 0) + 1
  out: dict[str, BaseDistribution] = {}
  for param in space.params:
    dist = param.dist
    if counts[param.name] != 1:
      continue
    if isinstance(dist, space_lib.Uniform):
      out[param.name] = FloatDistribution(float(dist.low), float(dist.high), log=dist.log,
                                          step=None if dist.step is None else float(dist.step))
    elif isinstance(dist, space_lib.IntRange):
      out[param.name] = IntDistribution(int(dist.low), int(dist.high))
    elif isinstance(dist, space_lib.Choice) and all(
        v is None or isinstance(v, (bool, int, float, str)) for v in dist.values):
      out[param.name] = CategoricalDistribution(dist.values)
  return out


def _fits(dist: BaseDistribution, values: Sequence[Any]) -> bool:
  try:
    return all(dist._contains(dist.to_internal_repr(v)) for v in values)  # noqa: SLF001
  except (ValueError, TypeError):
    return False


def build_trials(records: Sequence[Record], objective: str = vocab.DEFAULT_OBJECTIVE,
                 space: Sequence[str] | None = None) -> list[FrozenTrial]:
  """One frozen trial per member, ordered by member_id.

  Args:
    records: the members.
    objective: the history key whose per-epoch values become intermediate values and whose
      best-epoch value becomes the trial's value.
    space: the sweep's `--space` lines, for the declared distributions.

  Returns:
    Trials ready for `Study.add_trials`; trial durations equal the members' wall times.
  """
  axes = {a.name: a for a in param_axes(records)}
  distributions = {name: distribution_for(a) for name, a in axes.items()}
  for name, dist in declared_distributions(space).items():
    values = [_param_value(axes[name], r.params[name]) for r in records
              if name in axes and r.params.get(name) is not None]
    if name in axes and _fits(dist, values):
      distributions[name] = dist
  now = datetime.datetime.now()
  trials = []
  for record in sorted(records, key=lambda r: r.member_id):
    state = TRIAL_STATES[record.status]
    value = record.objective_value(objective)
    if state == TrialState.COMPLETE and value is None:
      state = TrialState.FAIL  # finished without a single finite objective value
    params = {n: _param_value(axes[n], v) for n, v in record.params.items()
              if v is not None and n in axes}
    trial = optuna.trial.create_trial(
        state=state,
        value=None if state in (TrialState.FAIL, TrialState.RUNNING) else value,
        params=params,
        distributions={n: distributions[n] for n in params},
        user_attrs=_user_attrs(record, objective),
        intermediate_values={e + 1: v for e, v in record.finite_values(objective)},
    )
    trial.datetime_start = now - datetime.timedelta(seconds=max(0.0, record.wall_time or 0.0))
    trial.datetime_complete = now if state.is_finished() else None
    trials.append(trial)
  return trials


def export_study(records: Sequence[Record], storage_url: str, study_name: str,
                 direction: str | None = None, *, objective: str = vocab.DEFAULT_OBJECTIVE,
                 space: Sequence[str] | None = None) -> optuna.Study:
  """Writes the members as a fresh Optuna study, replacing any study of the same name.

  Args:
    records: the members.
    storage_url: any SQLAlchemy URL Optuna accepts (sqlite:///..., postgresql://...).
    study_name: the study's name in that storage.
    direction: "maximize" or "minimize"; inferred from `objective` when None.
    objective: the history key the trials report (also the study's metric name).
    space: the sweep's `--space` lines (declared distributions).

  Returns:
    The study (loaded from the storage).
  """
  direction = direction or objective_direction(objective)
  if storage_url.startswith("sqlite:///"):
    os.makedirs(os.path.dirname(os.path.abspath(storage_url[len("sqlite:///"):])), exist_ok=True)
  storage = optuna.storages.RDBStorage(storage_url)
  with _quiet_optuna():
    try:
      optuna.delete_study(study_name=study_name, storage=storage)
    except KeyError:
      pass  # no earlier export
    study = optuna.create_study(storage=storage, study_name=study_name, direction=direction)
  study.set_user_attr("objective", objective)
  with warnings.catch_warnings():   # set_metric_names is marked experimental in Optuna 4
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    study.set_metric_names([objective])
  study.add_trials(build_trials(records, objective, space))
  return study


def in_memory_study(records: Sequence[Record], objective: str = vocab.DEFAULT_OBJECTIVE) -> optuna.Study:
  """The same trials in an in-memory study (for importance without touching storage)."""
  with _quiet_optuna():
    study = optuna.create_study(direction=objective_direction(objective))
  study.add_trials(build_trials(records, objective))
  return study
