"""Resuming with a larger --trials or --epochs continues the same sweep: random draws the next
samples of its stream and continues finished members from their final state (equal to a sweep
run that long from the start, under a constant schedule), bayes continues its study; what a
strategy cannot extend, or a changed --space, is refused with one line through the CLI."""

import json
import os
import subprocess
import sys

import numpy as np

from sweeps import cli, records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = ["--dataset=circle", "--space=model=mlp", "--space=widths=[8]", "--space=optimizer=adam",
         "--space=lr=loguniform(1e-3, 1e-1)", "--space=batch_size=64", "--test_top=1"]


def _sweep(workdir, *argv):
  cfg = cli.config_from_argv(["--noprogress", f"--workdir={workdir}", *SPACE, *argv], "circle")
  space, strategy = cli.validate(cfg)
  with open(os.devnull, "w") as out:
    cli.run_sweep(cfg, space, strategy, out=out)
  return {r.member_id: r for r in records.read_records(workdir)}


def _same(a, b):
  assert sorted(a) == sorted(b)
  for i in a:
    assert {k: v for k, v in a[i].params.items() if k != "epochs"} == \
        {k: v for k, v in b[i].params.items() if k != "epochs"}
    for key in ("train_loss", "val_acc", "val_loss"):
      np.testing.assert_allclose(a[i].history[key], b[i].history[key], rtol=1e-5, atol=1e-6)


def test_random_extends_trials_and_epochs_like_a_longer_sweep(tmp_path):
  workdir = str(tmp_path / "grown")
  first = _sweep(workdir, "--strategy=random", "--trials=2", "--epochs=2")
  assert len(first) == 2 and all(r.epochs_run == 2 for r in first.values())
  grown = _sweep(workdir, "--strategy=random", "--trials=3", "--epochs=4")
  straight = _sweep(str(tmp_path / "straight"), "--strategy=random", "--trials=3", "--epochs=4")
  assert all(r.epochs_run == 4 and r.status == "complete" for r in grown.values())
  assert any(e["kind"] == "extended" for e in grown[0].events)
  _same(grown, straight)
  assert json.load(open(os.path.join(workdir, "config.json")))["trials"] == 3
  # Resuming again with the same flags changes nothing.
  assert records.read_records(workdir) == list(_sweep(workdir, "--strategy=random", "--trials=3",
                                                      "--epochs=4").values())


def test_bayes_continues_its_study(tmp_path):
  workdir = str(tmp_path / "bayes")
  args = ["--strategy=bayes", "--batch=2", "--epochs=2"]
  _sweep(workdir, *args, "--trials=2")
  grown = _sweep(workdir, *args, "--trials=4")
  straight = _sweep(str(tmp_path / "straight"), *args, "--trials=4")
  assert len(grown) == 4
  _same(grown, straight)


GRID = ["--dataset=circle", "--strategy=grid", "--space=model=mlp", "--space=lr=grid(0.01, 0.1)",
        "--space=batch_size=64"]


def _refused(workdir, *argv):
  proc = subprocess.run([sys.executable, "-m", "sweeps.toy", f"--workdir={workdir}", "--noprogress",
                         *GRID, *argv], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  return lines[0]


def test_what_cannot_be_extended_is_refused_with_one_line(tmp_path):
  workdir = tmp_path / "w"
  workdir.mkdir()
  config = cli.config_from_argv([f"--workdir={workdir}", *GRID, "--trials=4", "--epochs=3"],
                                "circle").to_json()
  (workdir / "config.json").write_text(json.dumps(config))
  line = _refused(workdir, "--trials=8", "--epochs=3")
  assert line.startswith("--trials: 4 -> 8: grid cannot extend it: it trains every point")
  line = _refused(workdir, "--trials=4", "--epochs=2")
  assert "extended, not shrunk" in line
  line = _refused(workdir, "--trials=4", "--epochs=3", "--space=lr=grid(0.01, 0.2)")
  assert ("--space: 'lr=grid(0.01, 0.1)' -> 'lr=grid(0.01, 0.2)'" in line
          and "model=mlp" not in line)
  assert sorted(os.listdir(workdir)) == ["config.json"]
