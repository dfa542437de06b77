"""Many workers, one study, on a real PostgreSQL server (no mocks).

The server: $JAXNN_TEST_POSTGRES_URL when set (`.ci/run` starts one on 127.0.0.1), else one this
module starts from Debian's binaries on a free port with a throwaway data directory (as the
`postgres` user when run as root). Without any PostgreSQL server binary the tests skip, saying so.

Workers are real `python -m sweeps.toy` processes with their own --workdir; heartbeats and the
grace period are shortened through the environment so a killed worker's trials come back in
seconds.
"""

import glob
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import optuna
import pytest

from sweeps import records as records_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = ["--space=model=mlp", "--space=widths=[8]", "--space=lr=loguniform(1e-3, 1e-1)",
         "--space=batch_size=32"]
WORKER = ["-m", "sweeps.toy", "--strategy=bayes", "--batch=2", "--epochs=2", "--noprogress",
          "--test_top=1"] + SPACE


def _server_binaries():
  for directory in [os.path.dirname(shutil.which("initdb") or "")] + sorted(
      glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
    if directory and all(os.path.exists(os.path.join(directory, b)) for b in ("initdb", "pg_ctl")):
      return directory
  return None


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
  """A PostgreSQL URL (database `postgres`, trust auth on 127.0.0.1)."""
  if os.environ.get("JAXNN_TEST_POSTGRES_URL"):
    yield os.environ["JAXNN_TEST_POSTGRES_URL"]
    return
  binaries = _server_binaries()
  if binaries is None:
    pytest.skip("no PostgreSQL server binary (initdb, pg_ctl) found: apt-get install postgresql, "
                "or set JAXNN_TEST_POSTGRES_URL")
  # Not under pytest's basetemp: a concurrent pytest of the same user prunes old basetemps,
  # which would pull the data directory from under the running server.
  base = pathlib.Path(tempfile.mkdtemp(prefix="jaxnn_test_pg_"))
  data, port = base / "data", _free_port()
  as_user = []
  if os.geteuid() == 0:   # the server refuses to run as root
    try:
      user = pwd.getpwnam("postgres")
    except KeyError:
      pytest.skip("running as root and there is no 'postgres' user to run the server as")
    for path in (base, *base.parents):
      if str(path) in ("/", "/tmp"):
        break
      os.chmod(path, os.stat(path).st_mode | 0o011)   # let the server user traverse to base
    os.chown(base, user.pw_uid, user.pw_gid)
    as_user = ["runuser", "-u", "postgres", "--"]
  run = lambda *cmd, check=True: subprocess.run(as_user + list(cmd), check=check,
                                                capture_output=True, timeout=120)
  run(os.path.join(binaries, "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
  run(os.path.join(binaries, "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
      f"-h 127.0.0.1 -p {port} -k {base}", "start")
  try:
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
  finally:
    run(os.path.join(binaries, "pg_ctl"), "-D", str(data), "-m", "immediate", "stop", check=False)
    shutil.rmtree(base, ignore_errors=True)


def _env(grace=60):
  # Heartbeats every second; a trial is stale after `grace` s of silence. Short only where no
  # live worker can be mistaken for a dead one (a loaded machine may stall a heartbeat).
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", JAXNN_STUDY_HEARTBEAT="1",
             JAXNN_STUDY_GRACE=str(grace), PYTHONFAULTHANDLER="1")
  for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    env.pop(name, None)
  return env


def _worker(url, name, workdir, *extra, grace=60):
  return subprocess.Popen(
      [sys.executable] + WORKER + [f"--study_storage={url}", f"--study_name={name}",
                                   f"--workdir={workdir}", *extra],
      cwd=ROOT, env=_env(grace), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=600):
  """The worker's stderr once it exits. A worker still running after `timeout` is aborted
  (PYTHONFAULTHANDLER prints every thread's stack to stderr) and the test fails with that."""
  try:
    _, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.send_signal(signal.SIGABRT)
    _, err = proc.communicate()
    pytest.fail(f"worker still running after {timeout} s; its threads:\n{err[-6000:]}")
  assert proc.returncode == 0, err[-3000:]
  return err


def _trials(url, name):
  from sweeps.strategies import shared
  study = optuna.load_study(study_name=name, storage=shared.open_storage(url))
  return study.get_trials(deepcopy=False)


def test_workers_share_one_study_and_train_the_budget_once(postgres, tmp_path):
  name = f"share-{uuid.uuid4().hex[:8]}"
  workers = [_worker(postgres, name, tmp_path / f"w{i}", "--trials=6") for i in range(2)]
  for proc in workers:
    _finish(proc)
  ids = [sorted(r.member_id for r in records_lib.read_records(tmp_path / f"w{i}"))
         for i in range(2)]
  # Together: the budget of 6, each member once, in one worker or the other.
  assert sorted(ids[0] + ids[1]) == list(range(6)) and ids[0] and ids[1]
  trials = _trials(postgres, name)
  assert [t.state.name for t in trials] == ["COMPLETE"] * 6
  for records in (records_lib.read_records(tmp_path / f"w{i}") for i in range(2)):
    for record in records:
      trial = trials[record.member_id]
      assert record.status == "complete" and record.params == trial.user_attrs["config"]
      assert trial.value == pytest.approx(max(record.history["val_acc"]))
  # The merged study renders from the workers' workdirs.
  done = subprocess.run([sys.executable, "-m", "sweeps.report", str(tmp_path / "merged"),
                         f"--merge={tmp_path / 'w0'},{tmp_path / 'w1'}"], cwd=ROOT, env=_env(),
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "top 6 of 6 members" in done.stdout
  assert [r.member_id for r in records_lib.read_records(tmp_path / "merged")] == list(range(6))


def test_a_killed_worker_leaves_no_trial_running_and_its_trials_are_retried(postgres, tmp_path):
  name = f"kill-{uuid.uuid4().hex[:8]}"
  victim = _worker(postgres, name, tmp_path / "victim", "--trials=4")
  deadline = time.monotonic() + 300
  while True:   # kill it while it holds its first batch (2 trials RUNNING, both started:
    # config, heartbeat and member id written; a death before that is the next test's case)
    assert victim.poll() is None and time.monotonic() < deadline, victim.communicate()[1][-3000:]
    try:
      running = [t for t in _trials(postgres, name)
                 if t.state.name == "RUNNING" and t.user_attrs.get("member_id") == t.number]
    except KeyError:   # the study does not exist yet
      running = []
    if len(running) == 2:
      break
    time.sleep(0.2)
  victim.send_signal(signal.SIGKILL)
  victim.communicate()
  # The victim is dead: nothing alive can be mistaken for it, so a short grace period.
  survivor = _worker(postgres, name, tmp_path / "survivor", "--trials=4", grace=4)
  _finish(survivor)
  trials = _trials(postgres, name)
  states = [t.state.name for t in trials]
  assert "RUNNING" not in states and "WAITING" not in states
  assert states[:2] == ["FAIL", "FAIL"] and states.count("COMPLETE") == 4
  # The dead worker's two trials were trained again (same configs) by the survivor, plus the
  # two fresh trials left in the budget of 4.
  retried = [t for t in trials if "failed_trial" in t.system_attrs]
  assert sorted(t.system_attrs["failed_trial"] for t in retried) == [0, 1]
  for t in retried:
    assert t.user_attrs["config"] == trials[t.system_attrs["failed_trial"]].user_attrs["config"]
  records = records_lib.read_records(tmp_path / "survivor")
  assert sorted(r.member_id for r in records) == [2, 3, 4, 5]
  assert all(r.status == "complete" for r in records)


def test_a_worker_killed_before_its_first_heartbeat_does_not_stall_the_study(postgres, tmp_path):
  # A worker that dies between creating a trial and beating for it leaves a RUNNING trial that
  # Optuna never calls stale (no heartbeat at all); the others would wait for it forever.
  from sweeps import space as space_lib
  from sweeps.strategies import base, shared
  name = f"unbeaten-{uuid.uuid4().hex[:8]}"
  dead = shared.SharedStudyStrategy(
      space_lib.parse([flag[len("--space="):] for flag in SPACE]),
      base.Settings(trials=2, batch=2, study_storage=postgres, study_name=name), "bayes")
  dead.study.ask()   # trial 0: created, and then its worker was gone
  survivor = _worker(postgres, name, tmp_path / "survivor", "--trials=2", grace=4)
  _finish(survivor, timeout=300)
  trials = _trials(postgres, name)
  assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
  # Trial 0 came back as a retry: trial 1 or 2, depending on whether the survivor first asked
  # before or after trial 0's grace period ran out (its start-up time decides).
  assert [t.number for t in trials if t.system_attrs.get("failed_trial") == 0] in ([1], [2])
  records = records_lib.read_records(tmp_path / "survivor")
  assert sorted(r.member_id for r in records) == [1, 2]


def _bad(tmp_path, *flags):
  workdir = tmp_path / "w"
  start = time.monotonic()
  done = subprocess.run([sys.executable] + WORKER + ["--trials=2", f"--workdir={workdir}",
                                                     *flags],
                        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
  assert done.returncode == 2, done.stderr[-3000:]
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1, done.stderr[-3000:]
  assert time.monotonic() - start < 60 and not workdir.exists()
  return lines[0]


def test_unreachable_database_is_one_line_and_exit_2(tmp_path):
  line = _bad(tmp_path, f"--study_storage=postgresql://postgres:secret@127.0.0.1:{_free_port()}"
                        "/postgres", "--study_name=x")
  assert line.startswith("--study_storage: cannot open postgresql") and "secret" not in line


def test_wrong_database_url_is_one_line_and_exit_2(postgres, tmp_path):
  line = _bad(tmp_path, f"--study_storage={postgres.rsplit('/', 1)[0]}/no_such_database",
              "--study_name=x")
  assert line.startswith("--study_storage: cannot open") and "no_such_database" in line
  line = _bad(tmp_path, "--study_storage=nosuchdialect://x/y", "--study_name=x")
  assert line.startswith("--study_storage: cannot open")


def test_a_study_with_another_space_is_refused(postgres, tmp_path):
  name = f"space-{uuid.uuid4().hex[:8]}"
  from sweeps import cli, strategies
  cfg = cli.config_from_argv(WORKER[2:] + ["--trials=2", f"--study_storage={postgres}",
                                           f"--study_name={name}", "--workdir=/unused"],
                             default_dataset="circle")
  cli.validate(cfg)   # creates the study with this space
  line = _bad(tmp_path, f"--study_storage={postgres}", f"--study_name={name}",
              "--space=lr=loguniform(1e-4, 1e-1)")
  assert line.startswith(f"--study_name: study '{name}'") and "another space" in line
  assert strategies.SHARED == ("bayes", "random")
