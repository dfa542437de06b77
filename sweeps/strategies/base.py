"""The contract between a strategy (what to train, for how long) and the sweep loop (how).

The loop (sweeps/run.py) repeats:
  1. `ask()` -> new Trials; the loop plans them into buckets and starts them.
  2. It trains every live member epoch by epoch until a *sync point*: every live member has
     reached its epoch target, or `sync_every()` epochs have passed since the last sync (PBT).
     Per-member early stopping and divergence happen inside this phase (the loop's job).
  3. `on_sync(reports)` with a report of every member that is still live -> Actions:
     Stop (prune), Extend (raise the epoch target: a promotion), Exploit (PBT: copy a parent's
     weights and optimizer state, take a new config whose static part equals the parent's).
  4. Members at their target that were not extended are finished: status 'complete'.
     Every finished member (complete, stopped, pruned, diverged, failed) goes to `tell()`.
The sweep ends when `done()` is true and nothing is live.

Strategies are seeded and deterministic: the same settings and the same reports give the same
trials and actions. `state_dict()`/`load_state_dict()` carry everything needed to resume.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Mapping, Sequence

from sweeps import vocab
from sweeps.space import Space
from sweeps.vocab import OBJECTIVES  # noqa: F401  (the metric a strategy ranks by; re-exported)


@dataclasses.dataclass
class Trial:
  """A member to start: a flat config (jaxnn.member fields) and its epoch target."""
  member_id: int
  config: dict[str, Any]
  epochs: int
  group: str | None = None   # ablation variant / bracket name, shown in reports


@dataclasses.dataclass
class Report:
  """What the loop tells a strategy about one member."""
  member_id: int
  config: dict[str, Any]
  epochs_run: int
  history: Mapping[str, Sequence[float]]   # per-epoch train/val loss and acc, lr
  status: str                               # running | complete | stopped | pruned | diverged | failed

  def score(self, objective: str) -> float:
    """The objective's best value so far, oriented so that higher is better (-inf if none)."""
    values = [v for v in self.history.get(objective, []) if v is not None and v == v]
    if not values:
      return float("-inf")
    return vocab.oriented(vocab.best(values, objective), objective)

  def last(self, metric: str) -> float | None:
    values = self.history.get(metric, [])
    return values[-1] if values else None


@dataclasses.dataclass(frozen=True)
class Stop:
  member_id: int
  status: str = vocab.PRUNED
  reason: str = ""


@dataclasses.dataclass(frozen=True)
class Extend:
  member_id: int
  epochs: int          # the new (total) epoch target
  reason: str = ""


@dataclasses.dataclass(frozen=True)
class Exploit:
  member_id: int       # the member that is replaced (keeps its id and seed)
  parent_id: int       # whose weights and optimizer state it copies
  config: dict[str, Any]   # its new config (numeric hyperparameters perturbed)
  reason: str = ""


Action = Stop | Extend | Exploit


@dataclasses.dataclass(frozen=True)
class Settings:
  """What every strategy may read (from flags)."""
  trials: int = 20             # budget: number of configs (random/bayes), brackets cap (hyperband)
  epochs: int = 10             # epochs per trial (max resource for hyperband/PBT)
  objective: str = vocab.DEFAULT_OBJECTIVE
  seed: int = 0
  batch: int = 16              # members asked at once (bayes), population size (PBT)
  eta: int = 3                 # successive halving / Hyperband reduction factor
  min_epochs: int = 1          # smallest resource (Hyperband)
  pbt_interval: int = 2        # epochs between PBT exploit steps
  pbt_fraction: float = 0.25   # bottom fraction replaced by the top fraction
  sampler: str = "tpe"         # bayes: tpe | gp | cmaes
  seeds: int = 3               # ablation: repeats per variant
  cross: tuple[str, ...] = ()  # ablation: factors crossed into a grid (the rest one at a time)
  member_id_offset: int = 0    # grid: first member id (best.flags: a member alone, same draws)
  study_storage: str | None = None   # shared study (bayes/random): an SQLAlchemy URL
  study_name: str | None = None      # set: workers with this name share one study (shared.py)


class Strategy(abc.ABC):
  """Decides which configs to train, for how long, and what to do with results."""

  name: str = "base"
  # What a resume may grow (sweeps.cli.check_resume): "trials" (asks the next ones) and/or
  # "epochs" (members that finished the old budget continue from their final state). Anything
  # else is refused, with the reason below.
  extends: tuple[str, ...] = ()
  cannot_extend: str = "its plan is fixed when it starts"

  def __init__(self, space: Space, settings: Settings):
    self.space = space
    self.settings = settings

  @abc.abstractmethod
  def ask(self) -> list[Trial]:
    """New members to start now (empty while waiting for results)."""

  def sync_every(self) -> int | None:
    """Epochs between forced sync points (None: only when every live member is at its target)."""
    return None

  def on_sync(self, reports: Mapping[int, Report]) -> list[Action]:
    """Decisions about the live members; default: none."""
    del reports
    return []

  def tell(self, report: Report) -> None:
    """A member finished; default: nothing to learn."""
    del report

  @abc.abstractmethod
  def done(self) -> bool:
    """True when the strategy will ask for nothing more."""

  def state_dict(self) -> dict[str, Any]:
    """JSON-serializable state, enough to resume."""
    return {}

  def load_state_dict(self, state: Mapping[str, Any]) -> None:
    del state


class AllAtOnce(Strategy):
  """A strategy whose trials are known up front (grid, random, ablation): it asks for all of
  them at once, so members that share a program share one bucket, and learns nothing from
  results. Subclasses fill `self.trials` in __init__. A resume with more trials (random)
  asks the ones not asked yet."""

  trials: list[Trial]
  asked: bool = False
  n_asked: int = 0
  extends = ("epochs",)

  def ask(self) -> list[Trial]:
    new = self.trials[self.n_asked:]
    self.asked, self.n_asked = True, len(self.trials)
    return list(new)

  def done(self) -> bool:
    return self.asked and self.n_asked >= len(self.trials)

  def state_dict(self) -> dict[str, Any]:
    return {"asked": self.asked, "n_asked": self.n_asked}

  def load_state_dict(self, state: Mapping[str, Any]) -> None:
    self.asked = bool(state["asked"])
    self.n_asked = int(state.get("n_asked", len(self.trials) if self.asked else 0))
