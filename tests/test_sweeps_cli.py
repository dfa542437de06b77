"""The sweep CLI end to end: flagfiles plan, the toy sweep runs, strategies run on real MNIST,
bad input is refused with one line and nothing written."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sweeps import cli, records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("JAXNN_SHARED_DATASETS",
                        os.path.join(os.path.dirname(REPO), "shared", "datasets"))
FLAGFILES = sorted(glob.glob(os.path.join(REPO, "sweeps", "flags", "*.flags")))


def _module_of(flagfile):
  with open(flagfile) as f:
    for line in f:
      if "python -m sweeps." in line:
        return line.split("python -m ")[1].split()[0]
  raise AssertionError(f"{flagfile} has no command in its header")


def _run_cli(module, *args, cwd=REPO):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                        text=True, timeout=600)


def _sweep(tmp_path, name, *argv, dataset="mnist"):
  """Runs a sweep in-process, exactly as the CLI would, and returns (runs, workdir)."""
  workdir = str(tmp_path / name)
  cfg = cli.config_from_argv(["--noprogress", f"--workdir={workdir}", *argv], dataset)
  space, strategy = cli.validate(cfg)
  with open(os.devnull, "w") as out:
    runs = cli.run_sweep(cfg, space, strategy, out=out)
  return runs, workdir


def test_every_flagfile_has_a_command_header_and_dry_runs():
  assert len(FLAGFILES) == 13
  for flagfile in FLAGFILES:
    cfg = cli.config_from_argv([f"--flagfile={flagfile}", "--dry_run"])
    space, strategy = cli.validate(cfg)
    with open(os.devnull, "w") as out:
      assert cli.run_sweep(cfg, space, strategy, out=out) == []
  # And through the real entry point, as a user types it.
  result = _run_cli(_module_of(FLAGFILES[0]), f"--flagfile={FLAGFILES[0]}", "--dry_run")
  assert result.returncode == 0, result.stderr
  assert "compiled programs" in result.stdout and "bucket 0" in result.stdout


def test_toy_flagfile_runs_fully(tmp_path):
  flagfile = os.path.join(REPO, "sweeps", "flags", "toy_playground.flags")
  workdir = tmp_path / "toy"
  result = _run_cli("sweeps.toy", f"--flagfile={flagfile}", f"--workdir={workdir}", "--noprogress")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "top 10 of 24 members" in result.stdout
  recs = records.read_records(str(workdir))
  assert len(recs) == 24 and all(r.status == "complete" for r in recs)
  best = max(r.best_val_acc for r in recs)
  assert best > 0.9   # the circle is easy
  assert sum(r.test is not None for r in recs) == 3   # --test_top=3
  for name in ("config.json", "plan.json", "report/results.csv", "report/learning_curves.png"):
    assert (workdir / name).exists(), name


MNIST = ["--dataset=mnist", f"--data_dir={SHARED}", "--train_subset=600", "--val_subset=200",
         "--test_subset=200", "--space=model=mlp", "--space=widths=[32]", "--space=batch_size=50",
         "--space=optimizer=momentum", "--test_top=2"]


@pytest.mark.parametrize("strategy,extra", [
    ("grid", ["--space=lr=grid(0.01, 0.1)", "--space=momentum=grid(0.0, 0.9)", "--epochs=2"]),
    ("random", ["--space=lr=loguniform(1e-3, 0.3)", "--trials=4", "--epochs=2"]),
    ("bayes", ["--space=lr=loguniform(1e-3, 0.3)", "--trials=4", "--batch=2", "--epochs=2"]),
    ("hyperband", ["--space=lr=loguniform(1e-3, 0.3)", "--epochs=3", "--eta=3", "--trials=1"]),
    ("pbt", ["--space=lr=loguniform(1e-3, 0.3)", "--batch=4", "--epochs=4", "--pbt_interval=2",
             "--pbt_fraction=0.25"]),
    ("ablation", ["--space=lr=choice(0.05, 0.0)", "--seeds=2", "--epochs=2"]),
])
def test_strategies_end_to_end_on_mnist(tmp_path, strategy, extra):
  argv = MNIST + [f"--strategy={strategy}"] + extra
  runs, workdir = _sweep(tmp_path, "a", *argv)
  recs = records.read_records(workdir)
  assert len(recs) == len(runs) >= 2
  assert os.path.exists(os.path.join(workdir, "report", "results.csv"))
  events = [e["kind"] for r in recs for e in r.events]
  if strategy == "hyperband":
    assert "promoted" in events and any(r.status == "pruned" for r in recs)
  if strategy == "pbt":
    assert "exploit" in events
  if strategy == "ablation":
    groups = {r.group for r in recs}
    assert "baseline" in groups and "lr=0.0" in groups
    zero = [r for r in recs if r.group == "lr=0.0"]
    assert all(abs(r.history["train_loss"][0] - r.history["train_loss"][-1]) < 1e-6 for r in zero)
  best = max(r.best_val_acc for r in recs)
  assert best > 0.5   # 600 MNIST images, a 32-unit MLP: far above chance
  # Deterministic under a seed: the same flags give the same table.
  if strategy in ("random", "pbt", "hyperband"):
    _, again = _sweep(tmp_path, "b", *argv)
    first = [(r.member_id, r.params, r.history["val_loss"], r.status) for r in recs]
    second = [(r.member_id, r.params, r.history["val_loss"], r.status)
              for r in records.read_records(again)]
    assert first == second


def test_early_stopping_stops_members(tmp_path):
  argv = MNIST + ["--strategy=grid", "--space=lr=grid(0.0, 0.01)", "--epochs=6",
                  "--patience=2", "--monitor=val_loss", "--min_delta=0.0"]
  _, workdir = _sweep(tmp_path, "es", *argv)
  recs = {r.params["lr"]: r for r in records.read_records(workdir)}
  frozen = recs[0.0]   # lr=0: val loss never improves after the first epoch
  assert frozen.status == "stopped" and frozen.epochs_run == 3
  assert any(e["kind"] == "stopped" for e in frozen.events)
  assert recs[0.01].status == "complete" and recs[0.01].epochs_run == 6
  # Half the chunk stopped: it was recorded and dropped mid-training, not at the end.
  with open(os.path.join(workdir, records.RECORDS_FILE)) as f:
    statuses = [json.loads(line)["status"] for line in f]
  assert statuses.index("stopped") < statuses.index("complete")
  # The survivor, now alone in its chunk, trains on exactly as it would have beside the other.
  _, together = _sweep(tmp_path, "together", *(MNIST + ["--strategy=grid", "--epochs=6",
                                                       "--space=lr=grid(0.0, 0.01)"]))
  kept = {r.params["lr"]: r for r in records.read_records(together)}[0.01]
  np.testing.assert_allclose(kept.history["val_loss"], recs[0.01].history["val_loss"], rtol=1e-5)


@pytest.mark.parametrize("args,message", [
    (["--strategy=nope", "--space=lr=0.1"], "--strategy: got 'nope'; allowed:"),
    (["--space=lr=0.1", "--space=momentum=0.5 if optimizer == sgd"], "not declared before it"),
    (["--space=optimizer=choice(sgd, adam)", "--space=momentum=0.5 if optimizer == rmsprop"],
     "can never hold"),
    ([], "--space: the search space is empty"),
    (["--space=lr=0.1", "--trials=0"], "--trials: got 0; allowed: an integer >= 1"),
    (["--space=lr=-1"], "lr: got -1; allowed: a finite number >= 0"),
    (["--space=dropout=1.5"], "dropout: got 1.5; allowed: a number in [0.0, 1.0)"),
    (["--space=activation=swishy"], "activation: got 'swishy'; allowed:"),
    (["--space=lr=0.1", "--dataset=nosuchset"], "--dataset:"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, message):
  workdir = tmp_path / "w"
  result = _run_cli("sweeps.mnist", f"--workdir={workdir}", "--strategy=grid", *args) \
      if not any(a.startswith("--strategy") for a in args) else \
      _run_cli("sweeps.mnist", f"--workdir={workdir}", *args)
  assert result.returncode == 2, result.stderr
  lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1, result.stderr
  assert message in lines[0], lines[0]
  assert "Traceback" not in result.stderr
  assert not workdir.exists()


def test_conv_buckets_time_vmap_against_map_and_keep_the_faster(tmp_path):
  argv = [a for a in MNIST if not a.startswith(("--space=widths", "--space=model",
                                                  "--train_subset"))]
  argv += ["--train_subset=256", "--strategy=grid", "--epochs=1", "--space=model=small_cnn",
           "--space=features=[4, 8]", "--space=dense_width=8", "--space=lr=grid(0.01, 0.05)"]
  _, auto = _sweep(tmp_path, "auto", *argv)
  recs = records.read_records(auto)
  events = [e for r in recs for e in r.events if e["kind"] == "vectorize"]
  assert len(events) == 2 and set(events[0]["probe_seconds"]) == {"vmap", "map"}
  chosen = events[0]["choice"]
  other = "map" if chosen == "vmap" else "vmap"
  _, forced = _sweep(tmp_path, "forced", *argv, f"--conv_vectorize={other}")
  for a, b in zip(recs, records.read_records(forced)):   # same numbers either way
    np.testing.assert_allclose(a.history["val_loss"], b.history["val_loss"], rtol=1e-5)


def test_a_sweep_over_eight_devices_matches_one_device(tmp_path):
  argv = ["--dataset=circle", "--strategy=grid", "--epochs=3", "--noprogress", "--test_top=0",
          "--space=model=mlp", "--space=widths=[8]", "--space=batch_size=50",
          "--space=lr=grid(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)"]
  histories = []
  for devices in (1, 8):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    workdir = tmp_path / f"d{devices}"
    result = subprocess.run([sys.executable, "-m", "sweeps.toy", f"--workdir={workdir}", *argv],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    histories.append([r.history["val_loss"] for r in records.read_records(str(workdir))])
  np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)
