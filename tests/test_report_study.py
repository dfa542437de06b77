"""Optuna export: one trial per member, states, values, intermediate values, distributions."""

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from sweeps.records import Record
from sweeps.reporting import synthetic
from sweeps.reporting.study import TRIAL_STATES, build_trials, default_storage, export_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

EXPECTED_STATES = {3: TrialState.FAIL, 5: TrialState.PRUNED, 7: TrialState.COMPLETE,
                   11: TrialState.RUNNING}


@pytest.fixture(scope="module")
def records():
  return synthetic.sweep_records(n_members=12, epochs=8, seed=0)


@pytest.fixture(scope="module")
def loaded(records, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("sweep")
  storage = default_storage(str(workdir))
  export_study(records, storage, "fake", objective="val_acc")
  return optuna.load_study(study_name="fake", storage=storage)


def test_default_storage_is_sqlite_in_the_report_dir(tmp_path):
  assert default_storage(str(tmp_path)) == f"sqlite:///{tmp_path}/report/study.db"


def test_one_trial_per_member_in_member_order(records, loaded):
  assert len(loaded.trials) == len(records) == 12
  assert [t.user_attrs["member_id"] for t in loaded.trials] == list(range(12))
  assert loaded.direction == optuna.study.StudyDirection.MAXIMIZE
  assert loaded.user_attrs["objective"] == "val_acc"


def test_states_follow_the_member_status(records, loaded):
  for record, trial in zip(records, loaded.trials):
    assert trial.state == EXPECTED_STATES.get(record.member_id, TrialState.COMPLETE)
    assert trial.user_attrs["status"] == record.status


def test_values_are_the_best_epoch_objective(records, loaded):
  for record, trial in zip(records, loaded.trials):
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
      best = max(v for v in record.history["val_acc"] if v is not None)
      assert trial.value == pytest.approx(best)
    else:
      assert trial.value is None
  assert loaded.best_trial.user_attrs["member_id"] == 10


def test_intermediate_values_are_per_epoch_objective_without_nulls(records, loaded):
  for record, trial in zip(records, loaded.trials):
    # Keyed by 1-based epoch, as every table a person reads.
    expected = {e: v for e, v in enumerate(record.history["val_acc"], start=1) if v is not None}
    assert trial.intermediate_values == pytest.approx(expected)
  assert len(loaded.trials[3].intermediate_values) == 4  # diverged: epoch 4 was null
  assert len(loaded.trials[5].intermediate_values) == 3  # pruned after 3 epochs


def test_params_and_inferred_distributions(records, loaded):
  trial = loaded.trials[0]
  assert trial.params["widths"] == "[128,64]"  # lists become categorical strings
  assert trial.params["lr"] == records[0].params["lr"]
  dists = trial.distributions
  assert isinstance(dists["lr"], FloatDistribution) and dists["lr"].log
  assert isinstance(dists["dropout"], FloatDistribution) and not dists["dropout"].log
  assert isinstance(dists["batch_size"], IntDistribution)
  assert isinstance(dists["optimizer"], CategoricalDistribution)
  assert set(dists["optimizer"].choices) == {"sgd", "adam", "rmsprop"}
  lrs = [r.params["lr"] for r in records]
  assert (dists["lr"].low, dists["lr"].high) == (min(lrs), max(lrs))


def test_durations_are_wall_times(records, loaded):
  for record, trial in zip(records, loaded.trials):
    if trial.state.is_finished():
      assert trial.duration.total_seconds() == pytest.approx(record.wall_time, abs=1e-3)


def test_reexport_replaces_the_study(records, tmp_path):
  storage = default_storage(str(tmp_path))
  export_study(records[:5], storage, "s", objective="val_acc")
  export_study(records[:2], storage, "s", objective="val_loss")
  study = optuna.load_study(study_name="s", storage=storage)
  assert len(study.trials) == 2
  assert study.direction == optuna.study.StudyDirection.MINIMIZE
  assert study.trials[0].value == pytest.approx(min(records[0].history["val_loss"]))
  assert len(optuna.get_all_study_names(storage)) == 1


def test_unused_parameter_is_left_out_of_the_trial():
  records = [Record(member_id=0, params={"opt": "sgd", "momentum": 0.9},
                    history={"val_acc": [0.5]}, status="complete"),
             Record(member_id=1, params={"opt": "adam", "momentum": None},
                    history={"val_acc": [0.6]}, status="complete")]
  trials = build_trials(records)
  assert trials[0].params == {"opt": "sgd", "momentum": 0.9}
  assert trials[1].params == {"opt": "adam"}


def test_complete_member_without_a_finite_value_is_a_failed_trial():
  record = Record(member_id=0, history={"val_acc": [None]}, status="complete")
  assert build_trials([record])[0].state == TrialState.FAIL


@pytest.mark.parametrize("status", sorted(TRIAL_STATES))
def test_every_status_has_a_trial_state(status):
  record = Record(member_id=0, params={"lr": 0.1}, history={"val_acc": [0.3, 0.4]},
                  status=status)
  trial = build_trials([record])[0]
  assert trial.state == TRIAL_STATES[status]
  study = optuna.create_study(direction="maximize")
  study.add_trials([trial])  # Optuna accepts it
  assert study.trials[0].intermediate_values == {1: 0.3, 2: 0.4}
