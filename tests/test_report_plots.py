"""Plots: every PNG exists, is a valid PNG and is not blank; importance by Optuna's evaluator."""

import numpy as np
import pytest
from PIL import Image

from sweeps.records import Record
from sweeps.reporting import plots, synthetic

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_real_png(path, min_colors=200):
  with open(path, "rb") as f:
    assert f.read(8) == PNG_SIGNATURE
  with Image.open(path) as image:
    image.verify()
  with Image.open(path) as image:
    pixels = np.asarray(image.convert("RGB"))
  assert pixels.shape[0] > 300 and pixels.shape[1] > 500
  assert pixels.std() > 20  # not a blank canvas
  packed = (pixels[..., 0].astype(np.uint32) << 16) | (pixels[..., 1].astype(np.uint32) << 8) \
      | pixels[..., 2]
  assert len(np.unique(packed)) >= min_colors  # lines, colormaps and text, not a flat fill


@pytest.fixture(scope="module")
def records():
  return synthetic.sweep_records(n_members=12, epochs=8, seed=0)


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
  return tmp_path_factory.mktemp("plots")


def test_learning_curves(records, outdir):
  path = plots.plot_learning_curves(records, str(outdir / "curves.png"), top=5)
  _assert_real_png(path)


def test_learning_curves_by_loss_with_few_members(outdir):
  records = synthetic.sweep_records(n_members=2, epochs=3)
  _assert_real_png(plots.plot_learning_curves(records, str(outdir / "two.png"),
                                              objective="val_loss"), min_colors=50)


def test_parallel_coordinates(records, outdir):
  _assert_real_png(plots.plot_parallel_coordinates(records, str(outdir / "parallel.png")))


def test_parallel_coordinates_with_missing_values_and_nothing_varying(outdir):
  same = [Record(member_id=i, params={"lr": 0.1, "momentum": None if i else 0.9},
                 history={"val_acc": [0.5 + 0.1 * i]}, status="complete") for i in range(3)]
  _assert_real_png(plots.plot_parallel_coordinates(same, str(outdir / "flat.png")),
                   min_colors=50)


def test_importance_ranks_the_parameter_that_drives_the_objective(records, outdir):
  importances = plots.param_importances(records)
  assert set(importances) == {"lr", "optimizer", "widths", "dropout", "batch_size"}
  assert sum(importances.values()) == pytest.approx(1.0)
  _assert_real_png(plots.plot_importance(records, str(outdir / "importance.png")))


def test_importance_with_a_driving_parameter():
  # val_acc is a function of lr alone; the noise parameter must come out unimportant.
  rng = np.random.default_rng(0)
  records = []
  for i in range(40):
    lr, noise = float(10 ** rng.uniform(-4, -1)), float(rng.uniform(0, 1))
    records.append(Record(member_id=i, params={"lr": lr, "noise": noise}, status="complete",
                          history={"val_acc": [1.0 - abs(np.log10(lr) + 2.5) / 2]}))
  importances = plots.param_importances(records)
  assert list(importances)[0] == "lr" and importances["lr"] > 0.8


def test_importance_explains_itself_when_it_cannot_be_computed(outdir):
  records = [Record(member_id=0, params={"lr": 0.1}, history={"val_acc": [0.5]},
                    status="complete")]
  with pytest.raises(ValueError, match="at least 2 complete"):
    plots.param_importances(records)
  _assert_real_png(plots.plot_importance(records, str(outdir / "none.png")), min_colors=20)


@pytest.mark.parametrize("evaluator", sorted(plots.IMPORTANCE_EVALUATORS))
def test_every_importance_evaluator_ranks_or_says_what_it_needs(records, evaluator):
  # fANOVA and MDI need scikit-learn (not a dependency); plot_importance then shows the reason.
  try:
    importances = plots.param_importances(records, evaluator=evaluator)
  except ImportError as e:
    assert "sklearn" in str(e) and evaluator != "ped_anova"
  else:
    assert sum(importances.values()) == pytest.approx(1.0)


def test_unknown_importance_evaluator_fails_with_the_known_ones(records, outdir):
  with pytest.raises(ValueError, match="importance_evaluator: unknown 'shap'; known: fanova"):
    plots.plot_importance(records, str(outdir / "x.png"), evaluator="shap")


def test_ablation_with_a_baseline(outdir):
  _assert_real_png(plots.plot_ablation(synthetic.ablation_records(seeds=3),
                                       str(outdir / "ablation.png")))


def test_ablation_crossed_without_a_baseline_draws_the_grid(outdir):
  _assert_real_png(plots.plot_ablation(synthetic.crossed_records(seeds=2),
                                       str(outdir / "crossed.png")))


def test_ablation_with_seeds_that_tie(outdir):
  """Two seeds with the same accuracy: the logit interval collapses onto the mean, and mapped
  back it can sit a rounding error beyond it (0.91375 -> [mean + 1e-16, ...]); the plot must
  still draw (it raised on the Kuzushiji ablation after 100 epochs of training)."""
  records = synthetic.ablation_records(seeds=2)
  tied = [r for r in records if r.group == "optimizer=adam"]
  for r in tied:
    r.history["val_acc"] = [0.5, 0.91375, 0.9]
    r.best_epoch = 1
  _assert_real_png(plots.plot_ablation(records, str(outdir / "ablation_tied.png")))
