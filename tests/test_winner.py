"""The winner of a sweep, out: best.flags trains the best member alone to the same curve,
best/ holds its best-epoch weights that `jaxnn.export.load` turns into a model predicting the
recorded accuracy, --test_top uses those weights, and a finished sweep leaves one record per
member and one checkpoint."""

import json
import os

import numpy as np

from jaxnn import data, export
from sweeps import cli, records

# A grid of two learning rates: the larger one (member 1) wins, so --member_id_offset matters.
ARGS = ["--dataset=circle", "--strategy=grid", "--epochs=4", "--space=model=mlp",
        "--space=widths=[8]", "--space=optimizer=adam", "--space=lr=grid(0.002, 0.05)",
        "--space=batch_size=32", "--test_top=2"]


def _sweep(workdir, *argv):
  cfg = cli.config_from_argv(["--noprogress", f"--workdir={workdir}", *argv], "circle")
  space, strategy = cli.validate(cfg)
  with open(os.devnull, "w") as out:
    return cli.run_sweep(cfg, space, strategy, out=out)


def test_best_member_out_alone_and_as_a_model(tmp_path):
  workdir = str(tmp_path / "sweep")
  _sweep(workdir, *ARGS)
  best = json.load(open(os.path.join(workdir, "best.json")))
  assert best["member_id"] == 1 and best["config"]["lr"] == 0.05
  recs = {r.member_id: r for r in records.read_records(workdir)}
  winner = recs[1]
  assert best["best_epoch"] == winner.best_epoch
  assert best["value"] == winner.history["val_acc"][winner.best_epoch]
  # Finished: one line per member, one checkpoint.
  with open(os.path.join(workdir, records.RECORDS_FILE)) as f:
    assert len(f.readlines()) == 2
  assert [n for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit()] != []
  assert len([n for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit()]) == 1

  # best.flags trains member 1 alone: same id, same draws, same curve.
  flagfile = os.path.join(workdir, "best.flags")
  assert "--member_id_offset=1" in open(flagfile).read()
  _sweep(str(tmp_path / "solo"), f"--flagfile={flagfile}")
  (solo,) = records.read_records(str(tmp_path / "solo"))
  assert solo.member_id == 1 and solo.params == winner.params
  for key in ("train_loss", "val_loss", "val_acc"):
    np.testing.assert_allclose(solo.history[key], winner.history[key], rtol=1e-5, atol=1e-6)

  # best/ is the best epoch's weights: they predict the recorded validation accuracy, and the
  # test metrics of --test_top came from them.
  model = export.load(os.path.join(workdir, "best"))
  dataset = data.load("circle", val_fraction=0.2, seed=0)
  val = model.evaluate(dataset.val.x, dataset.val.y)
  assert abs(val["acc"] - best["value"]) < 1e-6
  predicted = np.mean(model.predict(dataset.val.x) == dataset.val.y)
  assert abs(predicted - best["value"]) <= 1.0 / len(dataset.val.y) + 1e-6
  test = model.evaluate(dataset.test.x, dataset.test.y)
  assert abs(test["acc"] - winner.test_acc) < 1e-6
