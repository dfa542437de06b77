"""The results table: one flat row per member, as CSV, JSON Lines and a terminal table.

The reference studies ended in tables copied by hand; this is the table they wanted, in the
formats spreadsheets, pandas and `jq` open. A row is flat so every tool sees one column per
hyperparameter. In JSON Lines values keep their JSON types (lists stay lists); in CSV lists are
written as compact JSON and `read_results_csv` turns them back.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Any, Sequence

from sweeps import vocab
from sweeps.records import Record, atomic_write_text, objective_direction, sort_by_objective, \
    to_jsonable
from sweeps.reporting.params import format_value, is_number, param_axes, param_names

# Columns before the hyperparameters (who the member is) and after them (how it did).
ID_COLUMNS = ("member_id", "group", "seed", "bucket", "status")
METRIC_COLUMNS = (
    "objective", "best_epoch", "epochs_run",
    "final_train_loss", "final_train_acc", "final_val_loss", "final_val_acc",
    "best_train_loss", "best_train_acc", "best_val_loss", "best_val_acc",
    "test_loss", "test_acc", "wall_time", "param_count", "reason",
)
# A hyperparameter whose name collides with a fixed column gets this prefix.
PARAM_PREFIX = "hp."


def _param_column(name: str) -> str:
  return PARAM_PREFIX + name if name in ID_COLUMNS or name in METRIC_COLUMNS else name


def result_columns(records: Sequence[Record]) -> list[str]:
  """The column order: identity, every hyperparameter (first-seen order), metrics."""
  return [*ID_COLUMNS, *(_param_column(n) for n in param_names(records)), *METRIC_COLUMNS]


def result_row(record: Record, objective: str, names: Sequence[str]) -> dict[str, Any]:
  """One member as a flat dict (strict-JSON values; None where a metric is missing).

  Args:
    record: the member.
    objective: the metric the sweep ranks by; `objective` is its value at the best epoch.
    names: hyperparameter names to emit (missing ones become None).
  """
  row: dict[str, Any] = {c: getattr(record, c) for c in ID_COLUMNS}
  for name in names:
    row[_param_column(name)] = record.params.get(name)
  row["objective"] = record.objective_value(objective)
  best_epoch = record.best_epoch_for(objective)
  row["best_epoch"] = None if best_epoch is None else best_epoch + 1   # 1-based, as the table
  for column in METRIC_COLUMNS[2:]:
    row[column] = getattr(record, column)
  return to_jsonable(row)


def result_rows(records: Sequence[Record], objective: str = vocab.DEFAULT_OBJECTIVE) -> list[dict[str, Any]]:
  """`result_row` for every member, ordered by member_id."""
  names = param_names(records)
  return [result_row(r, objective, names) for r in sorted(records, key=lambda r: r.member_id)]


def _csv_cell(value: Any) -> str:
  if value is None:
    return ""
  if isinstance(value, (list, tuple, dict)):
    return json.dumps(value, separators=(",", ":"))
  if isinstance(value, float):
    return repr(value)  # shortest round-tripping form
  return str(value)


def results_csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
  """Rows as CSV text with a header (None as an empty cell, lists as JSON)."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(columns)
  for row in rows:
    writer.writerow([_csv_cell(row.get(c)) for c in columns])
  return buffer.getvalue()


def write_results(records: Sequence[Record], directory: str, objective: str = vocab.DEFAULT_OBJECTIVE
                  ) -> tuple[str, str]:
  """Writes `results.csv` and `results.jsonl` (atomically) into `directory`.

  Returns:
    The two paths.
  """
  rows = result_rows(records, objective)
  columns = result_columns(records)
  csv_path = os.path.join(directory, "results.csv")
  jsonl_path = os.path.join(directory, "results.jsonl")
  atomic_write_text(csv_path, results_csv_text(rows, columns))
  atomic_write_text(jsonl_path, "".join(
      json.dumps({c: row.get(c) for c in columns}, allow_nan=False) + "\n" for row in rows))
  return csv_path, jsonl_path


def _parse_cell(text: str) -> Any:
  if text == "":
    return None
  if text in ("True", "False"):
    return text == "True"
  for parse in (int, float):
    try:
      return parse(text)
    except ValueError:
      pass
  if text[:1] in "[{":
    try:
      return json.loads(text)
    except ValueError:
      pass
  return text


def read_results_csv(path: str) -> list[dict[str, Any]]:
  """Reads a `results.csv` back with typed values (numbers, bools, lists, None)."""
  with open(path, newline="", encoding="utf-8") as f:
    return [{k: _parse_cell(v) for k, v in row.items()} for row in csv.DictReader(f)]


def read_results_jsonl(path: str) -> list[dict[str, Any]]:
  """Reads a `results.jsonl` back."""
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


# --- terminal table ----------------------------------------------------------------------------


def render_text_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                      numeric: Sequence[bool]) -> str:
  """Aligns string cells into columns: numbers right-aligned, text left-aligned."""
  widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

  def line(cells):
    return "  ".join(c.rjust(w) if num else c.ljust(w)
                     for c, w, num in zip(cells, widths, numeric)).rstrip()

  rule = "  ".join("-" * w for w in widths)
  return "\n".join([line(header), rule, *(line(r) for r in rows)])


def format_table(records: Sequence[Record], top: int = 10, *, objective: str = vocab.DEFAULT_OBJECTIVE,
                 max_width: int = 20) -> str:
  """The best `top` members as an aligned text table, best first.

  Only hyperparameters that vary across members get a column; the fixed ones are listed once
  above the table, so the table stays narrow enough for a terminal.

  Args:
    records: all members of the sweep.
    top: how many rows to show.
    objective: the metric to rank by (its direction follows `objective_direction`).
    max_width: hyperparameter cells longer than this are truncated.

  Returns:
    The table as a string (no trailing newline).
  """
  if not records:
    return "(no members recorded yet)"
  ranked = sort_by_objective(records, objective)[:max(0, top)]
  axes = param_axes(records)
  varying = [a.name for a in axes if a.varies]
  fixed = [a.name for a in axes if not a.varies]
  other = vocab.VAL_LOSS if objective != vocab.VAL_LOSS else vocab.VAL_ACC
  header = ["rank", "member", "status", *varying, f"best {objective}", f"best {other}",
            "epoch", "epochs", "test_acc", "time_s"]
  numeric = [True, True, False, *(_is_numeric_column(records, n) for n in varying)] + [True] * 6
  rows = []
  for rank, r in enumerate(ranked, start=1):
    best_epoch = r.best_epoch_for(objective)
    rows.append([
        str(rank), str(r.member_id), r.status,
        *(format_value(r.params.get(n), max_width) for n in varying),
        _metric(r.objective_value(objective)), _metric(r.best(other)),
        "-" if best_epoch is None else str(best_epoch + 1), str(r.epochs_run),
        _metric(r.test_acc), f"{r.wall_time:.1f}",
    ])
  direction = objective_direction(objective)
  title = (f"top {len(ranked)} of {len(records)} members by {objective} ({direction}); "
           f"epochs are 1-based")
  lines = [title]
  if fixed:
    fixed_text = ", ".join(f"{n}={format_value(_first_value(records, n), max_width)}"
                           for n in fixed)
    lines.append(f"fixed: {fixed_text}")
  lines.append(render_text_table(header, rows, numeric))
  return "\n".join(lines)


def _is_numeric_column(records: Sequence[Record], name: str) -> bool:
  values = [r.params.get(name) for r in records]
  return all(v is None or is_number(v) for v in values)


def _first_value(records: Sequence[Record], name: str) -> Any:
  return next((r.params[name] for r in records if r.params.get(name) is not None), None)


def _metric(value: float | None) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "-"
  return f"{value:.4f}"
