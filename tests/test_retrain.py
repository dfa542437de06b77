"""`python -m sweeps.retrain WORKDIR` retrains the top configs on train+val over seeds and
writes a test table whose accuracy intervals stay inside [0, 1]."""

import csv
import json
import os

from sweeps import cli, retrain


def test_retrain_top_configs_on_train_plus_val(tmp_path, capsys):
  workdir = str(tmp_path / "sweep")
  cfg = cli.config_from_argv([
      "--noprogress", f"--workdir={workdir}", "--dataset=circle", "--strategy=grid", "--epochs=2",
      "--space=model=mlp", "--space=widths=[8]", "--space=lr=grid(0.003, 0.03, 0.3)",
      "--space=batch_size=64", "--test_top=0"], "circle")
  space, strategy = cli.validate(cfg)
  with open(os.devnull, "w") as out:
    cli.run_sweep(cfg, space, strategy, out=out)

  assert retrain.main([workdir, "--top=2", "--seeds=3", "--epochs=2"]) == 0
  printed = capsys.readouterr().out
  assert "retrained on train+val (1000 examples)" in printed and "95%" in printed
  summary = json.load(open(os.path.join(workdir, "retrain", "summary.json")))
  assert summary["train_size"] == 1000 and summary["test_size"] == 1000   # 800 train + 200 val
  assert [c["rank"] for c in summary["configs"]] == [1, 2]
  for row in summary["configs"]:
    assert row["seeds"] == 3 and row["epochs"] == 2
    assert 0.0 <= row["test_acc_low"] <= row["test_acc_mean"] <= row["test_acc_high"] <= 1.0
  runs = list(csv.DictReader(open(os.path.join(workdir, "retrain", "runs.csv"))))
  assert len(runs) == 6
  assert len({r["seed"] for r in runs if r["rank"] == "1"}) == 3
  assert len({r["test_acc"] for r in runs if r["rank"] == "1"}) > 1   # seeds differ

  assert retrain.main([str(tmp_path / "nothing"), "--top=1"]) == 2
  assert retrain.main([workdir, "--seeds=0"]) == 2
