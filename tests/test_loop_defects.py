"""Defects a review found in the sweep loop (issue 13), each pinned through the real loop:
`cli.run_sweep` -> `sweeps.run.SweepLoop` -> `jaxnn.population`, on the toy spiral set with
tiny MLPs, so every test takes seconds."""

import os

import numpy as np
import pytest

from sweeps import cli, records

TOY = ["--dataset=spiral", "--space=model=mlp", "--space=widths=[8]", "--space=batch_size=50",
       "--noprogress"]


def _sweep(tmp_path, *argv, name="w"):
  """Runs a sweep in-process exactly as the CLI does; returns (runs by id, records by id)."""
  workdir = str(tmp_path / name)
  cfg = cli.config_from_argv([f"--workdir={workdir}", *TOY, *argv], "spiral")
  space, strategy = cli.validate(cfg)
  with open(os.devnull, "w") as out:
    runs = cli.run_sweep(cfg, space, strategy, out=out)
  return ({r.trial.member_id: r for r in runs},
          {r.member_id: r for r in records.read_records(workdir)})


def test_validation_loss_is_the_plain_loss_without_label_smoothing(tmp_path):
  """The same member (id 0, same seed, so the same initial weights) in two sweeps that differ
  only in label smoothing, with lr=0 so its weights never move: the training losses differ
  (smoothing is a training regularizer), the validation and test losses must not."""
  common = ["--strategy=grid", "--epochs=1", "--test_top=1", "--space=optimizer=sgd",
            "--space=lr=0.0"]
  _, plain = _sweep(tmp_path, *common, "--space=label_smoothing=0.0", name="plain")
  _, smooth = _sweep(tmp_path, *common, "--space=label_smoothing=0.4", name="smooth")
  plain, smooth = plain[0], smooth[0]
  assert abs(smooth.history["train_loss"][0] - plain.history["train_loss"][0]) > 1e-3
  assert smooth.history["val_loss"][0] == pytest.approx(plain.history["val_loss"][0], rel=1e-6)
  assert smooth.test["loss"] == pytest.approx(plain.test["loss"], rel=1e-6)


def test_test_top_evaluates_k_members_even_when_the_best_were_pruned(tmp_path):
  """Successive halving prunes most members; pruned members are ranked by their validation
  objective like the others, so the K best must all get a test evaluation."""
  k = 6
  runs, recs = _sweep(tmp_path, "--strategy=successive_halving", "--trials=8", "--epochs=4",
                      "--eta=2", f"--test_top={k}", "--space=optimizer=adam",
                      "--space=lr=loguniform(1e-3, 1e-1)")
  assert sum(r.status == "pruned" for r in recs.values()) >= 4
  ranked = sorted((r for r in recs.values() if r.status in ("complete", "stopped", "pruned")),
                  key=lambda r: (-r.objective_value("val_acc"), r.member_id))
  tested = sorted(i for i, r in recs.items() if r.test is not None)
  assert tested == sorted(r.member_id for r in ranked[:k])


def _lr_by_schedule(recs):
  return {r.params["schedule"]: r.history["lr"] for r in recs.values()}


def test_per_step_schedules_with_default_lengths_follow_the_per_epoch_curves(tmp_path):
  """Left at their defaults, per-step lengths are in steps (horizon = epochs * steps per epoch,
  step_size one epoch of steps, exponential's gamma per step), so at every epoch boundary a
  per-step schedule gives the per-epoch one's rate instead of ~0 after step 0."""
  common = ["--strategy=grid", "--epochs=3", "--test_top=0", "--space=optimizer=sgd",
            "--space=lr=0.1", "--space=schedule=grid(cosine, exponential, step, one_cycle)"]
  _, per_epoch = _sweep(tmp_path, *common, "--space=schedule_per=epoch", name="epoch")
  _, per_step = _sweep(tmp_path, *common, "--space=schedule_per=step", name="step")
  epoch_lr, step_lr = _lr_by_schedule(per_epoch), _lr_by_schedule(per_step)
  for schedule in ("cosine", "exponential", "step"):
    np.testing.assert_allclose(step_lr[schedule], epoch_lr[schedule], rtol=1e-4, err_msg=schedule)
  assert epoch_lr["cosine"] == pytest.approx([0.1, 0.075, 0.025], rel=1e-4)
  assert epoch_lr["exponential"] == pytest.approx([0.1, 0.01, 0.001], rel=1e-4)
  # One-cycle rises from lr/25 to lr and falls over the whole run, not within one step.
  assert step_lr["one_cycle"][0] == pytest.approx(0.1 / 25, rel=1e-4)
  assert min(step_lr["one_cycle"][1:]) > 0.02


def test_warmup_cosine_per_epoch_never_trains_an_epoch_at_rate_zero(tmp_path):
  _, recs = _sweep(tmp_path, "--strategy=grid", "--epochs=4", "--test_top=0",
                   "--space=optimizer=sgd", "--space=lr=0.3", "--space=schedule=warmup_cosine",
                   "--space=warmup=2", "--space=lr_min=0.0")
  (rec,) = recs.values()
  assert rec.history["lr"][:3] == pytest.approx([0.1, 0.2, 0.3], rel=1e-5)
  assert rec.history["lr"][3] == pytest.approx(0.3 * 0.5 * (1 + np.cos(np.pi / 2)), rel=1e-4)
