"""Ablation: a baseline plus one-factor-at-a-time variants, each repeated over several seeds.

The baseline takes every parameter at its first value (a fixed value, the first of a choice or
grid, the low end of an int or quniform range). Each other value of a parameter, with everything
else at the baseline, is a variant named "param=value". Factors named in `--cross` are crossed
with each other into a grid instead ("optimizer=adam,activation=relu"), the rest still vary one
at a time. Continuous ranges are refused: an ablation compares named values.

Every variant (the baseline included, group "baseline") is repeated over `--seeds` seeds,
config seed = --seed + k, so seed k of a variant pairs with seed k of the baseline. All trials are
asked at once: variants that differ only in numbers share a bucket and train side by side.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

from sweeps import space as space_lib
from sweeps import vocab
from sweeps.strategies import common
from sweeps.strategies.base import AllAtOnce, Settings, Trial

BASELINE = vocab.BASELINE


class _Pinned:
  """A Suggest that puts every parameter at its first value unless `overrides` names it.

  It records the values each parameter could have taken (`options`, in the space's own
  Optuna-safe keys), which is how the factors and their values are found.
  """

  def __init__(self, overrides: Mapping[str, Any]):
    self.overrides = overrides
    self.options: dict[str, list] = {}

  def _pick(self, name, values):
    self.options[name] = values
    return self.overrides.get(name, values[0])

  def categorical(self, name, values):
    unique = list({repr(v): v for v in values}.values())
    return self._pick(name, unique)

  def float(self, name, low, high, log, step):
    if step is None or log:
      raise space_lib.SpaceError(f"{name}: ablation needs discrete values, not a continuous "
                                 "range; use choice(...), grid(...) or quniform(...)")
    count = int((high - low) / step + 1e-9) + 1
    return self._pick(name, [low + i * step for i in range(count)])

  def int(self, name, low, high):
    return self._pick(name, list(range(low, high + 1)))


def _sample(space: space_lib.Space, overrides: Mapping[str, Any]):
  pinned = _Pinned(overrides)
  return space.sample(pinned), pinned.options


def _settings_of(param: space_lib.Param, options: Mapping[str, list], config) -> list[dict]:
  """Every way to set one parameter, as suggest overrides; [] when it is inactive."""
  if isinstance(param.dist, space_lib.PerLayer):
    if param.name not in config:
      return []
    names = [f"{param.name}_{i}" for i in range(len(config[param.name]))]
    return [dict(zip(names, combo)) for combo in itertools.product(*(options[n] for n in names))]
  if param.name not in options:
    return []
  return [{param.name: v} for v in options[param.name]]


def _display(param: space_lib.Param, config, override: Mapping[str, Any]) -> str:
  value = config.get(param.name, override.get(param.name))   # a depth helper leaves the config
  return f"{param.name}={common.format_value(value)}"


def _has_choices(dist) -> bool:
  if isinstance(dist, space_lib.Fixed):
    return False
  if isinstance(dist, space_lib.Choice):
    return len({repr(v) for v in dist.values}) > 1
  if isinstance(dist, (space_lib.Uniform, space_lib.IntRange)):
    return dist.low < dist.high
  return True


def ablation_variants(space: space_lib.Space, cross=()) -> list[tuple[str, dict[str, Any]]]:
  """The baseline, the crossed grid, then one-factor-at-a-time variants, as (name, config).

  Args:
    space: a space of discrete values.
    cross: names of parameters to cross with each other into a grid.

  Returns:
    [("baseline", config), ("a=1,b=x", config), ..., ("c=0.5", config), ...].

  Raises:
    SpaceError: a continuous range, a parameter inactive in the baseline that has several values
      and is not crossed, or an unknown name in `cross` (one line).
  """
  names = space.names()
  for name in cross:
    if name not in names:
      raise space_lib.SpaceError(f"cross: unknown parameter {name!r}; known: {', '.join(names)}")
  baseline, options = _sample(space, {})
  variants = [(BASELINE, baseline)]
  crossed = [p for p in space.params if p.name in cross]

  grids: list[dict[str, Any]] = [{}]
  for param in crossed:   # in space order, so a condition sees the crossed values before it
    grown = []
    for overrides in grids:
      config, opts = _sample(space, overrides)
      grown.extend({**overrides, **s} for s in _settings_of(param, opts, config) or [{}])
    grids = grown
  for overrides in grids:
    config, _ = _sample(space, overrides)
    if config == baseline:
      continue
    label = ",".join(_display(p, config, overrides) for p in crossed
                     if p.name in config or p.name in overrides)
    variants.append((label, config))

  for param in space.params:
    if param.name in cross:
      continue
    settings = _settings_of(param, options, baseline)
    if not settings:
      if _has_choices(param.dist):
        raise space_lib.SpaceError(
            f"{param.name}: inactive in the baseline ({param.condition.text()} is false there), "
            "so its values cannot be varied alone; cross it with what it depends on (--cross) "
            "or fix it")
      continue
    for overrides in settings[1:]:   # settings[0] is the baseline value
      config, _ = _sample(space, overrides)
      if config != baseline:
        variants.append((_display(param, config, overrides), config))
  return variants


class AblationStrategy(AllAtOnce):
  """The baseline and its variants, each over `settings.seeds` seeds, all asked at once."""

  name = "ablation"
  cannot_extend = "its variants and --seeds fix its members (--trials plays no part)"

  def __init__(self, space: space_lib.Space, settings: Settings):
    super().__init__(space, settings)
    common.check_common(space, settings)
    common.require_int(settings, "seeds", 1)
    if "seed" in space.names():
      raise space_lib.SpaceError("seed: ablation repeats every variant over --seeds seeds "
                                 "(from --seed); remove seed from the space")
    self.variants = ablation_variants(space, tuple(settings.cross))
    self.trials = []
    for group, config in self.variants:
      epochs = common.planned_epochs(config, settings)
      for k in range(settings.seeds):
        seeded = common.trial_config({**config, "seed": settings.seed + k}, settings, epochs)
        self.trials.append(Trial(len(self.trials), seeded, epochs, group=group))
    self.asked = False
