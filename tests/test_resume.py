"""A sweep killed at any moment resumes to the same results; SIGTERM checkpoints and exits;
resuming with search-changing flags is refused."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sweeps import records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# PBT on the toy set: exploits, perturbations and syncs are what a resume most easily breaks.
ARGS = ["--dataset=spiral", "--strategy=pbt", "--batch=4", "--epochs=8", "--pbt_interval=2",
        "--space=model=mlp", "--space=widths=[16, 16]", "--space=optimizer=momentum",
        "--space=lr=loguniform(0.003, 0.3)", "--space=momentum=uniform(0.5, 0.95)",
        "--space=batch_size=50", "--checkpoint_every_epochs=1", "--test_top=2", "--noprogress"]


def _start(workdir, *extra):
  return subprocess.Popen([sys.executable, "-u", "-m", "sweeps.toy", f"--workdir={workdir}", *ARGS,
                           *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _table(workdir):
  """Everything of every record except wall time (which a resumed run cannot reproduce)."""
  return [(r.member_id, r.params, r.history, r.status, r.best_epoch, r.epochs_run, r.test,
           [{k: v for k, v in e.items()} for e in r.events])
          for r in records.read_records(str(workdir))]


def _latest_step(workdir):
  folder = os.path.join(workdir, "checkpoints")
  steps = [int(n) for n in os.listdir(folder) if n.isdigit()] if os.path.isdir(folder) else []
  return max(steps, default=0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  start = time.monotonic()
  proc = _start(workdir)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  return _table(workdir), time.monotonic() - start, _latest_step(workdir)


def test_sigkill_at_random_moments_then_resume_gives_identical_results(tmp_path, reference):
  """Each run is killed once it has written a checkpoint of its own (so it is past start-up and
  training, whatever the machine's load), plus a random delay of up to 0.3 s, so some kills land
  mid-epoch and some while Orbax is writing in the background. No assertion depends on timing:
  a run that finishes before its kill is simply not killed."""
  table, _, steps = reference
  assert any(e["kind"] == "exploit" for row in table for e in row[-1])
  workdir = tmp_path / "killed"
  rng = np.random.default_rng(0)
  targets = sorted(rng.choice(np.arange(2, steps - 1), size=4, replace=False))
  kills, resumes = 0, 0
  for target in targets:
    before = _latest_step(workdir)
    proc = _start(workdir)
    # Its own checkpoint: only this process writes, so a step past `before` proves it resumed
    # (or started) and trained; the kill never lands in start-up.
    target = max(int(target), before + 1)
    while proc.poll() is None and _latest_step(workdir) < target:
      time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.3))
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      kills += 1
    out, _ = proc.communicate(timeout=600)
    resumes += "resuming" in out
    assert _latest_step(workdir) > before or proc.returncode == 0
  proc = _start(workdir)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  assert kills >= 1 and resumes + ("resuming" in out) >= kills
  assert _table(workdir) == table


def test_sigterm_checkpoints_and_exits_then_resumes(tmp_path, reference):
  table, _, steps = reference
  workdir = tmp_path / "term"
  proc = _start(workdir)
  while proc.poll() is None and _latest_step(workdir) < steps // 2:   # well inside training
    time.sleep(0.01)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=600)
  if proc.returncode == 0:
    pytest.skip("the sweep finished before the signal arrived")
  assert proc.returncode == 143, err[-3000:]
  assert "stopped by SIGTERM: checkpoint saved" in err
  proc = _start(workdir)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  assert "resuming" in out
  assert _table(workdir) == table


def test_resume_with_different_search_flags_is_refused(tmp_path):
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / "config.json").write_text('{"strategy": "grid", "epochs": 3}')
  proc = _start(workdir)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 2
  line = err.strip().splitlines()[-1]
  assert "holds a different sweep" in line and "--strategy: 'grid' -> 'pbt'" in line
  assert "--epochs: 3 -> 8" in line
  assert sorted(os.listdir(workdir)) == ["config.json"]
