"""A deterministic stand-in for the sweep loop, to test strategies without training anything.

`FakeLoop` drives a strategy exactly as sweeps/strategies/base.py describes (ask, train to a sync
point, on_sync, apply actions, tell the finished) with a fake trainer: a member's validation
accuracy is a smooth function of its config and of its "progress" (epochs weighted by a speed
that grows with lr). Exploit copies the parent's progress, as copying weights would. A member
with lr above DIVERGE_LR diverges in its second epoch.

Every call into the strategy goes through one place, so a test can swap the strategy for a fresh
one rebuilt from a JSON round trip of its `state_dict()` before any call: that is a resume from a
checkpoint taken at that point.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from sweeps.strategies import common, make_strategy
from sweeps.strategies.base import Exploit, Extend, Report, Stop, Strategy

DIVERGE_LR = 0.5
OPTIMIZER_QUALITY = {"adam": 1.0, "momentum": 0.95, "sgd": 0.85}
ACTIVATION_QUALITY = {"relu": 1.0, "gelu": 0.98, "tanh": 0.9}


def quality(config: dict[str, Any]) -> float:
  """The accuracy a config approaches: best near lr = 0.01, dropout costs a little."""
  lr = config.get("lr", 0.01)
  q = math.exp(-0.5 * (math.log10(lr) + 2.0) ** 2) if lr > 0 else 0.0
  q *= 1.0 - 0.3 * config.get("dropout", 0.0)
  q *= OPTIMIZER_QUALITY.get(config.get("optimizer", "sgd"), 0.9)
  q *= ACTIVATION_QUALITY.get(config.get("activation", "relu"), 0.95)
  return q


def speed(config: dict[str, Any]) -> float:
  return 0.2 + min(5.0 * config.get("lr", 0.01), 1.0)


@dataclasses.dataclass
class FakeMember:
  member_id: int
  config: dict[str, Any]
  target: int
  group: str | None
  epochs_run: int = 0
  progress: float = 0.0
  status: str = "running"
  history: dict[str, list] = dataclasses.field(
      default_factory=lambda: {k: [] for k in ("train_loss", "train_acc", "val_loss", "val_acc",
                                               "lr")})

  def train_epoch(self) -> None:
    if self.config.get("lr", 0.01) > DIVERGE_LR and self.epochs_run >= 1:
      self.status = "diverged"   # like the real loop: no metrics for the diverged epoch
      return
    self.epochs_run += 1
    self.progress += speed(self.config)
    acc = 0.1 + 0.85 * quality(self.config) * (1.0 - math.exp(-self.progress))
    self.history["val_acc"].append(acc)
    self.history["val_loss"].append(-math.log(acc))
    self.history["train_acc"].append(min(1.0, acc + 0.02))
    self.history["train_loss"].append(-math.log(min(1.0, acc + 0.02)))
    self.history["lr"].append(self.config.get("lr", 0.01))

  def report(self) -> Report:
    return Report(self.member_id, dict(self.config), self.epochs_run,
                  {k: list(v) for k, v in self.history.items()}, self.status)


def rebuilt(strategy: Strategy) -> Strategy:
  """A fresh strategy of the same kind, resumed from a JSON round trip of `state_dict()`."""
  fresh = make_strategy(strategy.name, strategy.space, strategy.settings)
  fresh.load_state_dict(json.loads(json.dumps(strategy.state_dict())))
  return fresh


class FakeLoop:
  """Runs a strategy to the end; `log` lists every ask, action and tell in order."""

  def __init__(self, strategy: Strategy, rebuild_at: int | None = None, max_cycles: int = 500):
    self.strategy = strategy
    self.rebuild_at = rebuild_at
    self.max_cycles = max_cycles
    self.calls = 0
    self.members: dict[int, FakeMember] = {}
    self.told: set[int] = set()
    self.log: list[tuple] = []
    self.asks: list[int] = []        # sizes of non-empty asks
    self.syncs: list[dict] = []      # per on_sync: {"epochs": {id: epochs_run}, "actions": [...]}

  def _call(self, method: str, *args):
    if self.calls == self.rebuild_at:
      self.strategy = rebuilt(self.strategy)
    self.calls += 1
    return getattr(self.strategy, method)(*args)

  def running(self) -> list[FakeMember]:
    return [m for m in self.members.values() if m.status == "running"]

  def run(self) -> "FakeLoop":
    for _ in range(self.max_cycles):
      trials = self._call("ask")
      for t in trials:
        assert t.member_id == len(self.members), "member ids are sequential from 0"
        assert t.epochs >= 1
        self.members[t.member_id] = FakeMember(t.member_id, dict(t.config), t.epochs, t.group)
        self.log.append(("ask", t.member_id, json.dumps(t.config, sort_keys=True), t.epochs,
                         t.group))
      if trials:
        self.asks.append(len(trials))
      if not self.running():
        if self._call("done"):
          return self
        assert trials, f"{self.strategy.name}: asked nothing while nothing runs and not done"
        continue
      self._train(self._call("sync_every"))
      reports = {m.member_id: m.report() for m in self.running()}
      actions = self._call("on_sync", reports)
      self.syncs.append({"epochs": {i: r.epochs_run for i, r in reports.items()},
                         "actions": list(actions)})
      for action in actions:
        self._apply(action)
      for m in self.running():
        if m.epochs_run >= m.target:
          m.status = "complete"
      for member_id in sorted(self.members):
        m = self.members[member_id]
        if m.status != "running" and member_id not in self.told:
          self.told.add(member_id)
          self._call("tell", m.report())
          self.log.append(("tell", member_id, m.status, m.epochs_run))
    raise AssertionError(f"{self.strategy.name}: not done after {self.max_cycles} cycles")

  def _train(self, sync_every: int | None) -> None:
    """Like sweeps/run.py: sync points are multiples of sync_every, or every target reached."""
    sync_at = None
    if sync_every:
      done = min(m.epochs_run for m in self.running())
      sync_at = (done // sync_every + 1) * sync_every
    for m in self.running():
      limit = m.target if sync_at is None else min(m.target, sync_at)
      while m.status == "running" and m.epochs_run < limit:
        m.train_epoch()

  def _apply(self, action) -> None:
    m = self.members[action.member_id]
    assert m.status == "running", f"action on a member that is not live: {action}"
    assert action.reason, f"every action carries a reason: {action}"
    if isinstance(action, Stop):
      m.status = action.status
    elif isinstance(action, Extend):
      assert action.epochs > m.epochs_run, action
      m.target = action.epochs
    elif isinstance(action, Exploit):
      parent = self.members[action.parent_id]
      assert parent.status == "running" and parent.member_id != m.member_id
      for field in common.static_fields():
        assert action.config.get(field) == parent.config.get(field), (field, action)
      assert action.config["seed"] == m.config["seed"], "a child keeps its seed"
      m.config = dict(action.config)
      m.progress = parent.progress
    else:
      raise TypeError(action)
    self.log.append(("action", repr(action)))
