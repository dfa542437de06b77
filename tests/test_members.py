"""Member bookkeeping and population surgery as pure functions (sweeps/members.py,
jaxnn/slots.py): the rules the loop applies, pinned on small hand-made inputs."""

import jax.numpy as jnp
import numpy as np

from jaxnn import population, slots
from sweeps import members


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
