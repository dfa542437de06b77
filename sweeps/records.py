"""What we keep of a member, and the crash-safe files a sweep writes.

While a sweep runs it appends one JSON line per member update to `WORKDIR/records.jsonl`; the
last line for a member wins (`read_records` returns exactly that: one record per member).
Appending (instead of rewriting the file) keeps each update O(1) and lets a report read a sweep
that is still running. When the sweep finishes, `compact_records` rewrites the file (atomically)
to one final line per member, so a finished sweep's file can be read line by line by anyone. A crash can tear only the final line: writers cut a torn tail
before appending and readers skip it, so the file never needs repair by hand.

Every other file a sweep writes (config, checkpoints' metadata, reports) goes through
`atomic_write_text`: a temporary file in the same directory, fsynced, then renamed over the
target, so readers see either the old or the new file and never half of one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
from typing import Any, Iterable, Mapping, Sequence

from sweeps import vocab

RECORDS_FILE = "records.jsonl"
CONFIG_FILE = "config.json"

# Statuses and directions are the engine's vocabulary (sweeps.vocab), re-exported for reports.
STATUSES = vocab.STATUSES
FAILED_STATUSES = vocab.FAILED_STATUSES


def _current_umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


# Files written atomically get the permissions a plain open() would give them (mkstemp's are 0600).
_FILE_MODE = 0o666 & ~_current_umask()


def objective_direction(objective: str) -> str:
  """"maximize" or "minimize" for a metric such as "val_acc" or "val_loss" (`vocab.direction`)."""
  return vocab.direction(objective)


def _finite_or_none(value: Any) -> float | None:
  if value is None:
    return None
  value = float(value)
  return value if math.isfinite(value) else None


def to_jsonable(value: Any) -> Any:
  """`value` with non-finite floats as None and numpy scalars/arrays as Python values.

  Strict JSON has no NaN/Infinity; the record contract writes them as null.
  """
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar or array
    return to_jsonable(value.tolist())
  if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
    return value
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  raise TypeError(f"not JSON-serializable: {type(value).__name__} {value!r}")


@dataclasses.dataclass
class Record:
  """One member of a sweep: its hyperparameters, per-epoch history and outcome.

  Attributes mirror the JSON contract of `records.jsonl` (see the module docstring of
  `sweeps.report`). `history[key][epoch]` is None where the value was not finite.
  Unknown JSON fields are kept in `extra` and written back, so an older reader never drops data
  that a newer engine wrote.
  """

  member_id: int
  bucket: str = ""
  params: dict[str, Any] = dataclasses.field(default_factory=dict)
  history: dict[str, list[float | None]] = dataclasses.field(default_factory=dict)
  epochs_run: int = 0
  best_epoch: int | None = None
  status: str = vocab.RUNNING
  wall_time: float = 0.0
  param_count: int = 0
  test: dict[str, float | None] | None = None
  events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  seed: int = 0
  group: str | None = None
  reason: str | None = None
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.status not in STATUSES:
      raise ValueError(
          f"status: unknown {self.status!r} for member {self.member_id}; "
          f"known: {', '.join(STATUSES)}")
    self.history = {k: [_finite_or_none(v) for v in vs] for k, vs in self.history.items()}

  # --- serialization ---------------------------------------------------------------------------

  def to_dict(self) -> dict[str, Any]:
    """The record as a strict-JSON-able dict (non-finite floats as None)."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
    out.update(self.extra)
    return to_jsonable(out)

  def to_json(self) -> str:
    """One line of strict JSON (no newline)."""
    return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"))

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> "Record":
    """Builds a record from a dict; unknown keys go to `extra`."""
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    if "member_id" not in known:
      raise ValueError(f"record without member_id: {sorted(data)}")
    return cls(**known, extra=extra)

  @classmethod
  def from_json(cls, line: str) -> "Record":
    """Parses one JSON line written by `to_json`."""
    return cls.from_dict(json.loads(line))

  # --- metrics ---------------------------------------------------------------------------------

  def finite_values(self, key: str) -> list[tuple[int, float]]:
    """(epoch, value) pairs of `history[key]` whose value is finite."""
    return [(i, v) for i, v in enumerate(self.history.get(key, ())) if v is not None]

  def final(self, key: str) -> float | None:
    """The last epoch's value of `key`; None if absent or not finite (e.g. diverged)."""
    values = self.history.get(key) or [None]
    return values[-1]

  def best(self, key: str) -> float | None:
    """The best finite value of `key` over epochs (max for accuracies, min otherwise)."""
    values = [v for _, v in self.finite_values(key)]
    if not values:
      return None
    return max(values) if objective_direction(key) == vocab.MAXIMIZE else min(values)

  def best_epoch_for(self, objective: str) -> int | None:
    """The epoch whose `objective` is best: the engine's `best_epoch`, else the argbest."""
    if self.best_epoch is not None and self._value_at(objective, self.best_epoch) is not None:
      return self.best_epoch
    pairs = self.finite_values(objective)
    if not pairs:
      return None
    sign = 1.0 if objective_direction(objective) == vocab.MAXIMIZE else -1.0
    return max(pairs, key=lambda p: (sign * p[1], -p[0]))[0]

  def objective_value(self, objective: str) -> float | None:
    """The member's score: `objective` at its best epoch, None if it never had a finite one."""
    epoch = self.best_epoch_for(objective)
    return None if epoch is None else self._value_at(objective, epoch)

  def _value_at(self, key: str, epoch: int) -> float | None:
    values = self.history.get(key, ())
    return values[epoch] if 0 <= epoch < len(values) else None

  @property
  def best_val_acc(self) -> float | None:
    return self.best(vocab.VAL_ACC)

  @property
  def best_val_loss(self) -> float | None:
    return self.best(vocab.VAL_LOSS)

  @property
  def best_train_acc(self) -> float | None:
    return self.best(vocab.TRAIN_ACC)

  @property
  def best_train_loss(self) -> float | None:
    return self.best(vocab.TRAIN_LOSS)

  @property
  def final_val_acc(self) -> float | None:
    return self.final(vocab.VAL_ACC)

  @property
  def final_val_loss(self) -> float | None:
    return self.final(vocab.VAL_LOSS)

  @property
  def final_train_acc(self) -> float | None:
    return self.final(vocab.TRAIN_ACC)

  @property
  def final_train_loss(self) -> float | None:
    return self.final(vocab.TRAIN_LOSS)

  @property
  def test_acc(self) -> float | None:
    return _finite_or_none((self.test or {}).get("acc"))

  @property
  def test_loss(self) -> float | None:
    return _finite_or_none((self.test or {}).get("loss"))

  @property
  def failed(self) -> bool:
    return self.status in FAILED_STATUSES


# --- files -----------------------------------------------------------------------------------


def _fsync_dir(directory: str) -> None:
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:  # e.g. platforms without directory handles
    return
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """Replaces `path` with `text` so readers see the old or the new file, never a mix.

  Args:
    path: target file; its directory is created if missing.
    text: the full new content.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      os.fchmod(f.fileno(), _FILE_MODE)
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  _fsync_dir(directory)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> None:
  """`atomic_write_text` of `obj` as strict JSON (non-finite floats written as null)."""
  atomic_write_text(path, json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n")


def _end_torn_tail(path: str) -> None:
  """Makes `path` end with a newline before an append.

  A crash mid-append leaves a partial last line: it is cut. A complete record that only lacks
  its newline (the crash hit between the two writes) is kept and terminated.
  """
  with open(path, "rb+") as f:
    size = f.seek(0, os.SEEK_END)
    if size == 0:
      return
    f.seek(size - 1)
    if f.read(1) == b"\n":
      return
    block, start = 1 << 16, size
    tail = b""
    while start > 0:  # walk back to the last newline in blocks
      start = max(0, start - block)
      f.seek(start)
      tail = f.read(size - start)
      cut = tail.rfind(b"\n")
      if cut >= 0:
        start, tail = start + cut + 1, tail[cut + 1:]
        break
    try:
      Record.from_json(tail.decode("utf-8"))
    except (ValueError, TypeError):
      f.truncate(start)
      return
    f.seek(size)
    f.write(b"\n")


def append_records(workdir: str | os.PathLike, records: Iterable[Record]) -> None:
  """Appends `records` to `WORKDIR/records.jsonl` and fsyncs it.

  A torn final line left by an earlier crash is cut first, so it never glues onto a new line.

  Args:
    workdir: the sweep directory (created if missing).
    records: the member states to append; later lines win over earlier ones per member.
  """
  workdir = os.fspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  lines = "".join(r.to_json() + "\n" for r in records)
  if not lines:
    return
  path = os.path.join(workdir, RECORDS_FILE)
  existed = os.path.exists(path)
  if existed:
    _end_torn_tail(path)
  with open(path, "a", encoding="utf-8") as f:
    f.write(lines)
    f.flush()
    os.fsync(f.fileno())
  if not existed:
    _fsync_dir(workdir)


def read_records(workdir: str | os.PathLike) -> list[Record]:
  """Reads `WORKDIR/records.jsonl`, keeping the last line per member.

  An incomplete final line (a crash mid-append) is skipped with a warning; an unparsable line
  anywhere else is corruption and raises.

  Args:
    workdir: the sweep directory.

  Returns:
    One record per member, ordered by member_id; [] when the file does not exist yet.

  Raises:
    ValueError: a line before the last one is not a valid record.
  """
  path = os.path.join(os.fspath(workdir), RECORDS_FILE)
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8", errors="replace") as f:  # a torn tail may be cut anywhere
    text = f.read()
  lines = text.split("\n")
  complete_tail = text.endswith("\n")
  latest: dict[int, Record] = {}
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    is_last = number == len(lines)  # only possible when the file lacks a final newline
    try:
      record = Record.from_json(line)
    except (ValueError, TypeError) as e:
      if is_last and not complete_tail:
        logging.warning("%s: skipping torn final line %d (%d bytes)", path, number, len(line))
        continue
      raise ValueError(f"{path}:{number}: not a valid record: {e}") from e
    latest[record.member_id] = record
  return [latest[k] for k in sorted(latest)]


def compact_records(workdir: str | os.PathLike) -> int:
  """Rewrites `WORKDIR/records.jsonl` to one (the last) line per member, atomically.

  Returns:
    The number of records (members) in the file now.
  """
  records = read_records(workdir)
  if records:
    atomic_write_text(os.path.join(os.fspath(workdir), RECORDS_FILE),
                      "".join(r.to_json() + "\n" for r in records))
  return len(records)


def read_config(workdir: str | os.PathLike) -> dict[str, Any]:
  """The sweep's resolved `config.json` as a dict; {} when absent."""
  path = os.path.join(os.fspath(workdir), CONFIG_FILE)
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def sort_by_objective(records: Sequence[Record], objective: str) -> list[Record]:
  """Best member first by `objective`; members without a finite value last, ties by id."""
  sign = -1.0 if objective_direction(objective) == vocab.MAXIMIZE else 1.0

  def key(r: Record):
    value = r.objective_value(objective)
    return (value is None, 0.0 if value is None else sign * value, r.member_id)

  return sorted(records, key=key)
