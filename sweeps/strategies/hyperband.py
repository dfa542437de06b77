"""Successive halving and Hyperband (Li et al., 2018), every bracket started at once.

Hyperband with maximum resource R (`--epochs`), minimum r_min (`--min_epochs`) and reduction
factor eta (`--eta`) runs brackets s = s_max .. 0, s_max = floor(log_eta(R / r_min)). Bracket s
starts n = ceil((s_max + 1) / (s + 1) * eta^s) configs at R / eta^s epochs; at each rung the top
floor(n_i / eta) by the objective go on to eta times the epochs, the rest are pruned, until R.
`--trials` caps the number of brackets (the most exploratory first). `successive_halving` is
one bracket: `--trials` configs from R / eta^s_max epochs up to R.

Why all brackets at once: the planner packs every bracket's members into buckets together, so
the device trains all of them side by side instead of idling through sequential brackets, and
promoted members stay in their chunk (compacted as the pruned leave). `sync_every` is the gcd of
all rung lengths, so every rung boundary of every bracket is a sync point and no member waits
for another bracket. Members of one rung start together and so reach its target together.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from sweeps import space as space_lib
from sweeps import vocab
from sweeps.strategies import common
from sweeps.strategies.base import Action, Extend, Report, Settings, Stop, Strategy, Trial
from sweeps.strategies.random_search import sample_configs


@dataclasses.dataclass
class Bracket:
  """One run of successive halving: the epochs of each rung and how many members reach it."""
  name: str
  rungs: list[int]          # epoch target of each rung; the last is R
  sizes: list[int]          # members that train up to each rung's target
  rung: int = 0             # the rung being trained now
  members: list[int] = dataclasses.field(default_factory=list)   # ids in the current rung


def max_bracket(max_epochs: int, min_epochs: int, eta: int) -> int:
  """s_max = floor(log_eta(R / r_min)), in integers (no float log rounding)."""
  s = 0
  while min_epochs * eta ** (s + 1) <= max_epochs:
    s += 1
  return s


def rung_epochs(max_epochs: int, eta: int, s: int) -> list[int]:
  """Epoch targets of a bracket with s halvings: R / eta^s, ..., R / eta, R (rounded half up)."""
  return [int(max_epochs / eta ** (s - i) + 0.5) for i in range(s + 1)]


def halving_sizes(first: int, eta: int, rungs: int) -> list[int]:
  """Members per rung: n, floor(n / eta), floor(n / eta^2), ... (at least one survives)."""
  sizes = [first]
  for _ in range(rungs - 1):
    sizes.append(max(1, sizes[-1] // eta))
  return sizes


def hyperband_brackets(max_epochs: int, min_epochs: int, eta: int,
                       max_brackets: int | None = None) -> list[Bracket]:
  """Hyperband's brackets, most exploratory first.

  Args:
    max_epochs: R, the epochs of a member that survives every rung.
    min_epochs: r_min, the fewest epochs any member trains.
    eta: the reduction factor (>= 2).
    max_brackets: keep only this many brackets (s_max, s_max - 1, ...); None keeps all.

  Returns:
    Brackets named "bracket<s>" with their rung epochs and sizes, e.g. R=9, r_min=1, eta=3:
    bracket2 [1, 3, 9] x [9, 3, 1], bracket1 [3, 9] x [5, 1], bracket0 [9] x [3].
  """
  s_max = max_bracket(max_epochs, min_epochs, eta)
  brackets = []
  for s in range(s_max, -1, -1):
    first = -(-(s_max + 1) * eta ** s // (s + 1))   # ceil((s_max + 1) / (s + 1) * eta^s)
    brackets.append(Bracket(f"bracket{s}", rung_epochs(max_epochs, eta, s),
                            halving_sizes(first, eta, s + 1)))
  return brackets[:max_brackets]


def successive_halving_bracket(max_epochs: int, min_epochs: int, eta: int,
                               configs: int) -> Bracket:
  """One bracket: `configs` members from R / eta^s_max epochs, the top 1/eta kept per rung."""
  s = max_bracket(max_epochs, min_epochs, eta)
  return Bracket("sh", rung_epochs(max_epochs, eta, s), halving_sizes(configs, eta, s + 1))


class HyperbandStrategy(Strategy):
  """Hyperband: brackets of successive halving with random configs, all started at once."""

  name = "hyperband"
  cannot_extend = "its brackets and rungs are computed from --trials and --epochs when it starts"

  def __init__(self, space: space_lib.Space, settings: Settings):
    super().__init__(space, settings)
    common.check_common(space, settings)
    common.require_int(settings, "trials", 1)
    common.require_int(settings, "eta", 2)
    common.require_int(settings, "min_epochs", 1)
    common.require(settings, "min_epochs", settings.min_epochs <= settings.epochs,
                   f"at most --epochs={settings.epochs}")
    common.forbid_searched_epochs(space, settings, self.name)
    self.brackets = self.make_brackets()
    configs = sample_configs(space, sum(b.sizes[0] for b in self.brackets), settings.seed)
    self.trials: list[Trial] = []
    for bracket in self.brackets:
      for _ in range(bracket.sizes[0]):
        member_id = len(self.trials)
        bracket.members.append(member_id)
        config = common.trial_config(configs[member_id], settings, settings.epochs)
        self.trials.append(Trial(member_id, config, bracket.rungs[0], group=bracket.name))
    self._sync_every = math.gcd(*(e for b in self.brackets for e in b.rungs))
    self.asked = False

  def make_brackets(self) -> list[Bracket]:
    s = self.settings
    return hyperband_brackets(s.epochs, s.min_epochs, s.eta, max_brackets=s.trials)

  def ask(self) -> list[Trial]:
    if self.asked:
      return []
    self.asked = True
    return list(self.trials)

  def sync_every(self) -> int | None:
    return self._sync_every

  def on_sync(self, reports: Mapping[int, Report]) -> list[Action]:
    actions: list[Action] = []
    for bracket in self.brackets:
      if bracket.rung + 1 < len(bracket.rungs):
        actions.extend(self._decide(bracket, reports))
    return actions

  def _decide(self, bracket: Bracket, reports: Mapping[int, Report]) -> list[Action]:
    """Promotes the top of a rung whose live members all reached its target; prunes the rest."""
    target = bracket.rungs[bracket.rung]
    live = [reports[i] for i in bracket.members if i in reports]
    if any(r.epochs_run < target for r in live):
      return []
    objective = self.settings.objective
    healthy = [r for r in live if not common.is_dead(r, objective)]
    ranked = sorted(healthy, key=lambda r: (-r.score(objective), r.member_id))
    keep = bracket.sizes[bracket.rung + 1]
    promoted, next_target = ranked[:keep], bracket.rungs[bracket.rung + 1]
    where = f"{bracket.name} rung {bracket.rung} ({target} epochs)"
    actions: list[Action] = []
    for rank, r in enumerate(ranked, start=1):
      best = common.oriented(r.score(objective), objective)
      standing = f"{where}: {objective} {best:.4g} ranks {rank}/{len(ranked)}"
      if rank <= keep:
        actions.append(Extend(r.member_id, next_target,
                              f"{standing}, top {keep} go on to {next_target} epochs"))
      else:
        actions.append(Stop(r.member_id, vocab.PRUNED, f"{standing}, only the top {keep} go on"))
    healthy_ids = {r.member_id for r in healthy}
    for r in live:
      if r.member_id not in healthy_ids:
        actions.append(Stop(r.member_id, vocab.PRUNED,
                            f"{where}: {objective} is not finite, never promoted"))
    bracket.members = [r.member_id for r in promoted]
    bracket.rung += 1
    return actions

  def done(self) -> bool:
    return self.asked

  def state_dict(self) -> dict[str, Any]:
    return {"asked": self.asked, "brackets": [dataclasses.asdict(b) for b in self.brackets]}

  def load_state_dict(self, state: Mapping[str, Any]) -> None:
    self.asked = bool(state["asked"])
    self.brackets = [Bracket(**b) for b in state["brackets"]]


class SuccessiveHalvingStrategy(HyperbandStrategy):
  """One bracket of successive halving: `settings.trials` configs, the top 1/eta kept per rung."""

  name = "successive_halving"

  def make_brackets(self) -> list[Bracket]:
    s = self.settings
    return [successive_halving_bracket(s.epochs, s.min_epochs, s.eta, s.trials)]
