"""Records: JSON round trips, last-wins reading, torn lines, atomic writes, metric properties."""

import json
import math
import os
import stat

import pytest

from sweeps.records import (RECORDS_FILE, STATUSES, Record, append_records, atomic_write_json,
                            atomic_write_text, objective_direction, read_config, read_records,
                            sort_by_objective)


def _record(member_id, val_acc=(0.5, 0.7, 0.6), status="complete", **kw):
  n = len(val_acc)
  history = {"train_loss": [2.0 - 0.1 * i for i in range(n)],
             "train_acc": [0.4 + 0.1 * i for i in range(n)],
             "val_loss": [1.0 - 0.1 * i for i in range(n)], "val_acc": list(val_acc),
             "lr": [0.1] * n}
  kw.setdefault("history", history)
  return Record(member_id=member_id, bucket="b0", params={"lr": 0.1, "widths": [64, 32]},
                epochs_run=n, status=status, **kw)


def test_json_round_trip_keeps_every_field_and_unknown_extras():
  record = _record(3, best_epoch=1, seed=7, group="optimizer=adam", reason=None,
                   test={"loss": 0.3, "acc": 0.9}, events=[{"epoch": 1, "kind": "exploit"}],
                   wall_time=12.5, param_count=1234)
  data = json.loads(record.to_json())
  data["future_field"] = {"x": 1}
  back = Record.from_dict(data)
  assert back.extra == {"future_field": {"x": 1}}
  back.extra = {}
  assert back == record
  assert json.loads(Record.from_dict(data).to_json())["future_field"] == {"x": 1}


def test_non_finite_values_are_written_as_null():
  record = _record(0, val_acc=(0.5, float("nan"), float("inf")), test={"loss": float("nan"),
                                                                      "acc": 0.1})
  line = record.to_json()
  assert "NaN" not in line and "Infinity" not in line
  data = json.loads(line)
  assert data["history"]["val_acc"] == [0.5, None, None]
  assert data["test"] == {"loss": None, "acc": 0.1}
  assert Record.from_json(line).history["val_acc"] == [0.5, None, None]


def test_unknown_status_fails_with_the_known_ones():
  with pytest.raises(ValueError, match="status: unknown 'halved'.*known: complete, stopped"):
    _record(0, status="halved")


@pytest.mark.parametrize("status", STATUSES)
def test_every_status_round_trips(status):
  assert Record.from_json(_record(1, status=status).to_json()).status == status


def test_metric_properties_use_direction_and_skip_nulls():
  record = Record(member_id=0, history={
      "val_acc": [0.2, 0.8, None, 0.7], "val_loss": [2.0, 0.5, None, 0.9],
      "train_acc": [0.3, 0.6, 0.9, 0.95], "train_loss": [3.0, 1.0, 0.4, 0.2]},
      best_epoch=1, epochs_run=4)
  assert record.best_val_acc == 0.8 and record.best_val_loss == 0.5
  assert record.final_val_acc == 0.7 and record.final_val_loss == 0.9
  assert record.best_train_acc == 0.95 and record.final_train_loss == 0.2
  assert record.objective_value("val_acc") == 0.8
  assert record.objective_value("val_loss") == 0.5
  assert record.test_acc is None


def test_final_is_none_when_the_last_epoch_diverged():
  record = Record(member_id=0, history={"val_loss": [1.0, None]}, status="diverged")
  assert record.final_val_loss is None and record.best_val_loss == 1.0 and record.failed


def test_objective_falls_back_to_argbest_when_best_epoch_missing_or_null():
  record = Record(member_id=0, history={"val_acc": [0.1, 0.6, 0.6, None]}, best_epoch=3)
  assert record.best_epoch_for("val_acc") == 1  # first of the tied best epochs
  assert record.objective_value("val_acc") == 0.6
  assert Record(member_id=1, history={"val_acc": [None]}).objective_value("val_acc") is None


def test_engine_best_epoch_wins_over_argbest():
  # e.g. the engine picks by a smoothed metric; the report shows the epoch it kept.
  record = Record(member_id=0, history={"val_acc": [0.1, 0.6, 0.5]}, best_epoch=2)
  assert record.objective_value("val_acc") == 0.5


@pytest.mark.parametrize("objective,direction", [("val_acc", "maximize"), ("train_acc", "maximize"),
                                                 ("val_loss", "minimize"), ("loss", "minimize")])
def test_objective_direction(objective, direction):
  assert objective_direction(objective) == direction


def test_sort_by_objective_best_first_missing_last():
  records = [_record(0, (0.5,)), _record(1, (0.9,)), _record(2, (None,)), _record(3, (0.7,))]
  assert [r.member_id for r in sort_by_objective(records, "val_acc")] == [1, 3, 0, 2]
  for r, loss in zip(records, (0.3, 0.1, None, 0.2)):
    r.history["val_loss"] = [loss]
  assert [r.member_id for r in sort_by_objective(records, "val_loss")] == [1, 3, 0, 2]


def test_append_then_read_keeps_the_last_line_per_member_sorted(tmp_path):
  append_records(tmp_path, [_record(2, (0.1,)), _record(0, (0.2,))])
  append_records(tmp_path, [_record(2, (0.1, 0.3), status="running")])
  append_records(tmp_path, [_record(1, (0.5,)), _record(2, (0.1, 0.3, 0.4))])
  records = read_records(tmp_path)
  assert [r.member_id for r in records] == [0, 1, 2]
  assert records[2].history["val_acc"] == [0.1, 0.3, 0.4] and records[2].status == "complete"
  with open(tmp_path / RECORDS_FILE) as f:
    assert len(f.readlines()) == 5


def test_read_missing_file_is_empty(tmp_path):
  assert read_records(tmp_path) == []
  assert read_config(tmp_path) == {}


def test_torn_last_line_is_skipped_and_cut_before_the_next_append(tmp_path):
  append_records(tmp_path, [_record(0), _record(1)])
  path = tmp_path / RECORDS_FILE
  torn = _record(2).to_json()[:37]
  with open(path, "a") as f:
    f.write(torn)  # a crash in the middle of a write
  assert [r.member_id for r in read_records(tmp_path)] == [0, 1]
  append_records(tmp_path, [_record(3)])
  assert [r.member_id for r in read_records(tmp_path)] == [0, 1, 3]
  assert torn not in path.read_text()


def test_complete_record_missing_only_its_newline_is_kept(tmp_path):
  append_records(tmp_path, [_record(0)])
  with open(tmp_path / RECORDS_FILE, "a") as f:
    f.write(_record(1).to_json())  # crash between the line and its newline
  assert [r.member_id for r in read_records(tmp_path)] == [0, 1]
  append_records(tmp_path, [_record(2)])
  assert [r.member_id for r in read_records(tmp_path)] == [0, 1, 2]


def test_file_with_only_a_torn_line(tmp_path):
  (tmp_path / RECORDS_FILE).write_text('{"member_id": 0, "hist')
  assert read_records(tmp_path) == []
  append_records(tmp_path, [_record(5)])
  assert [r.member_id for r in read_records(tmp_path)] == [5]


def test_corrupt_line_before_the_end_raises_with_its_line_number(tmp_path):
  append_records(tmp_path, [_record(0)])
  with open(tmp_path / RECORDS_FILE, "a") as f:
    f.write("garbage\n")
  append_records(tmp_path, [_record(1)])
  with pytest.raises(ValueError, match=r"records.jsonl:2: not a valid record"):
    read_records(tmp_path)


def test_atomic_write_text_replaces_and_leaves_no_temporary_files(tmp_path):
  target = tmp_path / "sub" / "config.json"
  atomic_write_text(target, "one")
  atomic_write_text(target, "two")
  assert target.read_text() == "two"
  assert os.listdir(target.parent) == ["config.json"]
  mode = stat.S_IMODE(os.stat(target).st_mode)
  assert mode & 0o644 == 0o644  # readable like a normal file, not mkstemp's 0600


def test_atomic_write_text_keeps_the_old_file_when_writing_fails(tmp_path):
  target = tmp_path / "a.txt"
  atomic_write_text(target, "old")

  with pytest.raises(TypeError):
    atomic_write_text(target, 123)  # not text: fails while writing the temporary file
  assert target.read_text() == "old"
  assert os.listdir(tmp_path) == ["a.txt"]


def test_atomic_write_json_is_strict_json(tmp_path):
  atomic_write_json(tmp_path / "c.json", {"objective": "val_acc", "x": math.nan, "n": [1, 2]})
  assert json.loads((tmp_path / "c.json").read_text()) == {"objective": "val_acc", "x": None,
                                                           "n": [1, 2]}
  assert read_config(tmp_path / "nope") == {}
  os.rename(tmp_path / "c.json", tmp_path / "config.json")
  assert read_config(tmp_path)["objective"] == "val_acc"
