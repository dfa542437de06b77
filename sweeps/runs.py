"""`python -m sweeps.runs ROOT`: the sweeps under a folder, one line each.

    name  dataset  strategy  members  best  status  started  elapsed

A sweep is any folder holding a `config.json` (written when its first plan starts). Status:
  * running: `running.json` names a live process on this host;
  * interrupted: `running.json` is left by a process that is gone (killed), or no process and
    some member is still unfinished (stopped with SIGTERM/SIGINT: resume with the same command);
  * finished: no process and every member finished.
`best` is the best member's objective (the sweep's --objective, at its best epoch); `elapsed` is
from the config's creation to the last record written.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
from typing import Any, Sequence

from sweeps import records as records_lib
from sweeps import vocab

RUNNING_FILE = "running.json"


def mark_running(workdir: str) -> None:
  """Writes `running.json` (this process): what tells `runs` that a sweep is alive."""
  records_lib.atomic_write_json(os.path.join(workdir, RUNNING_FILE),
                                {"pid": os.getpid(), "host": socket.gethostname()})


def clear_running(workdir: str) -> None:
  try:
    os.unlink(os.path.join(workdir, RUNNING_FILE))
  except FileNotFoundError:
    pass


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:   # someone else's live process
    return True
  return True


def status(workdir: str, recs: Sequence[records_lib.Record]) -> str:
  """finished | running | interrupted (see the module docstring)."""
  path = os.path.join(workdir, RUNNING_FILE)
  if os.path.exists(path):
    try:
      with open(path) as f:
        owner = json.load(f)
    except (OSError, ValueError):
      owner = {}
    if owner.get("host") != socket.gethostname():
      return vocab.RUNNING   # another host: cannot check; its file says it runs
    return vocab.RUNNING if _alive(int(owner.get("pid", -1))) else vocab.INTERRUPTED
  if not recs or any(r.status == vocab.RUNNING for r in recs):
    return vocab.INTERRUPTED
  return vocab.FINISHED


def describe(workdir: str) -> dict[str, Any]:
  """One sweep's summary line as a dict (name, dataset, strategy, members, best, ...)."""
  config = records_lib.read_config(workdir)
  try:
    recs = records_lib.read_records(workdir)
  except ValueError:
    recs = []
  objective = config.get("objective", vocab.DEFAULT_OBJECTIVE)
  ranked = records_lib.sort_by_objective([r for r in recs if not r.failed], objective)
  best = ranked[0].objective_value(objective) if ranked else None
  started = os.path.getmtime(os.path.join(workdir, records_lib.CONFIG_FILE))
  records_path = os.path.join(workdir, records_lib.RECORDS_FILE)
  last = os.path.getmtime(records_path) if os.path.exists(records_path) else started
  return {"name": config.get("name") or os.path.basename(os.path.abspath(workdir)),
          "path": workdir, "dataset": config.get("dataset"), "strategy": config.get("strategy"),
          "members": len(recs), "objective": objective, "best": best,
          "status": status(workdir, recs),
          "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
                     .strftime("%Y-%m-%d %H:%M"),
          "elapsed_s": max(0.0, last - started)}


def find(root: str) -> list[str]:
  """Every sweep folder under `root` (itself included), sorted by path."""
  found = []
  for folder, dirs, files in os.walk(root):
    if records_lib.CONFIG_FILE in files:
      found.append(folder)
      dirs[:] = []   # a sweep's own subfolders (checkpoints, report, best) are not sweeps
    else:
      dirs.sort()
  return sorted(found)


def _elapsed(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def table(rows: Sequence[dict[str, Any]]) -> str:
  header = ("name", "dataset", "strategy", "members", "best", "status", "started", "time")
  lines = [header]
  for r in rows:
    best = "-" if r["best"] is None else f"{r['objective']} {r['best']:.4f}"
    lines.append((r["name"], str(r["dataset"]), str(r["strategy"]), str(r["members"]), best,
                  r["status"], r["started"], _elapsed(r["elapsed_s"])))
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def main(argv: Sequence[str]) -> int:
  if len(argv) != 1 or argv[0].startswith("-"):
    print("usage: python -m sweeps.runs ROOT   (lists the sweeps under the folder ROOT)",
          file=sys.stderr)
    return 2
  root = argv[0]
  if not os.path.isdir(root):
    print(f"ROOT: {root!r} is not a folder", file=sys.stderr)
    return 2
  rows = [describe(w) for w in find(root)]
  if not rows:
    print(f"no sweeps under {root} (a sweep folder holds config.json)")
    return 0
  print(table(rows))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
