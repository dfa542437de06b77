"""`python -m sweeps.runs ROOT` lists every sweep under a folder with its status: finished,
running (a live process named in running.json) or interrupted (a dead one, or unfinished
members and no process)."""

import os
import subprocess
import sys

from sweeps import records, runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_sweep(folder, statuses, strategy="random", running_pid=None):
  os.makedirs(folder)
  records.atomic_write_json(os.path.join(folder, "config.json"),
                            {"dataset": "circle", "strategy": strategy, "objective": "val_acc",
                             "name": os.path.basename(folder)})
  records.append_records(folder, [
      records.Record(member_id=i, status=s, history={"val_acc": [0.5, 0.6 + i / 10]})
      for i, s in enumerate(statuses)])
  if running_pid is not None:
    records.atomic_write_json(os.path.join(folder, runs.RUNNING_FILE),
                              {"pid": running_pid, "host": runs.socket.gethostname()})


def test_lists_sweeps_with_status(tmp_path, capsys):
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  _fake_sweep(str(tmp_path / "a_done"), ["complete", "stopped"])
  _fake_sweep(str(tmp_path / "nested" / "b_live"), ["complete", "running"], "bayes",
              running_pid=os.getpid())
  _fake_sweep(str(tmp_path / "c_killed"), ["running"], running_pid=dead.pid)
  _fake_sweep(str(tmp_path / "d_stopped"), ["complete", "running", "running"], "grid")
  os.makedirs(tmp_path / "not_a_sweep")
  rows = {r["name"]: r for r in map(runs.describe, runs.find(str(tmp_path)))}
  assert sorted(rows) == ["a_done", "b_live", "c_killed", "d_stopped"]
  assert [rows[n]["status"] for n in sorted(rows)] == ["finished", "running", "interrupted",
                                                       "interrupted"]
  assert rows["a_done"]["members"] == 2 and abs(rows["a_done"]["best"] - 0.7) < 1e-9
  assert rows["d_stopped"]["strategy"] == "grid" and rows["d_stopped"]["best"] == 0.8

  assert runs.main([str(tmp_path)]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert lines[0].split() == ["name", "dataset", "strategy", "members", "best", "status",
                              "started", "time"]
  assert lines[1].split()[:7] == ["a_done", "circle", "random", "2", "val_acc", "0.7000",
                                  "finished"]
  assert len(lines) == 5


def test_usage_errors_exit_2(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "sweeps.runs", str(tmp_path / "missing")],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and "is not a folder" in proc.stderr
