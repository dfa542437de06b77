"""Helpers every strategy shares: settings checks, the config a trial carries, RNG state as JSON.

Kept apart from base.py so that the contract there stays short; nothing here is a strategy.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Mapping

import numpy as np

from jaxnn import member
from sweeps import space as space_lib
from sweeps import vocab
from sweeps.strategies.base import Report, Settings


@functools.cache
def static_fields() -> frozenset[str]:
  """Fields that change the compiled program: members that differ in one never share a bucket.

  jaxnn.member is the one source: its static defaults plus every model's architecture options.
  """
  return frozenset(member.STATIC_DEFAULTS) | frozenset(member.model_option_fields())




def require(settings: Settings, field: str, ok: bool, allowed: str) -> None:
  """Raises a one-line ValueError naming a bad settings field unless `ok`."""
  if not ok:
    raise ValueError(f"{field}: got {getattr(settings, field)!r}; allowed: {allowed}")


def require_option(settings: Settings, field: str) -> None:
  """Raises the option table's one-line ValueError (sweeps/config.py: the one place bounds are
  declared) unless the settings field is allowed there."""
  from sweeps import config as config_lib
  value = getattr(settings, field)
  if isinstance(value, np.integer):
    value = int(value)
  problem = config_lib.BY_NAME[field].problem(value)
  if problem:
    raise ValueError(problem.removeprefix("--"))


def check_common(space: space_lib.Space, settings: Settings) -> None:
  """What every strategy needs: a non-empty space, a known objective, a positive epoch budget."""
  if not space.params:
    raise space_lib.SpaceError("space: empty; declare at least one --space NAME=SPEC")
  require_option(settings, "objective")
  require_option(settings, "epochs")


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def require_int(settings: Settings, field: str, low: int | None = None) -> None:
  """The table's check of `field`, then a strategy's stricter lower bound if it has one (PBT
  needs two members to copy between)."""
  require_option(settings, field)
  if low is not None:
    value = getattr(settings, field)
    require(settings, field, _is_int(value) and value >= low, f"an integer >= {low}")


def trial_config(config: Mapping[str, Any], settings: Settings, epochs: int) -> dict[str, Any]:
  """The config a Trial carries: the sampled values plus `seed` and `epochs`.

  `seed` comes from --seed unless the space sets it, so changing --seed changes every init.
  `epochs` is the member's planned length (a schedule's horizon); for Hyperband that is the
  full budget R, not the current rung, so a promoted member continues the schedule it began.
  """
  return {**config, "seed": config.get("seed", settings.seed), "epochs": int(epochs)}


def planned_epochs(config: Mapping[str, Any], settings: Settings) -> int:
  """Epochs a one-shot trial trains: the space's `epochs` when it sets one, else --epochs."""
  epochs = config.get("epochs", settings.epochs)
  if not _is_int(epochs) or epochs < 1:
    raise space_lib.SpaceError(f"epochs: got {epochs!r}; allowed: an integer >= 1")
  return int(epochs)


def forbid_searched_epochs(space: space_lib.Space, settings: Settings, strategy: str) -> None:
  """Hyperband and PBT own every member's epoch budget, so the space may not search it."""
  for param in space.params:
    if param.name != "epochs":
      continue
    fixed = isinstance(param.dist, space_lib.Fixed) and param.condition is None
    if not fixed or param.dist.value != settings.epochs:
      raise space_lib.SpaceError(
          f"epochs: {strategy} sets each member's epochs itself (--epochs={settings.epochs} is "
          "the budget); remove epochs from the space")


def is_dead(report: Report, objective: str) -> bool:
  """A member that diverged or failed, or whose latest objective is missing or not finite."""
  last = report.last(objective)
  return report.status in vocab.FAILED_STATUSES or last is None or not math.isfinite(last)


def oriented(value: float, objective: str) -> float:
  """A metric value turned so that higher is better."""
  return vocab.oriented(value, objective)


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
  """A numpy Generator's state as plain JSON (PCG64 state is a dict of Python ints)."""
  return rng.bit_generator.state


def restore_rng(state: Mapping[str, Any]) -> np.random.Generator:
  rng = np.random.default_rng()
  rng.bit_generator.state = dict(state)
  return rng


def format_value(value: Any) -> str:
  """A short, exact value for variant names and reasons: 0.001, relu, 128x64, True."""
  if isinstance(value, (list, tuple)):
    return "x".join(format_value(v) for v in value)
  return str(value)   # floats: the shortest text that reads back exactly (0.001, 1e-05)


def int_keys(mapping: Mapping[str, Any]) -> dict[int, Any]:
  """JSON turns int keys into strings; this turns them back."""
  return {int(k): v for k, v in mapping.items()}
