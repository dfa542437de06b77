"""Reports that do not mislead, through real (tiny) sweeps on the circle: Hyperband brackets are
not an ablation, seed is not a hyperparameter, the Optuna study names its metric and declares
the space's distributions, epochs are 1-based in the CSV, and PBT draws its lineage."""

import csv
import io
import os

import optuna
from optuna.distributions import FloatDistribution

from sweeps import api
from sweeps.reporting import lineage, params

TOY = {"model": "mlp", "widths": "[8]", "optimizer": "sgd", "batch_size": 50}


def _run(tmp_path, name, **options):
  workdir = str(tmp_path / name)
  recs = api.run(api.make_config(dataset="circle", workdir=workdir, test_top=0, progress=False,
                                 **options), out=io.StringIO())
  return recs, workdir


def test_hyperband_brackets_are_not_an_ablation(tmp_path):
  recs, workdir = _run(tmp_path, "hb", strategy="hyperband", epochs=3, eta=3, trials=1,
                       space={**TOY, "lr": "loguniform(0.01, 0.3)"})
  assert {r.group for r in recs} != {None}   # brackets are groups...
  report = api.reports_dir(workdir)
  assert not os.path.exists(os.path.join(report, "ablation.csv"))   # ...but not variants
  assert not os.path.exists(os.path.join(report, "ablation.png"))
  with open(os.path.join(report, "summary.txt")) as f:
    assert "ablation" not in f.read()


def test_seed_is_not_a_hyperparameter_and_the_study_is_declared(tmp_path):
  recs, workdir = _run(tmp_path, "r", strategy="random", trials=3, epochs=2,
                       space={**TOY, "lr": "loguniform(0.01, 0.3)", "seed": "choice(0, 1)"})
  assert "seed" not in params.param_names(recs)
  study = optuna.load_study(study_name="r", storage="sqlite:///" + os.path.join(
      api.reports_dir(workdir), "study.db"))
  assert study.metric_names == ["val_acc"]
  trial = study.trials[0]
  assert "seed" not in trial.params
  # The declared range, not the observed one.
  assert trial.distributions["lr"] == FloatDistribution(0.01, 0.3, log=True)
  assert min(trial.intermediate_values) == 1   # 1-based epochs
  with open(os.path.join(api.reports_dir(workdir), "results.csv")) as f:
    rows = list(csv.DictReader(f))
  for row, r in zip(sorted(rows, key=lambda x: int(x["member_id"])), recs):
    assert int(row["best_epoch"]) == r.best_epoch_for("val_acc") + 1


def test_pbt_lineage_is_drawn_from_the_exploits(tmp_path):
  recs, workdir = _run(tmp_path, "pbt", strategy="pbt", batch=4, epochs=4, pbt_interval=2,
                       pbt_fraction=0.25, space={**TOY, "lr": "loguniform(0.01, 0.5)"})
  made = lineage.copies(recs)
  assert made and all(c.epoch == 2 for c in made)
  assert os.path.exists(os.path.join(api.reports_dir(workdir), "pbt_lineage.png"))
  child = next(r for r in recs if r.member_id == made[0].child)
  parent = next(r for r in recs if r.member_id == made[0].parent)
  path = lineage.value_paths(child)["lr"]
  event = next(e for e in child.events if e["kind"] == "exploit")
  # Its own lr for epochs 1-2, the perturbed parent's from epoch 3.
  assert path[0] == (1, event["previous"]["lr"])
  assert path[-1] == (3, child.params["lr"])
  assert child.params["lr"] != parent.params["lr"] or len(path) == 1
