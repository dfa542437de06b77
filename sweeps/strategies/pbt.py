"""Population-based training (Jaderberg et al., 2017) inside one bucket.

`--batch` members sampled from the space train side by side. Every `--pbt_interval` epochs the
bottom `--pbt_fraction` by the *latest* validation objective (a member's present, not its past
best) copy the weights and optimizer state of a random member of the top fraction (exploit) and
take its config with the continuous numeric hyperparameters perturbed by x0.8 or x1.2 (clipped
to their bounds), or resampled with a small probability (explore). Diverged members are never
parents and are replaced first.

A child must run the parent's compiled program, so everything static (model, widths, optimizer
family, batch size, ...) is copied unchanged and the space may not vary a static field at all:
the whole population is one bucket. Categorical numeric values are copied, not perturbed.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from sweeps import space as space_lib
from sweeps import vocab
from sweeps.strategies import common
from sweeps.strategies.base import Action, Exploit, Report, Settings, Strategy, Trial
from sweeps.strategies.random_search import sample_configs

PERTURB_FACTORS = (0.8, 1.2)
RESAMPLE_PROB = 0.2


def _show(value) -> str:
  if isinstance(value, (list, tuple)):
    return "x".join(_show(v) for v in value)
  return f"{value:.4g}"


def _distinct(values) -> int:
  return len({repr(v) for v in values})


def _dist_varies(dist, varying: set[str]) -> bool:
  if isinstance(dist, space_lib.Fixed):
    return False
  if isinstance(dist, space_lib.Choice):
    return _distinct(dist.values) > 1
  if isinstance(dist, (space_lib.Uniform, space_lib.IntRange)):
    return dist.low < dist.high
  if isinstance(dist, space_lib.PerLayer):
    return dist.depth in varying or _dist_varies(dist.inner, varying)
  return True


def varied_static_field(space: space_lib.Space) -> str | None:
  """The first static field whose value can differ between members of the space, or None.

  A parameter varies when its distribution has several values or when its condition depends on
  a parameter that varies (it is then present in some configs and absent in others).
  """
  varying: set[str] = set()
  for param in space.params:
    conditional = param.condition is not None and param.condition.name in varying
    if conditional or _dist_varies(param.dist, varying):
      varying.add(param.name)
  for param in space.params:
    if param.name in common.static_fields() and param.name in varying:
      return param.name
    # milestones are numbers, but their count is part of the program.
    if (param.name == "milestones" and isinstance(param.dist, space_lib.Choice)
        and _distinct(len(v) if isinstance(v, (list, tuple)) else 1 for v in param.dist.values) > 1):
      return param.name
  return None


class PBTStrategy(Strategy):
  """A population of `settings.batch` members; exploit and explore every `pbt_interval` epochs."""

  name = "pbt"
  cannot_extend = "its population (--batch) and exploit schedule (--epochs) are fixed when it starts"

  def __init__(self, space: space_lib.Space, settings: Settings):
    super().__init__(space, settings)
    common.check_common(space, settings)
    common.require_int(settings, "batch", 2)
    common.require_int(settings, "pbt_interval", 1)
    common.require(settings, "pbt_fraction", 0 < settings.pbt_fraction <= 0.5,
                   "a fraction in (0, 0.5]")
    common.forbid_searched_epochs(space, settings, self.name)
    static = varied_static_field(space)
    if static is not None:
      raise space_lib.SpaceError(
          f"{static}: pbt trains the whole population as one program, so a static field may not "
          "vary; fix it in the space or use another strategy")
    self.configs = {i: common.trial_config(c, settings, settings.epochs)
                    for i, c in enumerate(sample_configs(space, settings.batch, settings.seed))}
    # Its own stream, so exploit draws never shift the initial population's draws.
    self.rng = np.random.default_rng([settings.seed, 1])
    self.asked = False

  def ask(self) -> list[Trial]:
    if self.asked:
      return []
    self.asked = True
    return [Trial(i, dict(c), self.settings.epochs) for i, c in sorted(self.configs.items())]

  def sync_every(self) -> int | None:
    return self.settings.pbt_interval

  def on_sync(self, reports: Mapping[int, Report]) -> list[Action]:
    if len(reports) < 2:
      return []
    epoch = max(r.epochs_run for r in reports.values())
    if epoch >= self.settings.epochs:
      return []   # the end: nothing left to train with a new config
    objective = self.settings.objective
    ids = sorted(reports)
    count = max(1, int(self.settings.pbt_fraction * len(ids)))
    dead = [i for i in ids if common.is_dead(reports[i], objective)]
    healthy = sorted((i for i in ids if i not in dead),
                     key=lambda i: (-common.oriented(reports[i].last(objective), objective), i))
    top = healthy[:count]
    if not top:
      return []
    worst_first = [i for i in reversed(healthy) if i not in top]
    bottom = (dead + worst_first)[:max(count, len(dead))]
    actions: list[Action] = []
    for child in bottom:
      parent = top[int(self.rng.integers(len(top)))]
      config, changes = self._explore(self.configs[parent], self.configs[child])
      self.configs[child] = config
      standing = (vocab.DIVERGED if child in dead else
                  f"{objective} {reports[child].last(objective):.4g} in the bottom {count}")
      reason = (f"epoch {epoch}: {standing}; copies member {parent} "
                f"({objective} {reports[parent].last(objective):.4g})"
                + (f"; {', '.join(changes)}" if changes else ""))
      actions.append(Exploit(child, parent, config, reason))
    return actions

  def _explore(self, parent: Mapping[str, Any], child: Mapping[str, Any]):
    """The parent's config with its continuous numbers perturbed; the child keeps its seed."""
    config = {**parent, "seed": child["seed"], "epochs": child["epochs"]}
    changes = []
    for param in self.space.params:
      if param.name not in config:
        continue
      dist, old = param.dist, config[param.name]
      if isinstance(dist, space_lib.Uniform):
        config[param.name], how = self._perturb(dist, old)
      elif isinstance(dist, space_lib.PerLayer) and isinstance(dist.inner, space_lib.Uniform):
        drawn = [self._perturb(dist.inner, v) for v in old]
        config[param.name] = [v for v, _ in drawn]
        how = "resampled" if any(h == "resampled" for _, h in drawn) else "perturbed"
      else:
        continue
      changes.append(f"{param.name} {_show(old)} -> {_show(config[param.name])} ({how})")
    return config, changes

  def _perturb(self, dist: space_lib.Uniform, value: float) -> tuple[float, str]:
    if self.rng.random() < RESAMPLE_PROB:
      suggest = space_lib.RandomSuggest(self.rng)
      value, how = suggest.float("", dist.low, dist.high, dist.log, dist.step), "resampled"
    else:
      factor = PERTURB_FACTORS[int(self.rng.integers(len(PERTURB_FACTORS)))]
      value, how = min(max(float(value) * factor, dist.low), dist.high), f"x{factor}"
      if dist.step is not None:   # back onto the quniform grid, still inside the bounds
        value = min(max(dist.low + round((value - dist.low) / dist.step) * dist.step, dist.low),
                    dist.high)
    return space_lib.snap(dist, value), how

  def done(self) -> bool:
    return self.asked

  def state_dict(self) -> dict[str, Any]:
    return {"asked": self.asked, "configs": {str(i): c for i, c in self.configs.items()},
            "rng": common.rng_state(self.rng)}

  def load_state_dict(self, state: Mapping[str, Any]) -> None:
    self.asked = bool(state["asked"])
    self.configs = common.int_keys(state["configs"])
    self.rng = common.restore_rng(state["rng"])
