"""Results table: CSV/JSONL round trips, columns, the terminal table; parameter axes."""

import csv
import math
import re

import pytest

from sweeps.records import Record
from sweeps.reporting import synthetic
from sweeps.reporting.params import format_value, looks_logarithmic, param_axes, param_axis
from sweeps.reporting.table import (ID_COLUMNS, METRIC_COLUMNS, format_table, read_results_csv,
                                    read_results_jsonl, result_columns, result_rows,
                                    write_results)


@pytest.fixture(scope="module")
def records():
  return synthetic.sweep_records(n_members=12, epochs=8, seed=0)


def test_csv_and_jsonl_round_trip(records, tmp_path):
  csv_path, jsonl_path = write_results(records, str(tmp_path), "val_acc")
  rows = result_rows(records, "val_acc")
  assert read_results_jsonl(jsonl_path) == rows
  assert read_results_csv(csv_path) == rows  # floats written with repr() come back exactly
  with open(csv_path, newline="") as f:
    header = next(csv.reader(f))
  assert header == result_columns(records)


def test_one_row_per_member_with_every_hyperparameter_as_a_column(records):
  rows = result_rows(records, "val_acc")
  assert [r["member_id"] for r in rows] == list(range(12))
  columns = result_columns(records)
  for name in ("lr", "optimizer", "widths", "dropout", "batch_size", "activation"):
    assert name in columns
  assert columns[:len(ID_COLUMNS)] == list(ID_COLUMNS)
  assert columns[-len(METRIC_COLUMNS):] == list(METRIC_COLUMNS)
  r0 = records[0]
  assert rows[0]["widths"] == r0.params["widths"]  # lists stay lists in JSONL
  assert rows[0]["best_val_acc"] == max(r0.history["val_acc"])
  assert rows[0]["final_train_loss"] == r0.history["train_loss"][-1]
  assert rows[0]["objective"] == r0.objective_value("val_acc")
  assert rows[0]["epochs_run"] == 8 and rows[0]["status"] == "complete"


def test_diverged_member_row_has_null_finals_and_finite_bests(records):
  row = result_rows(records, "val_acc")[3]
  assert row["status"] == "diverged"
  assert row["final_val_loss"] is None and row["final_val_acc"] is None
  assert row["best_val_loss"] == pytest.approx(records[3].history["val_loss"][1])
  assert row["test_acc"] is None and row["reason"].startswith("non-finite")


def test_hyperparameter_named_like_a_metric_column_is_prefixed():
  record = Record(member_id=0, params={"status": "x", "lr": 0.1}, history={"val_acc": [0.5]})
  columns = result_columns([record])
  assert "hp.status" in columns and "lr" in columns
  row = result_rows([record])[0]
  assert row["hp.status"] == "x" and row["status"] == "running"


def test_terminal_table_is_sorted_aligned_and_hides_fixed_params(records):
  text = format_table(records, top=5, objective="val_acc")
  lines = text.splitlines()
  assert lines[0].startswith("top 5 of 12 members by val_acc (maximize)")
  assert lines[1] == "fixed: activation=relu"
  header, rule, *body = lines[2:]
  assert len(body) == 5
  assert "activation" not in header and "optimizer" in header
  # Aligned: the rule's dash runs are the columns; every cell sits inside its run.
  spans = [m.span() for m in re.finditer(r"-+", rule)]
  assert len(spans) == 14  # rank, member, status, 5 varying params, 6 metrics
  for line in [header, *body]:
    for (start, end), (next_start, _) in zip(spans, spans[1:] + [(len(rule) + 2, 0)]):
      assert line[end:next_start].strip() == "", (line, start, end)
  numeric_end = spans[0][1] - 1  # 'rank' is right-aligned: digits end where its run ends
  assert all(line[numeric_end].isdigit() for line in body)
  cells = [[line[a:b].strip() for a, b in spans] for line in body]
  expected = sorted(records, key=lambda r: -(r.objective_value("val_acc") or -1))[:5]
  assert [int(c[1]) for c in cells] == [r.member_id for r in expected]
  assert [float(c[8]) for c in cells] == [round(r.objective_value("val_acc"), 4)
                                          for r in expected]


def test_terminal_table_by_loss_ranks_ascending(records):
  body = format_table(records, top=3, objective="val_loss").splitlines()[4:]
  losses = [float(line.split()[-6]) for line in body]
  assert losses == sorted(losses)


def test_terminal_table_without_records():
  assert format_table([], 5) == "(no members recorded yet)"


@pytest.mark.parametrize("values,log", [
    ([1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], True),   # log-uniform learning rates
    ([1e-3, 1e-2, 1e-1], True),                           # a decade grid
    ([0.005, 0.1, 0.2, 0.3, 0.4, 0.5], False),            # uniform dropout spanning 100x
    ([0.0, 0.25, 0.5], False),                            # zero is never log
    ([32, 64, 128], False),                               # less than 10x
])
def test_looks_logarithmic(values, log):
  assert looks_logarithmic(values) is log


def test_param_axes_classify_and_position(records):
  axes = {a.name: a for a in param_axes(records)}
  assert axes["lr"].kind == "float" and axes["lr"].log
  assert axes["batch_size"].kind == "int" and not axes["batch_size"].log
  assert axes["widths"].kind == "categorical" and "[128,64]" in axes["widths"].choices
  assert not axes["activation"].varies
  lr = axes["lr"]
  mid = math.sqrt(lr.low * lr.high)
  assert lr.position(lr.low) == 0 and lr.position(lr.high) == pytest.approx(1)
  assert lr.position(mid) == pytest.approx(0.5)
  opt = axes["optimizer"]
  assert [opt.position(c) for c in opt.choices] == [0.0, 0.5, 1.0]
  assert opt.position(None) is None


def test_conditional_and_mixed_parameters():
  records = [Record(member_id=0, params={"momentum": 0.9, "beta": 1}),
             Record(member_id=1, params={"momentum": None, "beta": 0.5}),
             Record(member_id=2, params={"flag": True})]
  assert param_axis(records, "momentum").kind == "float"
  assert not param_axis(records, "momentum").varies  # None means "not used", not a value
  assert param_axis(records, "beta").kind == "float"  # int and float mix as float
  assert param_axis(records, "flag").kind == "categorical"


@pytest.mark.parametrize("value,text", [(None, "-"), (0.000123456, "0.0001235"), (3, "3"),
                                        (True, "True"), ([128, 64], "[128,64]"),
                                        (float("nan"), "nan"), ("adam", "adam")])
def test_format_value(value, text):
  assert format_value(value) == text


def test_format_value_truncates():
  assert format_value("a_very_long_name", 6) == "a_ver…"
