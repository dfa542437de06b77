"""TensorBoard logs of a sweep: per-member curves and the HParams dashboard.

Layout under the log directory (open with `tensorboard --logdir WORKDIR/report/tensorboard`):
  * the root run holds the HParams *experiment*: every hyperparameter with its type and domain
    (discrete values or the observed interval) and the metrics to compare;
  * `member_0007/` holds one member: scalars per epoch (loss/train, loss/val, accuracy/train,
    accuracy/val, learning_rate; step = the 1-based epoch, as in the tables), its HParams session
    (hyperparameters plus bucket/status/group) and the session metrics `hparam/*`.

Events are written with tensorboardX's `SummaryWriter` (a maintained writer with no TensorFlow
dependency); the summaries are built from the HParams protos it ships. The directory is rebuilt
from scratch on every render, so re-rendering a running sweep never duplicates points.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Sequence

from google.protobuf import struct_pb2
from tensorboardX import SummaryWriter
from tensorboardX.proto import api_pb2, plugin_hparams_pb2
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

from sweeps import vocab
from sweeps.records import Record
from sweeps.reporting.params import ParamAxis, categorical_value, param_axes

SCALAR_TAGS = {
    vocab.TRAIN_LOSS: "loss/train",
    vocab.VAL_LOSS: "loss/val",
    vocab.TRAIN_ACC: "accuracy/train",
    vocab.VAL_ACC: "accuracy/val",
    vocab.LR: "learning_rate",
}
# Session metrics shown as columns of the HParams dashboard (one value per member).
SESSION_METRICS = ("best_val_acc", "best_val_loss", "final_val_acc", "final_val_loss",
                   "test_acc", "test_loss")
# Identity fields shown as hyperparameters so the dashboard can filter and colour by them.
IDENTITY_HPARAMS = ("bucket", "status", "group")
SESSION_STATUS = {
    vocab.COMPLETE: api_pb2.STATUS_SUCCESS, vocab.STOPPED: api_pb2.STATUS_SUCCESS,
    vocab.PRUNED: api_pb2.STATUS_SUCCESS, vocab.DIVERGED: api_pb2.STATUS_FAILURE,
    vocab.FAILED: api_pb2.STATUS_FAILURE, vocab.RUNNING: api_pb2.STATUS_RUNNING,
}
_PLUGIN = "hparams"


def member_run_name(member_id: int) -> str:
  """The run (subdirectory) of one member."""
  return f"member_{member_id:04d}"


def _hparams_summary(tag: str, data: plugin_hparams_pb2.HParamsPluginData) -> Summary:
  metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
      plugin_name=_PLUGIN, content=data.SerializeToString()))
  return Summary(value=[Summary.Value(tag=tag, metadata=metadata)])


def _tb_kind(axis: ParamAxis) -> str:
  """TensorBoard types: numbers stay numbers, all-bool stays bool, other categories strings."""
  if axis.kind in ("int", "float"):
    return "number"
  if axis.choices and all(isinstance(c, bool) for c in axis.choices):
    return "bool"
  return "string"


def _tb_value(kind: str, value: Any) -> struct_pb2.Value:
  if kind == "number":
    return struct_pb2.Value(number_value=float(value))
  if kind == "bool":
    return struct_pb2.Value(bool_value=bool(value))
  return struct_pb2.Value(string_value=str(categorical_value(value)))


def _identity_axes(records: Sequence[Record]) -> list[ParamAxis]:
  axes = []
  for name in IDENTITY_HPARAMS:
    values = list(dict.fromkeys(getattr(r, name) for r in records if getattr(r, name) is not None))
    if values:
      axes.append(ParamAxis(name, "categorical", choices=tuple(values), varies=len(values) > 1))
  return axes


def _hparam_info(axis: ParamAxis, kind: str) -> api_pb2.HParamInfo:
  if kind == "number":
    return api_pb2.HParamInfo(
        name=axis.name, type=api_pb2.DATA_TYPE_FLOAT64,
        domain_interval=api_pb2.Interval(min_value=float(axis.low), max_value=float(axis.high)))
  data_type = api_pb2.DATA_TYPE_BOOL if kind == "bool" else api_pb2.DATA_TYPE_STRING
  values = struct_pb2.ListValue(values=[_tb_value(kind, c) for c in axis.choices])
  return api_pb2.HParamInfo(name=axis.name, type=data_type, domain_discrete=values)


def write_tensorboard(records: Sequence[Record], logdir: str) -> str:
  """Writes the HParams experiment and one run per member under `logdir` (rebuilt).

  Args:
    records: the members.
    logdir: the log directory; removed and recreated.

  Returns:
    `logdir`.
  """
  if os.path.isdir(logdir):
    shutil.rmtree(logdir)
  os.makedirs(logdir)
  param_axis_list = [a for a in param_axes(records)
                     if a.name not in IDENTITY_HPARAMS]  # a param named like one is shadowed
  axes = param_axis_list + _identity_axes(records)
  kinds = {a.name: _tb_kind(a) for a in axes}

  experiment = api_pb2.Experiment(
      hparam_infos=[_hparam_info(a, kinds[a.name]) for a in axes],
      metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=f"hparam/{m}"))
                    for m in SESSION_METRICS])
  with SummaryWriter(logdir=logdir) as root:
    root.file_writer.add_summary(_hparams_summary(
        "_hparams_/experiment", plugin_hparams_pb2.HParamsPluginData(experiment=experiment)))

  for record in records:
    _write_member(record, os.path.join(logdir, member_run_name(record.member_id)), kinds)
  return logdir


def _write_member(record: Record, rundir: str, kinds: dict[str, str]) -> None:
  hparams = dict(record.params)
  hparams.update({n: getattr(record, n) for n in IDENTITY_HPARAMS})
  start = plugin_hparams_pb2.SessionStartInfo()
  for name, value in hparams.items():
    if value is not None and name in kinds:
      start.hparams[name].CopyFrom(_tb_value(kinds[name], value))
  with SummaryWriter(logdir=rundir, max_queue=1000, flush_secs=3600) as writer:
    writer.file_writer.add_summary(_hparams_summary(
        "_hparams_/session_start_info", plugin_hparams_pb2.HParamsPluginData(
            session_start_info=start)))
    for key, values in record.history.items():
      tag = SCALAR_TAGS.get(key, f"other/{key}")
      for epoch, value in enumerate(values, start=1):
        if value is not None:  # non-finite epochs are left out, not drawn as NaN
          writer.add_scalar(tag, value, epoch)
    last_epoch = max(1, record.epochs_run)
    for metric in SESSION_METRICS:
      value = getattr(record, metric)
      if value is not None:
        writer.add_scalar(f"hparam/{metric}", value, last_epoch)
    if record.status != vocab.RUNNING:
      end = plugin_hparams_pb2.SessionEndInfo(status=SESSION_STATUS[record.status])
      writer.file_writer.add_summary(_hparams_summary(
          "_hparams_/session_end_info", plugin_hparams_pb2.HParamsPluginData(
              session_end_info=end)))
