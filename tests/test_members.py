"""Member bookkeeping, population surgery and the out-of-memory rule as pure functions
(sweeps/members.py, jaxnn/slots.py, sweeps/oom.py): the rules the loop applies, pinned on small
hand-made inputs."""

import jax.numpy as jnp
import numpy as np

from jaxnn import population, slots
from sweeps import members, oom
from sweeps.strategies.base import Trial


def test_early_stop_counts_epochs_without_improvement_then_stops():
  rule = members.EarlyStopping(patience=2, min_delta=0.1, monitor="val_loss")
  best, since, stops = None, 0, []
  for value in [1.0, 0.95, None, 0.5, 0.45, 0.44]:   # None: a non-finite value, not counted
    stop, best, since = members.early_stop(value, best, since, rule)
    stops.append((stop, best, since))
  assert stops == [(False, 1.0, 0), (False, 1.0, 1), (False, 1.0, 1), (False, 0.5, 0),
                   (False, 0.5, 1), (True, 0.5, 2)]
  assert members.early_stop(9.0, 0.5, 5, members.EarlyStopping(patience=0)) == (False, 0.5, 5)


def test_best_epoch_keeps_the_first_of_ties_and_follows_the_objective_direction():
  history = {"val_acc": [0.5, 0.9, None, 0.9], "val_loss": [2.0, 1.0, None, 0.5]}
  assert members.best_epoch(history, "val_acc") == 1
  assert members.best_epoch(history, "val_loss") == 3
  assert members.best_epoch({"val_acc": [None]}, "val_acc") is None


def test_gather_keeps_positions_and_pads_with_inactive_fillers():
  n = 3
  state = population.MemberState(
      params={"w": jnp.arange(n * 2, dtype=jnp.float32).reshape(n, 2)}, batch_stats={},
      opt_state=(), step=jnp.arange(n, dtype=jnp.int32), epoch=jnp.zeros(n, jnp.int32),
      active=jnp.ones(n, bool), diverged=jnp.zeros(n, bool))
  hparams = {"lr": jnp.array([0.1, 0.2, 0.3], jnp.float32)}
  hp, st = slots.gather(hparams, state, [2, 0], 4)
  np.testing.assert_allclose(hp["lr"], [0.3, 0.1, 0.3, 0.3])
  np.testing.assert_array_equal(st.step, [2, 0, 2, 2])
  np.testing.assert_array_equal(st.active, [True, True, False, False])
  copied = slots.copy_slot(st.params, 1, state.params, 1)
  np.testing.assert_array_equal(copied["w"][1], [2.0, 3.0])
  np.testing.assert_array_equal(copied["w"][0], [4.0, 5.0])


def test_copy_member_copies_weights_and_step_and_revives_a_diverged_slot():
  state = population.MemberState(
      params={"w": jnp.array([[1.0], [2.0]])}, batch_stats={}, opt_state={"m": jnp.array([3.0, 4.0])},
      step=jnp.array([5, 9], jnp.int32), epoch=jnp.array([1, 2], jnp.int32),
      active=jnp.array([False, True]), diverged=jnp.array([True, False]))
  out = slots.copy_member(state, 0, state, 1, revive=True)
  np.testing.assert_array_equal(out.params["w"][:, 0], [2.0, 2.0])
  np.testing.assert_array_equal(out.opt_state["m"], [4.0, 4.0])
  np.testing.assert_array_equal(out.step, [9, 9])
  np.testing.assert_array_equal(out.epoch, [1, 2])   # its own data order
  np.testing.assert_array_equal(out.active, [True, True])
  np.testing.assert_array_equal(out.diverged, [False, False])
  kept = slots.copy_member(state, 0, state, 1)
  np.testing.assert_array_equal(kept.active, [False, True])


def test_out_of_memory_backs_off_by_shedding_fillers_then_halves_then_failing():
  assert oom.back_off(3, 8, 1) == (oom.SHED, [(0, 3)])   # a short chunk at its bucket's size
  assert oom.back_off(3, 4, 1) == (oom.SPLIT, [(0, 1), (1, 3)])
  assert oom.back_off(4, 4, 1) == (oom.SPLIT, [(0, 2), (2, 4)])
  assert oom.back_off(5, 8, 1) == (oom.SPLIT, [(0, 2), (2, 5)])
  assert oom.back_off(1, 1, 1) == (oom.FAIL, [])
  # 4 devices: 3 members already at the smallest slot size (4), halves would not shrink it
  assert oom.back_off(3, 4, 4) == (oom.FAIL, [])


def test_after_epoch_records_metrics_or_freezes_a_diverged_member():
  run = members.MemberRun(Trial(0, {"lr": 0.1}, 3), spec=None, row={"seed": 0}, param_count=1)
  values = {"train_loss": 1.0, "train_acc": 0.5, "val_loss": 2.0, "val_acc": 0.4, "lr": 0.1,
            "diverged": False}
  rule = members.EarlyStopping(patience=1, min_delta=0.0, monitor="val_acc")
  members.after_epoch(run, values, 0.5, rule)
  members.after_epoch(run, values, 0.5, rule)   # no improvement for 1 epoch: stopped
  assert run.epochs_run == 2 and run.status == "stopped" and run.wall_time == 1.0
  assert run.events == [{"epoch": 1, "kind": "stopped"}]
  other = members.MemberRun(Trial(1, {}, 3), spec=None, row={"seed": 0}, param_count=1)
  members.after_epoch(other, {**values, "diverged": True, "val_acc": float("nan")}, 0.5, rule)
  assert other.status == "diverged" and other.epochs_run == 0
  assert other.reason == "non-finite loss or parameters in epoch 0"
