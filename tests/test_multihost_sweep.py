"""A sweep over 2 processes x 4 fake CPU devices, through `python -m sweeps.toy` started by
`launch/local.sh`, gives the records of the same sweep in one process; only process 0 writes;
a killed process stops the other with one line and the same command resumes to the same records;
a job that cannot form exits 2 with one line and writes nothing.

Every run here is a real subprocess of the real entry point (the CPU device count is fixed when
JAX starts). Tolerance as in test_launch: members split one per device vs vmapped together may
reorder a float32 reduction.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sweeps import records as records_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL = os.path.join(ROOT, "launch", "local.sh")
RTOL, ATOL = 1e-5, 1e-6
SWEEP = ["-m", "sweeps.toy", "--strategy=random", "--trials=8", "--epochs=16",
         "--space=model=mlp", "--space=widths=[8]", "--space=lr=loguniform(1e-3, 1e-1)",
         "--space=batch_size=32", "--test_top=2", "--noprogress", "--checkpoint_every_epochs=1"]


def _env(**extra):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", JAXNN_JOIN_TIMEOUT="60",
             JAXNN_HEARTBEAT_TIMEOUT="20")
  for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    env.pop(name, None)
  env.update(extra)
  return env


def _launch(workdir, logs, num=2):
  return subprocess.Popen(
      [LOCAL, str(num), sys.executable] + SWEEP + [f"--workdir={workdir}"], cwd=ROOT,
      env=_env(LAUNCH_DEVICES_PER_PROCESS="4", LAUNCH_LOG_DIR=str(logs)),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _final(workdir):
  return {r.member_id: r for r in records_lib.read_records(str(workdir))}


def _assert_same_records(got, want):
  assert sorted(got) == sorted(want) == list(range(8))
  for member_id, record in want.items():
    other = got[member_id]
    assert other.status == record.status == "complete"
    assert other.params == record.params
    for metric, values in record.history.items():
      np.testing.assert_allclose(np.asarray(other.history[metric], float),
                                 np.asarray(values, float), rtol=RTOL, atol=ATOL,
                                 err_msg=f"member {member_id} {metric}")
    assert (other.test is None) == (record.test is None)
    if record.test is not None:
      assert other.test["acc"] == pytest.approx(record.test["acc"], rel=RTOL)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The sweep in one plain process (one CPU device)."""
  workdir = tmp_path_factory.mktemp("one") / "w"
  done = subprocess.run([sys.executable] + SWEEP + [f"--workdir={workdir}"], cwd=ROOT,
                        env=_env(), capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return _final(workdir)


def test_two_processes_give_the_records_of_one(reference, tmp_path):
  proc = _launch(tmp_path / "w", tmp_path / "logs")
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  _assert_same_records(_final(tmp_path / "w"), reference)
  # Process 0 alone prints (and writes); the other one is silent.
  assert "sweep: 8 members" in out
  other = (tmp_path / "logs" / "process_1.log").read_text()
  assert "sweep:" not in other and "data:" not in other
  assert {"checkpoints", "config.json", "plan.json", "records.jsonl", "report"} <= set(
      os.listdir(tmp_path / "w"))


def test_a_killed_process_stops_the_other_in_one_line_and_the_sweep_resumes(reference, tmp_path):
  workdir, logs = tmp_path / "w", tmp_path / "logs"
  proc = _launch(workdir, logs)
  deadline = time.monotonic() + 600
  # Kill process 1 once a checkpoint exists (mid-sweep: 16 epochs, one save per epoch).
  while not (workdir / "checkpoints").is_dir() or not [
      n for n in os.listdir(workdir / "checkpoints") if n.isdigit()]:
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.monotonic() < deadline
    time.sleep(0.1)
  os.kill(int((logs / "process_1.pid").read_text()), signal.SIGKILL)
  killed = time.monotonic()
  out, err = proc.communicate(timeout=120)
  stopped = time.monotonic() - killed
  # JAXNN_HEARTBEAT_TIMEOUT=20: the survivor notices in about that, not JAX's 100 s.
  assert stopped < 60, stopped
  assert proc.returncode == 75, err[-3000:]
  lines = [line for line in err.splitlines() if line.startswith("multihost:")]
  assert len(lines) == 1 and "process 1 stopped beating" in lines[0], err[-3000:]
  assert "Traceback" not in err and "Check failure" not in err
  # The same command resumes from the last checkpoint to the uninterrupted records.
  proc = _launch(workdir, logs)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  assert "resuming" in out
  _assert_same_records(_final(workdir), reference)


def _one_process(tmp_path, **env):
  workdir = tmp_path / "w"
  start = time.monotonic()
  done = subprocess.run([sys.executable] + SWEEP + [f"--workdir={workdir}"], cwd=ROOT,
                        env=_env(JAXNN_JOIN_TIMEOUT="3", **env), capture_output=True,
                        text=True, timeout=120)
  return done, time.monotonic() - start, workdir


def test_unreachable_coordinator_is_one_line_and_exit_2(tmp_path):
  with __import__("socket").socket() as s:   # a port nobody listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  done, seconds, workdir = _one_process(
      tmp_path, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
      JAX_PROCESS_ID="1")
  assert done.returncode == 2, done.stderr[-2000:]
  assert done.stderr.strip().splitlines()[-1].startswith("multihost: process 1 of 2 could not "
                                                         "join")
  assert "unreachable" in done.stderr and "Check failure" not in done.stderr
  assert seconds < 60 and not workdir.exists()


def test_mismatched_process_counts_are_one_line_and_exit_2(tmp_path):
  with __import__("socket").socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = []
  for process_id, count in ((0, "2"), (1, "3")):
    procs.append(subprocess.Popen(
        [sys.executable] + SWEEP + [f"--workdir={tmp_path / 'w'}"], cwd=ROOT,
        env=_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=count,
                 JAX_PROCESS_ID=str(process_id)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  for proc in procs:
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("multihost:")]
    assert len(lines) == 1 and "mismatched process counts" in lines[0], err[-2000:]
  assert not (tmp_path / "w").exists()
