"""TensorBoard logs read back with TensorBoard's own reader: scalars and HParams."""

import os

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from sweeps.reporting import synthetic
from sweeps.reporting.tensorboard import SCALAR_TAGS, member_run_name, write_tensorboard


@pytest.fixture(scope="module")
def records():
  return synthetic.sweep_records(n_members=12, epochs=8, seed=0)


@pytest.fixture(scope="module")
def logdir(records, tmp_path_factory):
  return write_tensorboard(records, str(tmp_path_factory.mktemp("tb") / "tensorboard"))


def _load(path):
  accumulator = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0})
  accumulator.Reload()
  return accumulator


def _hparams(accumulator):
  return {tag: plugin_data_pb2.HParamsPluginData.FromString(content)
          for tag, content in accumulator.PluginTagToContent("hparams").items()}


def test_one_run_per_member(records, logdir):
  runs = sorted(d for d in os.listdir(logdir) if os.path.isdir(os.path.join(logdir, d)))
  assert runs == [member_run_name(r.member_id) for r in records]


def test_scalars_per_epoch_match_the_history(records, logdir):
  record = records[0]
  acc = _load(os.path.join(logdir, member_run_name(0)))
  assert set(SCALAR_TAGS.values()) <= set(acc.Tags()["scalars"])
  for key, tag in SCALAR_TAGS.items():
    events = acc.Scalars(tag)
    assert [e.step for e in events] == list(range(1, 9))   # 1-based epochs
    assert [e.value for e in events] == pytest.approx(record.history[key], rel=1e-6)


def test_non_finite_epochs_are_left_out(records, logdir):
  acc = _load(os.path.join(logdir, member_run_name(3)))  # diverged at epoch 4 (index 4)
  steps = [e.step for e in acc.Scalars("loss/val")]
  assert steps == [1, 2, 3, 4]
  assert acc.Scalars("loss/val")[3].value == pytest.approx(9e3)


def test_session_hparams_metrics_and_status(records, logdir):
  record = records[0]
  acc = _load(os.path.join(logdir, member_run_name(0)))
  data = _hparams(acc)
  start = data["_hparams_/session_start_info"].session_start_info
  assert start.hparams["lr"].number_value == pytest.approx(record.params["lr"])
  assert start.hparams["optimizer"].string_value == "sgd"
  assert start.hparams["widths"].string_value == "[128,64]"
  assert start.hparams["batch_size"].number_value == record.params["batch_size"]
  assert start.hparams["status"].string_value == "complete"
  assert start.hparams["bucket"].string_value == record.bucket
  end = data["_hparams_/session_end_info"].session_end_info
  assert end.status == api_pb2.STATUS_SUCCESS
  best = acc.Scalars("hparam/best_val_acc")
  assert best[0].value == pytest.approx(record.best_val_acc, rel=1e-6)


@pytest.mark.parametrize("member_id,status", [(3, api_pb2.STATUS_FAILURE),
                                              (5, api_pb2.STATUS_SUCCESS),
                                              (11, None)])
def test_session_end_status(logdir, member_id, status):
  data = _hparams(_load(os.path.join(logdir, member_run_name(member_id))))
  if status is None:  # still running: no end yet
    assert "_hparams_/session_end_info" not in data
  else:
    assert data["_hparams_/session_end_info"].session_end_info.status == status


def test_experiment_lists_every_hyperparameter_and_metric(records, logdir):
  experiment = _hparams(_load(logdir))["_hparams_/experiment"].experiment
  infos = {h.name: h for h in experiment.hparam_infos}
  assert set(infos) == {"lr", "optimizer", "widths", "dropout", "batch_size", "activation",
                        "bucket", "status"}
  assert infos["lr"].type == api_pb2.DATA_TYPE_FLOAT64
  lrs = [r.params["lr"] for r in records]
  assert infos["lr"].domain_interval.min_value == pytest.approx(min(lrs))
  assert infos["lr"].domain_interval.max_value == pytest.approx(max(lrs))
  assert infos["optimizer"].type == api_pb2.DATA_TYPE_STRING
  assert [v.string_value for v in infos["optimizer"].domain_discrete.values] == [
      "sgd", "adam", "rmsprop"]
  metrics = [m.name.tag for m in experiment.metric_infos]
  assert "hparam/best_val_acc" in metrics and "hparam/test_acc" in metrics


def test_rewrite_replaces_instead_of_appending(records, tmp_path):
  logdir = str(tmp_path / "tb")
  write_tensorboard(records[:2], logdir)
  write_tensorboard(records[:1], logdir)
  assert [d for d in os.listdir(logdir) if os.path.isdir(os.path.join(logdir, d))] == [
      member_run_name(0)]
  assert len(_load(os.path.join(logdir, member_run_name(0))).Scalars("accuracy/val")) == 8
