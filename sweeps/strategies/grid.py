"""Grid search: every point of the space's grid, once, all asked at once.

Asking everything at once lets the planner pack points that share a program into one bucket.
Seeds are not repeated here: a grid over seeds is one more axis (`--space=seed=grid(0, 1, 2)`),
and repeats-with-statistics is what the ablation strategy is for.
"""

from __future__ import annotations

from typing import Any

from sweeps import space as space_lib
from sweeps.strategies import common
from sweeps.strategies.base import AllAtOnce, Settings, Trial


class GridStrategy(AllAtOnce):
  """Every combination of the space's discrete axes, each trained for its planned epochs."""

  name = "grid"
  cannot_extend = ("it trains every point of its space once (--trials plays no part); to grow "
                   "it, add values to an axis in a new --workdir")

  def __init__(self, space: space_lib.Space, settings: Settings):
    super().__init__(space, settings)
    common.check_common(space, settings)
    self.configs = space.grid()
    if not self.configs:
      raise space_lib.SpaceError("space: the grid is empty; every axis needs at least one value")
    common.require_int(settings, "member_id_offset", 0)
    # Ids (hence random draws) start at the offset: best.flags replays one member of a sweep.
    self.trials = [self._trial(settings.member_id_offset + i, c)   # checks epochs now
                   for i, c in enumerate(self.configs)]
    self.asked = False

  def _trial(self, member_id: int, config: dict[str, Any]) -> Trial:
    epochs = common.planned_epochs(config, self.settings)
    return Trial(member_id, common.trial_config(config, self.settings, epochs), epochs)
