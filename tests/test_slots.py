"""Slots: chunks run at a few compiled sizes, padded with inactive fillers that never change a
member's numbers, and every sweep counts the programs it really traced (summary.json) against
what its plans announced. Also: checkpoints paced by time, decided on an injected clock."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from sweeps import checkpoint, cli, plan as plan_lib, records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = ["--dataset=circle", "--noprogress", "--test_top=1", "--space=model=mlp",
       "--space=widths=[8]", "--space=batch_size=50", "--train_subset=300", "--val_subset=100"]


def _sweep(tmp_path, name, *argv):
  """Runs a sweep in-process as the CLI would. The jit caches are process-wide, so each test
  gives its own --train_subset (data shapes are part of a program) to start from nothing."""
  workdir = str(tmp_path / name)
  cfg = cli.config_from_argv([f"--workdir={workdir}", *TOY, *argv], "circle")
  space, strategy = cli.validate(cfg)
  with open(os.path.join(str(tmp_path), name + ".out"), "w") as out:
    cli.run_sweep(cfg, space, strategy, out=out)
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, "plan.json")) as f:
    plans = json.load(f)
  with open(os.path.join(str(tmp_path), name + ".out")) as f:
    text = f.read()
  return {r.member_id: r for r in records.read_records(workdir)}, summary, plans, text


def _assert_resumes_to(tmp_path, full, argv):
  """The sweep in tmp_path/"cut" (a copy of a finished one, later checkpoints removed) resumes
  mid-training to `full`'s records and compiles what it announced."""
  resumed, summary, _, text = _sweep(tmp_path, "cut", *argv)
  assert "resuming" in text and "phase train" in text
  assert summary["programs_compiled"] == summary["programs_announced"]
  for member_id, record in full.items():
    assert resumed[member_id].history == record.history
    assert resumed[member_id].status == record.status


def test_slot_sizes_are_powers_of_two_in_multiples_of_the_device_count():
  assert [plan_lib.slot_size(n) for n in range(1, 10)] == [1, 2, 4, 4, 8, 8, 8, 8, 16]
  assert [plan_lib.slot_size(n, 8) for n in (1, 3, 8, 9, 14, 17)] == [8, 8, 8, 16, 16, 32]
  assert [plan_lib.slot_size(n, 3) for n in (1, 2, 3, 5)] == [3, 3, 6, 9]
  assert plan_lib.max_slots(100) == 64 and plan_lib.max_slots(0, 4) == 4
  assert plan_lib.max_slots(20, 4) == 16 and plan_lib.max_slots(7, 8) == 8


def test_a_members_numbers_do_not_depend_on_the_fillers_of_its_chunk(tmp_path):
  """Three members run in a chunk of 4 slots (one filler); the same three beside a fourth real
  member fill it without fillers. Same ids, same numbers; the filler is never recorded."""
  lrs = "0.05, 0.1, 0.2"
  padded, summary, plans, _ = _sweep(tmp_path, "padded", "--strategy=grid", "--epochs=2",
                                     f"--space=lr=grid({lrs})")
  full, _, _, _ = _sweep(tmp_path, "full", "--strategy=grid", "--epochs=2",
                         f"--space=lr=grid({lrs}, 0.3)")
  assert plans[0]["buckets"][0]["slots"] == [4] and sorted(padded) == [0, 1, 2]
  assert summary["members"] == 3
  for member_id, record in padded.items():
    assert record.params == full[member_id].params
    for key in ("train_loss", "val_loss", "val_acc"):
      np.testing.assert_allclose(record.history[key], full[member_id].history[key], rtol=1e-6)


def test_grid_compiles_what_its_plan_announced_and_the_short_chunk_reuses_it(tmp_path):
  """Five members under a memory budget of four: chunks 4 + 1->4 slots share one program."""
  _, summary, plans, text = _sweep(
      tmp_path, "grid", "--strategy=grid", "--epochs=1",
      "--space=lr=grid(0.01, 0.02, 0.05, 0.1, 0.2)", "--space=widths=[256, 256]",
      "--memory_budget_mb=16",   # ~2.0 MiB a slot (plan.estimate), 60% usable: 4 per chunk
      "--train_subset=301")
  bucket = plans[0]["buckets"][0]
  assert bucket["slots"] == [4, 4], bucket
  assert summary["programs_compiled"] == summary["programs_announced"] == 1
  assert plans[0]["compile_count"] == 1 and "chunks [4,1->4] slots" in text
  assert "1 programs compiled (1 announced)" in text.strip().splitlines()[-1]


def test_hyperband_compiles_what_was_announced_and_reuses_sizes(tmp_path):
  recs, summary, plans, text = _sweep(
      tmp_path, "hb", "--strategy=hyperband", "--epochs=9", "--eta=3", "--trials=2",
      "--space=lr=loguniform(0.01, 0.3)", "--seed=1", "--train_subset=302")
  assert any(r.status == "pruned" for r in recs.values())
  assert summary["programs_compiled"] == summary["programs_announced"]
  announced = sum(p["compile_count"] for p in plans) + sum(
      int(line.split(", ")[-1].split()[0]) for line in text.splitlines()
      if "new compiled program" in line)
  assert announced == summary["programs_compiled"]
  # Every population size lands on a power of two, so sizes repeat across brackets and rungs
  # instead of compiling once per distinct member count.
  sizes = {n for p in plans for b in p["buckets"] for n in b["slots"]}
  assert all(n & (n - 1) == 0 for n in sizes)
  assert summary["programs_compiled"] <= 5   # sizes 1, 2, 4, 8, 16 at most
  for key in ("compile_seconds", "train_seconds", "checkpoint_seconds"):
    assert summary[key] >= 0.0
  assert summary["members"] == len(recs)


def test_early_stopping_compaction_is_announced_and_counted(tmp_path):
  recs, summary, _, text = _sweep(
      tmp_path, "es", "--strategy=grid", "--epochs=6", "--patience=1", "--monitor=val_loss",
      "--space=lr=grid(0.0, 0.1)", "--space=l2=grid(0.0, 0.001)", "--train_subset=303")
  assert sum(r.status == "stopped" for r in recs.values()) == 2   # lr=0 never improves
  # The two left keep running in the 4-slot program: padding two fillers costs less than a
  # compile (Programs.compact_slots), so the compaction announces nothing new.
  assert "early-stopping compaction" not in text
  assert summary["programs_compiled"] == summary["programs_announced"] == 1


class _Loop:
  phase = "train"


class _Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def _checkpointer(tmp_path, clock, **kwargs):
  saver = checkpoint.SweepCheckpointer(str(tmp_path), clock=clock, **kwargs)
  saver.saved = []

  def save(loop):   # stands in for Orbax: a save that blocks for 1 s of the injected clock
    saver.saved.append(clock.now)
    saver.last_time = clock.now
    saver.last_cost = 1.0
    saver.epochs_since = 0
  saver.save = save
  return saver


def test_checkpoints_by_time_stay_within_two_percent(tmp_path):
  clock, loop = _Clock(), _Loop()
  saver = _checkpointer(tmp_path, clock)
  for second in range(0, 3000, 10):   # a chunk-epoch every 10 s, a phase boundary every 100 s
    clock.now = float(second)
    loop.phase = "ask" if second % 100 == 0 else "train"
    saver(loop, False)
  # The first boundary saves (cost unknown); then a boundary only once 1 s / 2% = 50 s passed,
  # i.e. the next boundary; epochs alone never save before 10 minutes.
  assert saver.saved[:3] == [0.0, 100.0, 200.0]
  assert all(b - a >= 50 for a, b in zip(saver.saved, saver.saved[1:]))
  assert len(saver.saved) * 1.0 <= 0.02 * 3000 + 1


def test_checkpoint_flags_keep_working(tmp_path):
  clock, loop = _Clock(), _Loop()
  by_epochs = _checkpointer(tmp_path, clock, every_epochs=3)
  for _ in range(9):
    by_epochs(loop, False)
  assert len(by_epochs.saved) == 3   # no time passes: only the epoch count saves
  clock.now = 1000.0
  by_minutes = _checkpointer(tmp_path, clock, every_minutes=0.5)
  for second in range(0, 121, 10):
    clock.now = 1000.0 + second
    by_minutes(loop, False)
  assert by_minutes.saved == [1030.0, 1060.0, 1090.0, 1120.0]   # exactly as given
  by_minutes(loop, True)
  assert len(by_minutes.saved) == 5   # forced (sweep done, SIGTERM) always saves


def test_an_uneven_chunk_is_padded_to_the_device_count_and_gives_one_devices_numbers(tmp_path):
  """Three members on 4 fake devices: one chunk of 4 slots, one per device, split (not
  replicated), and the numbers of the same sweep on one device."""
  argv = ["--strategy=grid", "--epochs=2", "--space=lr=grid(0.05, 0.1, 0.2)",
          "--train_subset=304"]
  one, _, _, _ = _sweep(tmp_path, "one", *argv)
  workdir = tmp_path / "four"
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  result = subprocess.run([sys.executable, "-m", "sweeps.toy", f"--workdir={workdir}", *TOY,
                           *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "chunks [3->4] slots | 1 slot/device" in result.stdout
  with open(workdir / "summary.json") as f:
    summary = json.load(f)
  assert summary["devices"] == 4 and summary["programs_compiled"] == summary["programs_announced"]
  four = {r.member_id: r for r in records.read_records(str(workdir))}
  assert sorted(four) == sorted(one) == [0, 1, 2]
  for member_id in one:
    np.testing.assert_allclose(four[member_id].history["val_loss"],
                               one[member_id].history["val_loss"], rtol=1e-5)


def test_a_padded_chunk_resumes_from_a_mid_training_checkpoint_to_the_same_records(
    tmp_path, monkeypatch):
  # A finished sweep keeps only its last checkpoint; keep them all here to resume from one
  # taken mid-training.
  monkeypatch.setattr(checkpoint.SweepCheckpointer, "prune", lambda self: None)
  argv = ["--strategy=grid", "--epochs=3", "--space=lr=grid(0.05, 0.1, 0.2)",
          "--checkpoint_every_epochs=1", "--keep_checkpoints=10", "--train_subset=305"]
  full, _, _, _ = _sweep(tmp_path, "full", *argv)
  folder = tmp_path / "full" / "checkpoints"
  steps = sorted(int(n) for n in os.listdir(folder) if n.isdigit())
  assert len(steps) >= 4
  shutil.copytree(tmp_path / "full", tmp_path / "cut")
  for step in steps[2:]:   # back to the second epoch's save: mid-training, fillers included
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / str(step))
  _assert_resumes_to(tmp_path, full, argv)


def test_each_chunk_initializes_just_before_it_first_trains(tmp_path):
  """Two buckets (two batch sizes): the second is initialized only after the first has trained
  its epochs, so the first result does not wait for every bucket's init compile."""
  from jaxnn import data, population
  from sweeps import run, space as space_lib, strategies
  from sweeps.strategies import base
  calls = []

  class Recording:
    def init(self, spec, hparams, d):
      calls.append(("init", spec.batch_size))
      return population.init(spec, hparams, d)

    def run_epoch(self, spec, state, hparams, d, **kwargs):
      calls.append(("epoch", spec.batch_size))
      return population.run_epoch(spec, state, hparams, d, **kwargs)

    evaluate = staticmethod(population.evaluate)

  dataset = data.load("circle", val_fraction=0.2, seed=0, train_subset=307, val_subset=100)
  space = space_lib.parse(["model=mlp", "widths=[8]", "batch_size=grid(25, 50)"])
  loop = run.SweepLoop(strategies.make_strategy("grid", space, base.Settings(epochs=2)), dataset,
                       test_top=0, trainer=Recording())
  loop.run()
  assert calls == [("init", 25), ("epoch", 25), ("epoch", 25),
                   ("init", 50), ("epoch", 50), ("epoch", 50)]


def test_a_checkpoint_with_a_chunk_not_yet_initialized_resumes_to_the_same_records(
    tmp_path, monkeypatch):
  """A checkpoint taken after the first bucket's first epoch holds the second bucket without
  arrays; the resumed sweep initializes it then, to the same numbers, and compiles what it
  announced."""
  monkeypatch.setattr(checkpoint.SweepCheckpointer, "prune", lambda self: None)
  argv = ["--strategy=grid", "--epochs=2", "--space=batch_size=grid(25, 50)",
          "--space=lr=grid(0.05, 0.2)", "--checkpoint_every_epochs=1", "--keep_checkpoints=10",
          "--train_subset=309"]
  full, summary, _, _ = _sweep(tmp_path, "full", *argv)
  assert summary["programs_compiled"] == summary["programs_announced"] == 2
  folder = tmp_path / "full" / "checkpoints"
  steps = sorted(int(n) for n in os.listdir(folder) if n.isdigit())
  shutil.copytree(tmp_path / "full", tmp_path / "cut")
  for step in steps[1:]:   # back to the first save: bucket 2 not initialized yet
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / str(step))
  with open(tmp_path / "cut" / "checkpoints" / str(steps[0]) / "meta" / "metadata") as f:
    assert '"chunk_ready": [true, false]' in f.read().replace("\n", "")
  _assert_resumes_to(tmp_path, full, argv)
