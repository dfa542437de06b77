"""Strategies by name: what `--strategy` accepts.

Every entry is a factory `(space, settings) -> Strategy`; see base.py for the contract between a
strategy and the sweep loop.
"""

from __future__ import annotations

from typing import Callable

from jaxnn.registry import Registry
from sweeps.space import Space
from sweeps.strategies.ablation import AblationStrategy
from sweeps.strategies.base import Settings, Strategy
from sweeps.strategies.bayes import BayesStrategy
from sweeps.strategies.grid import GridStrategy
from sweeps.strategies.hyperband import HyperbandStrategy, SuccessiveHalvingStrategy
from sweeps.strategies.pbt import PBTStrategy
from sweeps.strategies.random_search import RandomStrategy
from sweeps.strategies.shared import SharedStudyStrategy

SHARED = ("bayes", "random")   # strategies that can share one study between workers

STRATEGIES: Registry[Callable[[Space, Settings], Strategy]] = Registry("strategy", {
    "grid": GridStrategy,
    "random": RandomStrategy,
    "bayes": BayesStrategy,
    "hyperband": HyperbandStrategy,
    "successive_halving": SuccessiveHalvingStrategy,
    "pbt": PBTStrategy,
    "ablation": AblationStrategy,
})


def make_strategy(name: str, space: Space, settings: Settings) -> Strategy:
  """Builds a strategy by name.

  Args:
    name: a key of STRATEGIES.
    space: the search space.
    settings: budget and strategy settings (from flags).

  Returns:
    A fresh strategy; nothing asked yet.

  Raises:
    ValueError: an unknown name, bad settings, or a space the strategy cannot use (one line).
  """
  if settings.study_name:   # many workers, one study in a shared storage
    if name not in SHARED:
      raise ValueError(f"--study_name: a shared study works with --strategy={' or '.join(SHARED)}"
                       f", not {name}")
    return SharedStudyStrategy(space, settings, name)
  return STRATEGIES.get(name)(space, settings)
