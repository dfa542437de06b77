"""A stub trainer, so strategies run through the REAL sweep loop without training anything.

`SweepLoop(strategy, stub_dataset(), trainer=StubTrainer())` plans, initializes chunks, keeps
slots, retires, compacts, early-stops, applies PBT exploits and Hyperband rungs and checkpoints
exactly as in a real sweep; only the trainer (`jaxnn.population` in a sweep) is replaced. Its
population state is a real `MemberState` whose only parameter is each member's "progress":
every epoch a member trains adds `speed(config)`, and its validation accuracy is
`accuracy(config, progress)`, a smooth function of the config the trainer reads the way the real
one does (the numbers from the member's row of hyperparameters, the program's choices from the
bucket spec). An exploit copies the parent's progress, as copying weights would. A member with
lr above DIVERGE_LR diverges in its second epoch (frozen, no metrics for that epoch).

`Observed` wraps a strategy and writes down, at its interface, every ask, sync and tell the loop
makes, checking each action against the reports it answers; before a chosen call (or every
call) it swaps the strategy for a fresh one rebuilt from a JSON round trip of `state_dict()`:
a resume of the strategy from a checkpoint taken at that point.
"""

from __future__ import annotations

import json
import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxnn import member as member_lib
from jaxnn import population
from jaxnn.data.containers import Dataset, Split
from sweeps import vocab
from sweeps.strategies import common, make_strategy
from sweeps.strategies.base import Exploit, Extend, Stop, Strategy

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


def accuracy(config: dict[str, Any], progress: float) -> float:
  return 0.1 + 0.85 * quality(config) * (1.0 - math.exp(-progress))


def stub_dataset(n_train: int = 128, n_val: int = 8, n_test: int = 8) -> Dataset:
  """A tiny data set the stub never reads (the loop plans and places it as a real one). Its
  shape (5 features) is used by no other test, so its program keys stay its own."""
  rng = np.random.default_rng(0)

  def split(n):
    return Split(rng.normal(size=(n, 5)).astype(np.float32), np.arange(n, dtype=np.int32) % 2)

  return Dataset("stub", split(n_train), split(n_val), split(n_test), 2, ("0", "1"),
                 np.zeros(5, np.float32), np.ones(5, np.float32))


def member_configs(spec, hparams) -> list[dict[str, Any]]:
  """What the stub reads of each slot's config: numbers from its row, choices from the spec."""
  rows = {k: np.asarray(v) for k, v in hparams.items()}
  choices = member_lib.mlp_choices(spec) if spec.model == "mlp" else (None,)
  configs = []
  for i in range(rows["lr"].shape[0]):
    dropout = rows["dropout"][i]
    act = rows["act_index"][i] if "act_index" in rows else np.zeros(1)
    configs.append({
        "lr": float(rows["lr"][i]), "optimizer": spec.optimizer,
        "dropout": float(dropout[0]) if np.ndim(dropout) and np.size(dropout) else float(
            np.sum(dropout)),
        "activation": choices[int(act[0]) if np.size(act) else 0]})
  return configs


class StubTrainer:
  """`jaxnn.population`'s init / run_epoch / evaluate, with metrics from `accuracy`."""

  def __init__(self):
    self.epochs_run = 0   # slot-epochs the loop asked for (a cost figure for tests)

  def init(self, spec, hparams, data) -> population.MemberState:
    del spec, data
    n = hparams["member_id"].shape[0]
    return population.MemberState(
        params={"progress": jnp.zeros(n, jnp.float32)}, batch_stats={},
        opt_state={"count": jnp.zeros(n, jnp.int32)}, step=jnp.zeros(n, jnp.int32),
        epoch=jnp.zeros(n, jnp.int32), active=jnp.ones(n, bool), diverged=jnp.zeros(n, bool))

  def run_epoch(self, spec, state, hparams, data, vectorize="vmap", block=None,
                retryable=False):
    del data, vectorize, block, retryable
    configs = member_configs(spec, hparams)
    active = np.asarray(state.active)
    self.epochs_run += int(active.sum())
    epoch = np.asarray(state.epoch)
    lr = np.array([c["lr"] for c in configs])
    diverge = active & (lr > DIVERGE_LR) & (epoch >= 1)
    train = active & ~diverge
    progress = np.asarray(state.params["progress"], np.float64) + np.where(
        train, [speed(c) for c in configs], 0.0)
    progress = progress.astype(np.float32)
    acc = np.array([accuracy(c, float(p)) for c, p in zip(configs, progress)], np.float32)
    nan = np.float32("nan")
    state = state.replace(
        params={"progress": jnp.asarray(progress)},
        opt_state={"count": state.opt_state["count"] + jnp.asarray(train, jnp.int32)},
        step=state.step + jnp.asarray(train, jnp.int32),
        epoch=state.epoch + jnp.asarray(active, jnp.int32),
        active=jnp.asarray(active & ~diverge), diverged=state.diverged | jnp.asarray(diverge))
    train_acc = np.minimum(1.0, acc + 0.02).astype(np.float32)
    metrics = {"val_acc": np.where(diverge, nan, acc), "val_loss": np.where(diverge, nan, -np.log(acc)),
               "train_acc": train_acc, "train_loss": -np.log(train_acc), "lr": lr.astype(np.float32)}
    return state, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

  def evaluate(self, spec, state, hparams, x, y, mean, std):
    del x, y, mean, std
    acc = np.array([accuracy(c, float(p)) for c, p in zip(
        member_configs(spec, hparams), np.asarray(state.params["progress"]))], np.float32)
    return jnp.asarray(-np.log(acc)), jnp.asarray(acc)


def rebuilt(strategy: Strategy) -> Strategy:
  """A fresh strategy of the same kind, resumed from a JSON round trip of `state_dict()`."""
  fresh = make_strategy(strategy.name, strategy.space, strategy.settings)
  fresh.load_state_dict(json.loads(json.dumps(strategy.state_dict())))
  return fresh


class Observed:
  """A strategy as the loop sees it, observed: `log` lists every ask, action and tell in order.

  rebuild_at: the call (counting ask, done, sync_every, on_sync, tell) before which the strategy
  is rebuilt from its state (`rebuilt`); "every": before each call.
  """

  def __init__(self, strategy: Strategy, rebuild_at: int | str | None = None):
    self.strategy = strategy
    self.rebuild_at = rebuild_at
    self.calls = 0
    self.log: list[tuple] = []
    self.asks: list[int] = []        # sizes of non-empty asks
    self.syncs: list[dict] = []      # per on_sync: {"epochs"/"statuses": {id: ...}, "actions"}
    self.told: set[int] = set()
    self.configs: dict[int, dict] = {}   # each member's config as the strategy last gave it

  def __getattr__(self, name):   # name, space, settings, extends, ...
    return getattr(self.strategy, name)

  def _call(self, method: str, *args):
    if self.rebuild_at == "every" or self.calls == self.rebuild_at:
      self.strategy = rebuilt(self.strategy)
    self.calls += 1
    return getattr(self.strategy, method)(*args)

  def state_dict(self):
    return self.strategy.state_dict()

  def load_state_dict(self, state):
    self.strategy.load_state_dict(state)

  def ask(self):
    trials = self._call("ask")
    for t in trials:
      assert t.member_id == len(self.configs), "member ids are sequential from 0"
      assert t.epochs >= 1
      self.configs[t.member_id] = dict(t.config)
      self.log.append(("ask", t.member_id, json.dumps(t.config, sort_keys=True), t.epochs,
                       t.group))
    if trials:
      self.asks.append(len(trials))
    return trials

  def done(self):
    return self._call("done")

  def sync_every(self):
    return self._call("sync_every")

  def on_sync(self, reports):
    actions = self._call("on_sync", reports)
    self.syncs.append({"epochs": {i: r.epochs_run for i, r in reports.items()},
                       "statuses": {i: r.status for i, r in reports.items()},
                       "actions": list(actions)})
    for action in actions:
      self._check(action, reports)
      self.log.append(("action", repr(action)))
    for action in actions:
      if isinstance(action, Exploit):
        self.configs[action.member_id] = dict(action.config)
    return actions

  def _check(self, action, reports) -> None:
    report = reports[action.member_id]
    assert action.reason, f"every action carries a reason: {action}"
    if isinstance(action, (Stop, Extend)):
      assert report.status == vocab.RUNNING, f"action on a member that is not live: {action}"
    if isinstance(action, Extend):
      assert action.epochs > report.epochs_run, action
    elif isinstance(action, Exploit):
      parent = reports[action.parent_id]
      assert parent.status == vocab.RUNNING and action.parent_id != action.member_id
      parent_config = self.configs[action.parent_id]
      for field in common.static_fields():
        assert action.config.get(field) == parent_config.get(field), (field, action)
      assert action.config["seed"] == self.configs[action.member_id]["seed"], "keeps its seed"
    else:
      assert isinstance(action, Stop), action

  def tell(self, report):
    assert report.member_id not in self.told, f"member {report.member_id} told twice"
    self.told.add(report.member_id)
    self.log.append(("tell", report.member_id, report.status, report.epochs_run))
    return self._call("tell", report)
