"""Random search: `--trials` configs drawn independently from the space, all asked at once.

Draws come from one numpy Generator seeded by `--seed`, so the same flags give the same configs.
Nothing is learned from results, so there is no reason to hold any trial back: asking them all
at once lets the planner pack the ones that share a program.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sweeps import space as space_lib
from sweeps.strategies import common
from sweeps.strategies.base import AllAtOnce, Settings, Trial


def sample_configs(space: space_lib.Space, count: int, seed: int) -> list[dict[str, Any]]:
  """`count` independent configs from one Generator seeded by `seed` (reproducible).

  Args:
    space: the search space.
    count: how many configs.
    seed: the Generator's seed.

  Returns:
    The configs, in draw order.
  """
  suggest = space_lib.RandomSuggest(np.random.default_rng(seed))
  return [space.sample(suggest) for _ in range(count)]


class RandomStrategy(AllAtOnce):
  """`settings.trials` random configs, each trained for its planned epochs."""

  name = "random"
  # More --trials on resume: the first draws of one seeded stream are the same whatever the
  # count, so the new members are the next samples of the same stream.
  extends = ("trials", "epochs")

  def __init__(self, space: space_lib.Space, settings: Settings):
    super().__init__(space, settings)
    common.check_common(space, settings)
    common.require_int(settings, "trials", 1)
    self.trials = []
    for member_id, config in enumerate(sample_configs(space, settings.trials, settings.seed)):
      epochs = common.planned_epochs(config, settings)
      self.trials.append(Trial(member_id, common.trial_config(config, settings, epochs), epochs))
    self.asked = False
