"""Defects a review found in the sweep loop (issue 13), each pinned through the real loop:
`cli.run_sweep` -> `sweeps.run.SweepLoop` -> `jaxnn.population`, on the toy spiral set with
tiny MLPs, so every test takes seconds."""

import collections
import os

import jax
import numpy as np
import pytest

from jaxnn import data, member, population
from sweeps import cli, records, run, strategies
from sweeps import space as space_lib
from sweeps.strategies import base

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


def _xla_out_of_memory():
  return jax.errors.JaxRuntimeError(
      "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1048576 bytes.")


def test_out_of_memory_in_a_training_epoch_splits_and_finishes_with_the_same_records(
    tmp_path, monkeypatch):
  """An allocation failure raised by the epoch program itself (after it was called, where a
  donated state would already be gone) in the second epoch of a 4-member chunk: the chunk is
  split and retried from its state before that epoch; every record equals the uninterrupted
  sweep's, plus the split event."""
  argv = ["--strategy=grid", "--epochs=3", "--test_top=4", "--space=optimizer=momentum",
          "--space=lr=grid(0.01, 0.03, 0.1, 0.3)"]
  _, reference = _sweep(tmp_path, *argv, name="reference")
  real = population.train_epoch_retryable
  failures = []

  def failing_once(spec, state, hparams, data, vectorize="vmap"):
    out = real(spec, state, hparams, data, vectorize=vectorize)
    if not failures and state.step.shape[0] == 4 and int(state.epoch[0]) == 1:
      failures.append(1)
      raise _xla_out_of_memory()
    return out

  monkeypatch.setattr(population, "train_epoch_retryable", failing_once)
  _, recs = _sweep(tmp_path, *argv, name="oom")
  assert failures == [1]
  assert sorted(recs) == sorted(reference)
  for i, rec in recs.items():
    ref = reference[i]
    assert rec.status == ref.status == "complete"
    for metric, values in ref.history.items():
      np.testing.assert_allclose(rec.history[metric], values, rtol=1e-5, err_msg=metric)
    assert rec.test == pytest.approx(ref.test, rel=1e-5)
    splits = [e for e in rec.events if e["kind"] == "split"]
    assert len(splits) == 1 and splits[0]["epoch"] == 1
    assert "chunk of 4 out of memory, retried as 2+2" in splits[0]["reason"]


def test_only_xla_allocation_failures_count_as_out_of_memory():
  assert run.is_out_of_memory(_xla_out_of_memory())
  assert run.is_out_of_memory(jax.errors.JaxRuntimeError(
      "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space "
      "hbm. Used 20.5G of 15.48G hbm."))
  assert run.is_out_of_memory(run.SimulatedOutOfMemory("RESOURCE_EXHAUSTED: simulated"))
  assert not run.is_out_of_memory(jax.errors.JaxRuntimeError(
      "RESOURCE_EXHAUSTED: too many open files"))
  assert not run.is_out_of_memory(ValueError("RESOURCE_EXHAUSTED: Out of memory"))
  assert not run.is_out_of_memory(MemoryError("host allocation"))


def test_batch_larger_than_the_training_set_is_refused_not_clamped(tmp_path):
  workdir = tmp_path / "big_batch"
  cfg = cli.config_from_argv([f"--workdir={workdir}", *TOY, "--space=batch_size=100000",
                              "--strategy=grid", "--epochs=1"], "spiral")
  space, strategy = cli.validate(cfg)
  with pytest.raises(member.ConfigError, match=r"batch_size: got 100000; allowed: at most the"):
    cli.run_sweep(cfg, space, strategy, out=open(os.devnull, "w"))
  assert not workdir.exists()


def test_an_implausible_memory_budget_is_refused():
  cfg = cli.config_from_argv(["--dry_run", *TOY, "--memory_budget_mb=0.01"], "spiral")
  with pytest.raises(cli.UsageError, match=r"--memory_budget_mb: got 0.01; allowed: a number >= 1"):
    cli.validate(cfg)


def test_early_stopped_members_leave_their_chunk_at_once(tmp_path):
  """lr=0 never improves val_loss, so with patience 1 that member stops after its 2nd epoch
  while the others train on: from then on it must not be in the chunk that trains (before the
  fix it kept computing until half of its chunk had stopped)."""
  dataset = data.load("spiral", val_fraction=0.2, seed=0)
  space = space_lib.parse(["model=mlp", "widths=[8]", "batch_size=50", "optimizer=sgd",
                           "lr=grid(0.0, 0.1, 0.2, 0.3)"])
  strategy = strategies.make_strategy(
      "grid", space, base.Settings(epochs=4, objective="val_loss"))
  trained_in_chunk = collections.Counter()
  told = []

  def on_epoch(loop, chunk):
    trained_in_chunk.update(chunk.ids)

  loop = run.SweepLoop(strategy, dataset, objective="val_loss", test_top=0,
                       early_stopping=run.EarlyStopping(patience=1, monitor="val_loss"),
                       on_epoch=on_epoch, on_record=lambda recs: None)
  real_tell = strategy.tell
  strategy.tell = lambda report: (told.append((report.member_id, report.status)),
                                  real_tell(report))
  runs = {r.trial.member_id: r for r in loop.run()}
  assert runs[0].status == "stopped" and runs[0].epochs_run == 2
  assert told[0] == (0, "stopped")   # told as it stopped, not at the end of the phase
  for member_id, r in runs.items():
    assert trained_in_chunk[member_id] == r.epochs_run, member_id
  assert sum(r.status == "running" for r in runs.values()) == 0


def test_pbt_replaces_members_that_diverge(tmp_path):
  """lr from loguniform(0.01, 1e6): most of the population diverges in its first epoch. At
  every sync the diverged members are replaced first (exploit of a healthy parent), so the
  population stays whole instead of running on with the survivors."""
  _, recs = _sweep(tmp_path, "--strategy=pbt", "--batch=6", "--epochs=4", "--pbt_interval=1",
                   "--pbt_fraction=0.5", "--test_top=0", "--space=optimizer=sgd",
                   "--space=lr=loguniform(0.01, 1e6)")
  revived = 0
  for rec in recs.values():
    diverged = [e["epoch"] for e in rec.events if e["kind"] == "diverged"]
    exploits = [e for e in rec.events if e["kind"] == "exploit"]
    for epoch in diverged:
      if epoch + 1 < 4:   # a sync followed: replaced there, as the first of the bottom
        assert any(e["epoch"] == epoch + 1 and "diverged" in e["reason"] for e in exploits), \
            rec.events
        revived += 1
    assert len(rec.history["val_acc"]) == rec.epochs_run
  assert revived >= 2
  assert sum(r.status == "complete" for r in recs.values()) >= 4
