"""Strategies against the base.py contract, driven by the REAL sweep loop (sweeps/run.py) with a
stub trainer (tests/stub_trainer.py): a member's metrics are a known function of its config.

Every registered strategy runs to the end through the loop's planning, chunks, retirement,
Hyperband rungs, PBT exploits and checkpoints; it is deterministic, and resumes from a JSON round
trip of its state at call boundaries (every call at once, and single calls spread over the run)
with the same asks, actions and tells as an uninterrupted run; the whole loop resumes from its
checkpoint state to the same records. Then each strategy's own promises, with counts from their
formulas.
"""

import functools
import importlib.util
import json
import re

import jax
import optuna
import pytest

from stub_trainer import Observed, StubTrainer, rebuilt, stub_dataset
from sweeps import space as space_lib
from sweeps import vocab
from sweeps.run import EarlyStopping, SweepLoop
from sweeps.strategies import STRATEGIES, common, make_strategy
from sweeps.strategies import ablation as ablation_lib
from sweeps.strategies import hyperband as hb
from sweeps.strategies import pbt as pbt_lib
from sweeps.strategies.base import Exploit, Extend, Report, Settings, Stop

MIXED = ["optimizer=choice(sgd, momentum, adam)",
         "momentum=uniform(0.5, 0.99) if optimizer == momentum",
         "lr=loguniform(1e-4, 1.0)",
         "dropout=choice(0.0, 0.2, 0.5)"]
GRID = ["optimizer=grid(sgd, momentum, adam)",
        "momentum=grid(0.9, 0.5) if optimizer == momentum",
        "lr=grid(0.1, 0.01, 0.9)",
        "depth=int(1, 2)",
        "widths=per_layer(depth, choice(64, 128))"]
HYPERBAND = ["optimizer=choice(sgd, adam)", "lr=loguniform(1e-4, 0.3)", "dropout=uniform(0, 0.5)"]
PBT = ["optimizer=momentum", "widths=[64, 32]", "lr=loguniform(1e-3, 0.4)",
       "momentum=uniform(0.5, 0.99)", "l2=choice(1e-5, 1e-4)", "dropout=quniform(0, 0.5, 0.1)"]
ABLATION = ["optimizer=choice(sgd, momentum, adam)",
            "momentum=choice(0.9, 0.5) if optimizer == momentum",
            "activation=choice(relu, tanh, gelu)",
            "lr=grid(0.01, 0.1, 0.9)",
            "dropout=0.0"]

CASES = {
    "grid": (GRID, Settings(epochs=2)),
    "random": (MIXED, Settings(trials=12, epochs=3, seed=5)),
    "bayes": (MIXED, Settings(trials=16, batch=6, epochs=2, seed=1)),   # TPE after 10
    "hyperband": (HYPERBAND, Settings(epochs=9, min_epochs=1, eta=3, trials=3, seed=2)),
    "successive_halving": (HYPERBAND, Settings(epochs=9, eta=3, trials=10, seed=3)),
    "pbt": (PBT, Settings(batch=8, epochs=6, pbt_interval=2, pbt_fraction=0.25, seed=4)),
    "ablation": (ABLATION, Settings(epochs=2, seeds=2, cross=("optimizer", "momentum"))),
}


def _make(name, lines=None, settings=None):
  case_lines, case_settings = CASES[name]
  return make_strategy(name, space_lib.parse(lines or case_lines), settings or case_settings)


DATASET = stub_dataset()


class Sweep:
  """One sweep of a strategy through the real loop and the stub trainer: `members` are the
  loop's MemberRuns; `log`, `asks`, `syncs`, `told`, `calls` what the strategy saw."""

  def __init__(self, strategy, rebuild_at=None, **loop_kwargs):
    self.observed = Observed(strategy, rebuild_at)
    self.trainer = StubTrainer()
    self.loop = SweepLoop(self.observed, DATASET, trainer=self.trainer,
                          **{"test_top": 1, **loop_kwargs})
    self.loop.run()
    self.members = dict(sorted(self.loop.members.items()))   # by member id

  def __getattr__(self, name):   # log, asks, syncs, told, calls, strategy
    return getattr(self.observed, name)


def _run(name, **kwargs):
  return Sweep(_make(name), **kwargs)


@functools.lru_cache(maxsize=None)
def _reference(name):
  """The uninterrupted sweep of CASES[name] (shared by the tests that compare with it)."""
  return _run(name)


# ------------------------------------------------------------------------------ every strategy

def test_registry_names_and_unknown_name():
  assert set(STRATEGIES) == set(CASES)
  with pytest.raises(ValueError) as err:
    make_strategy("annealing", space_lib.parse(MIXED), Settings())
  message = str(err.value)
  assert "\n" not in message and message.startswith("strategy: unknown 'annealing'")
  assert all(name in message for name in CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_runs_to_the_end_deterministically(name):
  first, second = _reference(name), _run(name)
  assert first.log == second.log
  assert first.members and all(m.status != vocab.RUNNING for m in first.members.values())
  assert first.told == set(first.members), "every member is told exactly once"
  assert not first.loop.chunks and first.loop.phase == "done"
  for m in first.members.values():
    assert m.trial.config["seed"] >= 0 and m.trial.config["epochs"] >= 1
  # The stub trained exactly the member-epochs the records show, fillers never.
  assert first.trainer.epochs_run == sum(m.epochs_run + (m.status == vocab.DIVERGED)
                                         for m in first.members.values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_resume_at_every_call_matches_uninterrupted(name):
  reference = _reference(name)
  # Rebuilt before every call in one run, then before single calls spread over the run.
  assert _run(name, rebuild_at="every").log == reference.log, f"{name}: rebuilt at every call"
  for point in sorted({0, 1, reference.calls - 1, *range(2, reference.calls, 13)}):
    resumed = _run(name, rebuild_at=point)
    assert resumed.log == reference.log, f"{name}: resumed before call {point} differs"


def _records(loop):
  out = []
  for run in sorted(loop.members.values(), key=lambda r: r.trial.member_id):
    record = run.record(loop.objective).__dict__
    out.append({k: v for k, v in record.items() if k != "wall_time"})
  return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_loop_resumes_from_its_checkpoint_state(name):
  """A checkpoint's meta (JSON round trip) and arrays, taken at an epoch boundary in the middle
  of the sweep, restore a fresh loop with a fresh strategy that ends with the same records."""
  saved = []

  def on_checkpoint(loop, force):
    meta, arrays = loop.state_dict()
    saved.append((json.loads(json.dumps(meta)), arrays))

  reference = _run(name, on_checkpoint=on_checkpoint)
  meta, arrays = saved[len(saved) // 2]
  loop = SweepLoop(_make(name), DATASET, trainer=StubTrainer(), test_top=1)
  target = loop.abstract_arrays(meta)
  shapes = lambda tree: [(x.shape, x.dtype) for x in jax.tree_util.tree_leaves(tree)]
  assert shapes(target) == shapes(arrays), "the restore target matches what was saved"
  loop.load_state_dict(meta, arrays)
  loop.run()
  assert _records(loop) == _records(reference.loop)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_seed_setting_reaches_every_members_config(name):
  lines, settings = CASES[name]
  other = make_strategy(name, space_lib.parse(lines), Settings(**{
      **settings.__dict__, "seed": settings.seed + 100}))
  a, b = _reference(name), Sweep(other)
  seeds_a = [m.trial.config["seed"] for m in a.members.values()]
  seeds_b = [m.trial.config["seed"] for m in b.members.values()]
  assert [s + 100 for s in seeds_a] == seeds_b


BAD_SETTINGS = [
    ("random", "trials", 0), ("bayes", "trials", 0), ("hyperband", "trials", 0),
    ("successive_halving", "trials", 0), ("bayes", "batch", 0), ("pbt", "batch", 1),
    ("hyperband", "eta", 1), ("hyperband", "min_epochs", 10), ("pbt", "pbt_fraction", 0.6),
    ("pbt", "pbt_interval", 0), ("ablation", "seeds", 0), ("bayes", "sampler", "anneal"),
    ("random", "objective", "accuracy"),
] + [(name, "epochs", 0) for name in sorted(CASES)]


@pytest.mark.parametrize("name,field,value", BAD_SETTINGS)
def test_bad_settings_fail_with_one_line_naming_the_field(name, field, value):
  lines, settings = CASES[name]
  with pytest.raises(ValueError) as err:
    make_strategy(name, space_lib.parse(lines), Settings(**{**settings.__dict__, field: value}))
  assert "\n" not in str(err.value) and str(err.value).startswith(f"{field}:")


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_empty_space_fails_with_one_line(name):
  with pytest.raises(space_lib.SpaceError, match=r"^space: empty"):
    make_strategy(name, space_lib.Space(()), CASES[name][1])


# -------------------------------------------------------------------------------------- grid

def test_grid_trains_every_point_once():
  loop = _reference("grid")
  # optimizer: sgd, adam (1 each) + momentum x 2 values = 4; lr 3; depth 1 -> 2 widths, 2 -> 4.
  assert len(loop.members) == 4 * 3 * (2 + 4) == 72
  configs = {repr(sorted(m.trial.config.items())) for m in loop.members.values()}
  assert len(configs) == 72
  for m in loop.members.values():
    config = m.trial.config
    assert ("momentum" in config) == (config["optimizer"] == "momentum")
    assert "depth" not in config and len(config["widths"]) in (1, 2)
    assert m.target == 2 and config["epochs"] == 2 and config["seed"] == 0
    # lr=0.9 diverges in its second epoch (no metrics for it), every other member completes
    assert (m.status, m.epochs_run) == (("diverged", 1) if config["lr"] == 0.9 else ("complete", 2))
  assert loop.asks == [72]
  assert {m.status for m in loop.members.values()} == {"complete", "diverged"}


def test_grid_over_epochs_sets_each_trials_epochs():
  strategy = make_strategy("grid", space_lib.parse(["lr=grid(0.1, 0.01)", "epochs=grid(1, 3)"]),
                           Settings(epochs=7))
  assert sorted((t.config["lr"], t.epochs) for t in strategy.ask()) == [
      (0.01, 1), (0.01, 3), (0.1, 1), (0.1, 3)]


def test_an_empty_grid_fails_with_one_line():
  space = space_lib.Space((space_lib.Param("lr", space_lib.Choice(())),))
  with pytest.raises(space_lib.SpaceError, match=r"^space: the grid is empty"):
    make_strategy("grid", space, Settings())


def test_grid_refuses_a_continuous_axis():
  with pytest.raises(space_lib.SpaceError, match=r"^lr: the grid strategy cannot enumerate"):
    make_strategy("grid", space_lib.parse(["lr=loguniform(1e-4, 1e-1)"]), Settings())


def test_early_stopping_retires_members_at_the_epoch_the_rule_says():
  """patience 1, min_delta 0.05 on val_acc: with the stub's curves (speed and quality from lr)
  the gains fall to 0.0439 at epoch 4 (lr 0.001), 0.0458 at epoch 6 (lr 0.01) and 0.027 at
  epoch 4 (lr 0.1). Stopped members leave their chunk at once (no more stub epochs, the chunk
  compacted or kept at a compiled larger slot size) and the best-epoch weights kept for the test split are those of their last epoch
  (the stub's curves only rise)."""
  sizes = []   # (members, slots) of the chunk at each epoch's end
  strategy = make_strategy("grid", space_lib.parse(["lr=grid(0.001, 0.01, 0.1)"]),
                           Settings(epochs=8))
  trainer = StubTrainer()
  loop = SweepLoop(Observed(strategy), DATASET, trainer=trainer, test_top=3,
                   early_stopping=EarlyStopping(patience=1, min_delta=0.05, monitor="val_acc"),
                   on_epoch=lambda loop, chunk: sizes.append((len(chunk.ids), chunk.slots)))
  loop.run()
  stops = {m.trial.config["lr"]: (m.status, m.epochs_run) for m in loop.members.values()}
  assert stops == {0.001: ("stopped", 4), 0.01: ("stopped", 6), 0.1: ("stopped", 4)}
  assert trainer.epochs_run == 4 + 6 + 4
  # The lone survivor runs in 1 slot, or in the chunk's 4 when that program is compiled and the
  # cost model says padding costs less than a new compile (programs.compact_slots): which one
  # depends on what this process compiled before, so both are right; a mix is not.
  assert sizes[:4] == [(3, 4)] * 4
  assert sizes[4:] in ([(1, 1)] * 2, [(1, 4)] * 2)
  for m in loop.members.values():
    assert m.record(loop.objective).best_epoch == m.epochs_run - 1
    assert m.test["acc"] == pytest.approx(m.history["val_acc"][-1])


# ------------------------------------------------------------------------------------ random

def test_random_is_reproducible_and_respects_the_space():
  a, b = _make("random").ask(), _make("random").ask()
  assert [t.config for t in a] == [t.config for t in b]
  assert len(a) == 12 and [t.member_id for t in a] == list(range(12))
  lines, settings = CASES["random"]
  other = make_strategy("random", space_lib.parse(lines), Settings(**{**settings.__dict__,
                                                                      "seed": 6})).ask()
  assert [t.config["lr"] for t in other] != [t.config["lr"] for t in a]
  for t in a:
    assert 1e-4 <= t.config["lr"] <= 1.0 and t.config["dropout"] in (0.0, 0.2, 0.5)
    assert ("momentum" in t.config) == (t.config["optimizer"] == "momentum")
    assert t.epochs == 3 and t.config["seed"] == 5


# ------------------------------------------------------------------------------------- bayes

def test_bayes_asks_in_batches_and_tells_every_member():
  loop = _reference("bayes")
  assert loop.asks == [6, 6, 4]
  study = loop.strategy.study
  assert study.direction == optuna.study.StudyDirection.MAXIMIZE
  assert len(study.trials) == 16
  for trial in study.trials:
    member = loop.members[trial.user_attrs["member_id"]]
    assert trial.user_attrs["config"] == member.trial.config
    if member.status == "diverged":
      assert trial.state == optuna.trial.TrialState.FAIL
    else:
      assert trial.state == optuna.trial.TrialState.COMPLETE
      assert trial.value == max(member.history["val_acc"])
      assert trial.intermediate_values == dict(enumerate(member.history["val_acc"], start=1))
    assert ("momentum" in trial.params) == (trial.params["optimizer"] == "momentum")


def _report(member_id, status, values, objective="val_acc"):
  return Report(member_id, {}, len(values), {objective: values}, status)


def test_bayes_maps_statuses_to_trial_states_and_best_values():
  strategy = make_strategy("bayes", space_lib.parse(MIXED),
                           Settings(trials=5, batch=5, objective="val_loss"))
  assert [t.member_id for t in strategy.ask()] == [0, 1, 2, 3, 4]
  assert strategy.ask() == [], "no new batch before the last one is told"
  strategy.tell(_report(0, "complete", [0.9, 0.4, 0.6], "val_loss"))
  strategy.tell(_report(1, "stopped", [0.8, 0.7], "val_loss"))
  strategy.tell(_report(2, "pruned", [1.2], "val_loss"))
  strategy.tell(_report(3, "diverged", [1.0, float("nan")], "val_loss"))
  strategy.tell(_report(4, "complete", [], "val_loss"))
  states = optuna.trial.TrialState
  trials = strategy.study.trials
  assert strategy.study.direction == optuna.study.StudyDirection.MINIMIZE
  assert [t.state for t in trials] == [states.COMPLETE, states.COMPLETE, states.PRUNED,
                                       states.FAIL, states.FAIL]
  assert trials[0].value == 0.4 and trials[1].value == 0.7
  assert trials[0].intermediate_values == {1: 0.9, 2: 0.4, 3: 0.6}
  assert trials[3].intermediate_values == {1: 1.0}
  assert strategy.done() and strategy.ask() == []
  with pytest.raises(ValueError, match=r"^member_id: 7 is not a running trial"):
    strategy.tell(_report(7, "complete", [0.5]))


def test_bayes_cmaes_runs_and_resumes():
  lines = ["lr=loguniform(1e-4, 0.3)", "momentum=uniform(0.5, 0.99)", "optimizer=choice(sgd, adam)"]
  settings = Settings(trials=8, batch=4, epochs=1, sampler="cmaes", seed=3)
  make = lambda: make_strategy("bayes", space_lib.parse(lines), settings)
  reference = Sweep(make())
  assert isinstance(reference.strategy.study.sampler, optuna.samplers.CmaEsSampler)
  assert reference.asks == [4, 4] and len(reference.strategy.study.trials) == 8
  assert Sweep(make(), rebuild_at=reference.calls // 2).log == reference.log


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_bayes_gp_without_torch_fails_with_one_line():
  with pytest.raises(ValueError, match=r"^sampler: gp needs the 'torch' package"):
    make_strategy("bayes", space_lib.parse(MIXED), Settings(sampler="gp"))


def test_bayes_state_survives_mid_batch():
  reference = _make("bayes")
  batch = reference.ask()
  reference.tell(_report(0, "complete", [0.3, 0.5]))
  resumed = rebuilt(reference)
  for strategy in (reference, resumed):
    for t in batch[1:]:
      strategy.tell(_report(t.member_id, "complete", [0.1 * t.member_id]))
  assert [t.config for t in resumed.ask()] == [t.config for t in reference.ask()]


# -------------------------------------------------------------------------------- hyperband

def _plan(brackets):
  return [(b.name, b.rungs, b.sizes) for b in brackets]


def test_hyperband_brackets_follow_li_et_al():
  # R=81, eta=3: Table 1 of Li et al. (2018): n = 81, 34, 15, 8, 5 at r = 1, 3, 9, 27, 81.
  assert _plan(hb.hyperband_brackets(81, 1, 3)) == [
      ("bracket4", [1, 3, 9, 27, 81], [81, 27, 9, 3, 1]),
      ("bracket3", [3, 9, 27, 81], [34, 11, 3, 1]),
      ("bracket2", [9, 27, 81], [15, 5, 1]),
      ("bracket1", [27, 81], [8, 2]),
      ("bracket0", [81], [5])]
  assert _plan(hb.hyperband_brackets(9, 1, 3)) == [
      ("bracket2", [1, 3, 9], [9, 3, 1]), ("bracket1", [3, 9], [5, 1]), ("bracket0", [9], [3])]
  assert _plan(hb.hyperband_brackets(9, 1, 3, max_brackets=2)) == [
      ("bracket2", [1, 3, 9], [9, 3, 1]), ("bracket1", [3, 9], [5, 1])]
  # R=10 is not a power of eta: rungs are R / eta^k rounded, the last is exactly R.
  assert hb.rung_epochs(10, 3, 2) == [1, 3, 10]
  assert hb.max_bracket(8, 2, 2) == 2 and hb.max_bracket(2, 1, 3) == 0


def _finals(loop):
  by_group = {}
  for m in loop.members.values():
    by_group.setdefault(m.trial.group, []).append((m.epochs_run, m.status))
  return {g: sorted(v) for g, v in by_group.items()}


def test_hyperband_prunes_and_promotes_by_the_formula():
  loop = _reference("hyperband")
  assert loop.asks == [17] and loop.strategy.sync_every() == 1
  pruned, complete = "pruned", "complete"
  assert _finals(loop) == {
      "bracket2": [(1, pruned)] * 6 + [(3, pruned)] * 2 + [(9, complete)],
      "bracket1": [(3, pruned)] * 4 + [(9, complete)],
      "bracket0": [(9, complete)] * 3}
  assert sum(m.epochs_run for m in loop.members.values()) == 6 + 6 + 9 + 12 + 9 + 27
  # Each decision: the promoted outrank every pruned member of their rung at that sync.
  decided = 0
  for sync in loop.syncs:
    for group in ("bracket2", "bracket1"):
      acts = [a for a in sync["actions"] if loop.members[a.member_id].trial.group == group]
      if not acts:
        continue
      decided += 1
      score = lambda a: max(loop.members[a.member_id].history["val_acc"][:sync["epochs"][a.member_id]])
      up = [score(a) for a in acts if isinstance(a, Extend)]
      down = [score(a) for a in acts if isinstance(a, Stop)]
      assert up and down and min(up) >= max(down)
      assert all(group in a.reason for a in acts)
  assert decided == 3   # bracket2 at epochs 1 and 3, bracket1 at epoch 3


def test_successive_halving_is_one_bracket_of_trials_configs():
  loop = _reference("successive_halving")
  assert loop.asks == [10]
  assert _finals(loop) == {"sh": [(1, "pruned")] * 7 + [(3, "pruned")] * 2 + [(9, "complete")]}
  strategy = make_strategy("successive_halving", space_lib.parse(HYPERBAND),
                           Settings(epochs=8, min_epochs=2, eta=2, trials=20))
  assert _plan(strategy.brackets) == [("sh", [2, 4, 8], [20, 10, 5])]
  assert strategy.sync_every() == 2
  assert all(t.epochs == 2 and t.config["epochs"] == 8 for t in strategy.ask())


def test_hyperband_never_promotes_a_diverged_member():
  strategy = make_strategy("successive_halving", space_lib.parse(HYPERBAND),
                           Settings(epochs=9, eta=3, trials=3))
  strategy.ask()
  # Member 1 has the best score (0.99), but its latest value is NaN: it is never promoted.
  reports = {0: _report(0, "running", [0.9]), 1: _report(1, "running", [0.99, float("nan")]),
             2: _report(2, "running", [0.2])}
  actions = strategy.on_sync(reports)
  assert [(type(a).__name__, a.member_id) for a in actions] == [
      ("Extend", 0), ("Stop", 2), ("Stop", 1)]
  assert actions[0].epochs == 3 and "not finite" in actions[2].reason


def test_hyperband_waits_for_a_rung_and_refuses_a_searched_epoch_budget():
  strategy = make_strategy("hyperband", space_lib.parse(HYPERBAND), CASES["hyperband"][1])
  trials = strategy.ask()
  # At epoch 1 only bracket2 (rung target 1) decides; bracket1's members are still below 3.
  reports = {t.member_id: _report(t.member_id, "running", [0.1 + 0.01 * t.member_id])
             for t in trials}
  actions = strategy.on_sync(reports)
  assert {a.member_id for a in actions} == set(range(9))
  assert sorted(a.member_id for a in actions if isinstance(a, Extend)) == [6, 7, 8]
  with pytest.raises(space_lib.SpaceError, match=r"^epochs: hyperband sets"):
    make_strategy("hyperband", space_lib.parse(HYPERBAND + ["epochs=grid(3, 9)"]), Settings())


# -------------------------------------------------------------------------------------- pbt

def _changes(reason):
  """{'lr': 'x1.2' | 'resampled', ...} from an exploit reason."""
  found = re.findall(r"(\w+) \S+ -> \S+ \((x[\d.]+|resampled)\)", reason)
  return dict(found)


def test_pbt_exploits_the_bottom_with_perturbed_copies_of_the_top():
  loop = _reference("pbt")
  assert loop.asks == [8] and loop.strategy.sync_every() == 2
  assert [sorted(s["epochs"].values()) for s in loop.syncs] == [[2] * 8, [4] * 8, [6] * 8]
  assert [len(s["actions"]) for s in loop.syncs] == [2, 2, 0]   # int(0.25 * 8); none at the end
  space = loop.strategy.space
  bounds = {p.name: p.dist for p in space.params if isinstance(p.dist, space_lib.Uniform)}
  perturbed = 0
  for sync, before in zip(loop.syncs[:2], _configs_before_syncs(loop)):
    latest = {i: loop.members[i].history["val_acc"][e - 1] for i, e in sync["epochs"].items()}
    ranked = sorted(latest, key=lambda i: -latest[i])
    for action in sync["actions"]:
      assert isinstance(action, Exploit)
      assert action.member_id in ranked[-2:] and action.parent_id in ranked[:2]
      parent = before[action.parent_id]
      child = action.config
      for field in ("optimizer", "widths", "l2"):   # static and categorical: copied
        assert child[field] == parent[field]
      assert child["seed"] == before[action.member_id]["seed"] and child["epochs"] == 6
      how = _changes(action.reason)
      assert set(how) == {"lr", "momentum", "dropout"}
      for name, dist in bounds.items():
        assert dist.low <= child[name] <= dist.high
        if how[name] != "resampled":
          factor = float(how[name][1:])
          expected = min(max(parent[name] * factor, dist.low), dist.high)
          if dist.step:
            expected = round(expected / dist.step) * dist.step
          assert child[name] == pytest.approx(expected)
          perturbed += 1
  assert perturbed >= 6, "most explore steps perturb (resampling has probability 0.2)"


def _configs_before_syncs(loop):
  """Each member's config as it was when each sync began (replaying the logged exploits)."""
  configs = {entry[1]: json.loads(entry[2]) for entry in loop.log if entry[0] == "ask"}
  out = []
  for sync in loop.syncs:
    out.append({i: dict(c) for i, c in configs.items()})
    for action in sync["actions"]:
      configs[action.member_id] = dict(action.config)
  return out


def test_pbt_ranks_by_the_latest_value_and_replaces_diverged_first():
  strategy = make_strategy("pbt", space_lib.parse(PBT), Settings(batch=4, epochs=6,
                                                                 pbt_fraction=0.5))
  strategy.ask()
  reports = {0: _report(0, "running", [0.95, 0.3]), 1: _report(1, "running", [0.5, 0.8]),
             2: _report(2, "running", [0.4, 0.6]), 3: _report(3, "running", [0.2, 0.7])}
  actions = strategy.on_sync(reports)
  assert {a.member_id for a in actions} == {0, 2}   # latest 0.3, 0.6; not best-ever 0.95
  assert {a.parent_id for a in actions} <= {1, 3}
  strategy = make_strategy("pbt", space_lib.parse(PBT), Settings(batch=4, epochs=6,
                                                                 pbt_fraction=0.25))
  strategy.ask()
  reports = {0: _report(0, "running", [0.9]), 1: _report(1, "running", [0.99, float("nan")]),
             2: _report(2, "running", [0.5]), 3: _report(3, "running", [0.7])}
  actions = strategy.on_sync(reports)
  assert [(a.member_id, a.parent_id) for a in actions] == [(1, 0)]
  assert "diverged" in actions[0].reason
  # At the last epoch there is nothing left to exploit into.
  done = {i: Report(i, {}, 6, {"val_acc": [0.1 * i] * 6}, "running") for i in range(4)}
  assert strategy.on_sync(done) == []


def test_pbt_through_the_loop_replaces_every_diverged_member_at_its_sync():
  """lr above the stub's DIVERGE_LR diverges in a member's second epoch: the member waits,
  frozen, for the sync, where PBT gives it a parent's weights and config; its history keeps the
  epoch it missed as None, and it trains on to the end like the others."""
  space = space_lib.parse(["optimizer=momentum", "lr=loguniform(0.05, 2.0)"])
  sweep = Sweep(make_strategy("pbt", space, Settings(batch=8, epochs=6, pbt_interval=2,
                                                     pbt_fraction=0.25, seed=1)))
  dead = [{i for i, status in sync["statuses"].items() if status == vocab.DIVERGED}
          for sync in sweep.syncs]
  assert dead[0], "the space makes some members diverge before the first sync"
  for sync, gone in zip(sweep.syncs[:-1], dead):   # (the last sync, at epoch 6, exploits none)
    children = {a.member_id: a for a in sync["actions"]}
    assert gone <= set(children), "every diverged member is replaced at its sync"
    assert all(vocab.DIVERGED in children[i].reason for i in gone)
    assert all(sync["epochs"][i] < max(sync["epochs"].values()) for i in gone)
  revived = set().union(*dead[:-1])
  for member_id in revived:
    m = sweep.members[member_id]
    assert any(e["kind"] == "exploit" for e in m.events) and None in m.history["val_acc"]
    assert m.epochs_run == 6 or m.status == vocab.DIVERGED   # (diverged again after sync 4)
  assert all(m.status != vocab.RUNNING for m in sweep.members.values())
  assert sweep.told == set(range(8))


@pytest.mark.parametrize("lines,field", [
    (["optimizer=choice(sgd, adam)", "lr=uniform(0.01, 0.1)"], "optimizer"),
    (["depth=int(1, 3)", "widths=per_layer(depth, 64)", "lr=uniform(0.01, 0.1)"], "depth"),
    (["dropout=choice(0.0, 0.5)", "flip=True if dropout == 0.5"], "flip"),
    (["batch_size=quniform(64, 256, 64)"], "batch_size"),
    (["schedule=multistep", "milestones=choice([3], [3, 6])"], "milestones"),
])
def test_pbt_refuses_a_space_that_varies_a_static_field(lines, field):
  with pytest.raises(space_lib.SpaceError) as err:
    make_strategy("pbt", space_lib.parse(lines), Settings(batch=4))
  assert str(err.value).startswith(f"{field}: pbt trains the whole population as one program")
  assert pbt_lib.varied_static_field(space_lib.parse(PBT)) is None


# --------------------------------------------------------------------------------- ablation

def test_ablation_variants_crossed_and_one_at_a_time():
  loop = _reference("ablation")
  groups = []
  for m in loop.members.values():
    if m.trial.group not in groups:
      groups.append(m.trial.group)
  assert groups == ["baseline",
                    "optimizer=momentum,momentum=0.9", "optimizer=momentum,momentum=0.5",
                    "optimizer=adam",
                    "activation=tanh", "activation=gelu", "lr=0.1", "lr=0.9"]
  assert len(loop.members) == len(groups) * 2
  base = loop.members[0].trial.config
  assert base == {"optimizer": "sgd", "activation": "relu", "lr": 0.01, "dropout": 0.0,
                  "seed": 0, "epochs": 2}
  for m in loop.members.values():
    config, group = m.trial.config, m.trial.group
    assert config["seed"] == m.trial.member_id % 2   # seeds --seed + k, k = 0, 1 per variant
    if group != "baseline" and "," not in group:
      name, value = group.split("=")
      differs = {k for k in config if k != "seed" and config[k] != base.get(k)}
      assert differs == {name} and common.format_value(config[name]) == value


def test_ablation_refusals_are_one_line():
  cases = [
      (["lr=loguniform(1e-3, 1e-1)"], (), r"^lr: ablation needs discrete values"),
      (ABLATION, (), r"^momentum: inactive in the baseline .* \(--cross\)"),
      (ABLATION, ("optimizer", "nesterov"), r"^cross: unknown parameter 'nesterov'"),
      (["lr=grid(0.1, 0.01)", "seed=grid(0, 1)"], (), r"^seed: ablation repeats"),
  ]
  for lines, cross, pattern in cases:
    with pytest.raises(space_lib.SpaceError, match=pattern) as err:
      make_strategy("ablation", space_lib.parse(lines), Settings(cross=cross))
    assert "\n" not in str(err.value)


def test_ablation_per_layer_and_quantized_factors():
  space = space_lib.parse(["depth=int(1, 2)", "widths=per_layer(depth, choice(64, 128))",
                           "dropout=quniform(0, 0.4, 0.2)"])
  names = [name for name, _ in ablation_lib.ablation_variants(space)]
  assert names == ["baseline", "depth=2", "widths=128", "dropout=0.2", "dropout=0.4"]
  configs = dict(ablation_lib.ablation_variants(space))
  assert configs["depth=2"]["widths"] == [64, 64] and "depth" not in configs["depth=2"]
  crossed = ablation_lib.ablation_variants(space, cross=("depth", "widths"))
  assert [n for n, _ in crossed] == [
      "baseline", "depth=1,widths=128", "depth=2,widths=64x64", "depth=2,widths=64x128",
      "depth=2,widths=128x64", "depth=2,widths=128x128", "dropout=0.2", "dropout=0.4"]


# ------------------------------------------------------------------- configs the engine accepts

@pytest.mark.parametrize("name", sorted(CASES))
def test_every_trial_config_resolves_as_a_member(name):
  from jaxnn import member
  for trial in _make(name).ask():
    spec, row = member.resolve(trial.config, num_classes=10)
    assert row["seed"] == trial.config["seed"] and row["epochs"] == trial.config["epochs"]


def test_quantized_values_are_exact_and_integral_grids_give_ints():
  space = space_lib.parse(["dropout=quniform(0, 0.5, 0.1)", "batch_size=quniform(64, 256, 64)"])
  assert [c["dropout"] for c in space.grid()[::4]] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
  sampled = make_strategy("random", space, Settings(trials=20)).ask()
  assert {t.config["batch_size"] for t in sampled} <= {64, 128, 192, 256}
  assert all(type(t.config["batch_size"]) is int for t in sampled)
  assert {t.config["dropout"] for t in sampled} <= {0.0, 0.1, 0.2, 0.3, 0.4, 0.5}
