"""Bayesian optimization through Optuna's ask/tell, one batch of trials at a time.

A batch of `--batch` trials is asked at once (so the planner can fill a bucket) and the next
batch only after the whole previous one was told: the sampler then learns from every result
before it proposes again. TPE's constant liar (on by default in Optuna) keeps the members of
one batch apart instead of proposing the same point `--batch` times.

The space is sampled define-by-run through `OptunaSuggest`, so conditionals (momentum only for
SGD, one width per existing layer) reach Optuna as they are. The study is held in memory; its
pickle (sampler RNG included) is the resumable state, so a resumed sweep asks exactly what the
uninterrupted one would have.
"""

from __future__ import annotations

import base64
import importlib.util
import math
import pickle
import warnings
from typing import Any, Callable, Mapping

import optuna

from jaxnn.registry import Registry
from sweeps import space as space_lib
from sweeps import vocab
from sweeps.strategies import common
from sweeps.strategies.base import OBJECTIVES, Report, Settings, Strategy, Trial


class OptunaSuggest:
  """Draws a space's values from an Optuna trial (Choice values are already Optuna-safe keys)."""

  def __init__(self, trial: optuna.Trial):
    self.trial = trial

  def categorical(self, name, values):
    return self.trial.suggest_categorical(name, list(values))

  def float(self, name, low, high, log, step):
    if step is not None and not log:
      return self.trial.suggest_float(name, low, high, step=step)
    return self.trial.suggest_float(name, low, high, log=log)

  def int(self, name, low, high):
    return self.trial.suggest_int(name, low, high)


def _needs(package: str, sampler: str) -> None:
  if importlib.util.find_spec(package) is None:
    raise ValueError(f"sampler: {sampler} needs the {package!r} package (pip install {package}); "
                     "or use --sampler=tpe")


def _tpe(seed: int) -> optuna.samplers.BaseSampler:
  # multivariate models the parameters jointly; group splits conditional spaces into the
  # sub-spaces that actually co-occur (momentum only where the optimizer has one).
  return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)


def _gp(seed: int) -> optuna.samplers.BaseSampler:
  _needs("torch", "gp")
  _needs("scipy", "gp")
  return optuna.samplers.GPSampler(seed=seed)


def _cmaes(seed: int) -> optuna.samplers.BaseSampler:
  _needs("cmaes", "cmaes")
  # CMA-ES models numbers only; categoricals and conditionals go to a seeded TPE.
  return optuna.samplers.CmaEsSampler(seed=seed, independent_sampler=_tpe(seed),
                                      warn_independent_sampling=False)


SAMPLERS: Registry[Callable[[int], optuna.samplers.BaseSampler]] = Registry(
    "sampler", {"tpe": _tpe, "gp": _gp, "cmaes": _cmaes})


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
  """A seeded Optuna sampler by name.

  Raises:
    ValueError: unknown name, or a package the sampler needs is missing (one line).
  """
  factory = SAMPLERS.get(name)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    return factory(seed)


def tell_study(study: optuna.Study, optuna_trial: optuna.Trial, report: Report,
               objective: str) -> None:
  """Tells the study how a member ended: its per-epoch objective as intermediate values (1-based
  epochs), then pruned, failed (diverged, failed, or nothing finite), or its best value (a member
  stopped early counts with its best epoch), in the objective's raw units."""
  for epoch, value in enumerate(report.history.get(objective, []), start=1):
    if value is not None and math.isfinite(value):
      optuna_trial.report(float(value), epoch)
  best = report.score(objective)
  if report.status == vocab.PRUNED:
    study.tell(optuna_trial, state=optuna.trial.TrialState.PRUNED)
  elif report.status in vocab.FAILED_STATUSES or not math.isfinite(best):
    study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)
  else:
    study.tell(optuna_trial, common.oriented(best, objective))


class BayesStrategy(Strategy):
  """`settings.trials` trials in batches of `settings.batch`, proposed by an Optuna sampler."""

  name = "bayes"
  # More --trials on resume: the restored study (sampler state included) proposes the next ones.
  extends = ("trials",)
  cannot_extend = ("its study was told every trial's result at the old budget; start a new "
                   "--workdir for more epochs")

  def __init__(self, space: space_lib.Space, settings: Settings):
    super().__init__(space, settings)
    common.check_common(space, settings)
    common.require_int(settings, "trials", 1)
    common.require_int(settings, "batch", 1)
    # Optuna's per-trial INFO lines would interleave with the sweep's own progress display.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    self.study = optuna.create_study(
        study_name=f"bayes-{settings.sampler}-seed{settings.seed}",
        direction=OBJECTIVES[settings.objective],
        sampler=make_sampler(settings.sampler, settings.seed))
    self.running: dict[int, optuna.Trial] = {}   # member_id -> its open Optuna trial
    self.next_id = 0

  def ask(self) -> list[Trial]:
    if self.running or self.done():
      return []
    count = min(self.settings.batch, self.settings.trials - self.next_id)
    trials = []
    for _ in range(count):
      optuna_trial = self.study.ask()
      config = self.space.sample(OptunaSuggest(optuna_trial))
      epochs = common.planned_epochs(config, self.settings)
      config = common.trial_config(config, self.settings, epochs)
      optuna_trial.set_user_attr("member_id", self.next_id)
      optuna_trial.set_user_attr("config", config)
      self.running[self.next_id] = optuna_trial
      trials.append(Trial(self.next_id, config, epochs))
      self.next_id += 1
    return trials

  def tell(self, report: Report) -> None:
    optuna_trial = self.running.pop(report.member_id, None)
    if optuna_trial is None:
      raise ValueError(f"member_id: {report.member_id} is not a running trial of this study")
    tell_study(self.study, optuna_trial, report, self.settings.objective)

  def done(self) -> bool:
    return self.next_id >= self.settings.trials

  def state_dict(self) -> dict[str, Any]:
    blob = pickle.dumps((self.study, self.running))
    return {"next_id": self.next_id, "study": base64.b64encode(blob).decode("ascii")}

  def load_state_dict(self, state: Mapping[str, Any]) -> None:
    # Only a state this program wrote (the sweep's own checkpoint) is ever unpickled here.
    self.study, self.running = pickle.loads(base64.b64decode(state["study"]))
    self.next_id = int(state["next_id"])
