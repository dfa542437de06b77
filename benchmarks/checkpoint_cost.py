"""What checkpointing costs a sweep: a 64-member MLP bucket on CIFAR-10 shapes.

    python benchmarks/checkpoint_cost.py                    # CPU defaults
    python benchmarks/checkpoint_cost.py --examples=50000   # full CIFAR-10 size

The same grid sweep (64 learning rates, one bucket, one chunk) runs three times in this process:
without checkpoints, with the default interval (every 5 chunk-epochs and every phase boundary),
and with a checkpoint after every epoch. Printed: wall time of each, the time the training thread
spent in saves (Orbax writes asynchronously; what blocks is the device->host copy and dispatch),
and both as a fraction of the epoch time. Target: under 5% at the default interval.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time

import numpy as np
from absl import app, flags

import jaxnn
from jaxnn.data import Dataset, Split
from sweeps import checkpoint, space
from sweeps.run import SweepLoop
from sweeps.strategies import base, make_strategy

FLAGS = flags.FLAGS
flags.DEFINE_integer("members", 64, "Members in the bucket.")
flags.DEFINE_integer("examples", 2048, "Training examples (32x32x3).")
flags.DEFINE_integer("epochs", 5, "Epochs per member.")
flags.DEFINE_string("widths", "256,128", "MLP hidden widths.")


def _dataset(n):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
  y = rng.integers(0, 10, size=n).astype(np.int32)
  small = Split(x[:512], y[:512])
  return Dataset("synthetic-cifar", Split(x, y), small, small, 10, tuple(map(str, range(10))),
                 np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32))


def _run(dataset, every_epochs):
  lrs = ", ".join(f"{v:.6g}" for v in np.geomspace(1e-4, 1e-1, FLAGS.members))
  widths = "[" + FLAGS.widths + "]"
  sweep_space = space.parse(["model=mlp", f"widths={widths}", "optimizer=adam",
                             "batch_size=128", f"lr=grid({lrs})"])
  strategy = make_strategy("grid", sweep_space, base.Settings(epochs=FLAGS.epochs))
  workdir = tempfile.mkdtemp()
  saver = (checkpoint.SweepCheckpointer(workdir, every_epochs=every_epochs)
           if every_epochs else None)
  epoch_times = []
  last = [time.perf_counter()]

  def on_epoch(loop, chunk):
    now = time.perf_counter()
    epoch_times.append(now - last[0])
    last[0] = now

  loop = SweepLoop(strategy, dataset, test_top=0, on_epoch=on_epoch,
                   on_checkpoint=saver, memory_budget_bytes=64 * 2**30)
  start = time.perf_counter()
  loop.run()
  if saver:
    saver.close()
  wall = time.perf_counter() - start
  shutil.rmtree(workdir, ignore_errors=True)
  blocked = saver.seconds_saving if saver else 0.0
  saves = saver.saves if saver else 0
  return wall, statistics.median(epoch_times[1:]), blocked, saves


def main(argv):
  del argv
  jaxnn.configure()   # the library's JAX settings, before any key is made
  dataset = _dataset(FLAGS.examples)
  _run(dataset, 0)   # warm-up: compile once, so the three timed runs share the program
  results = {name: _run(dataset, every) for name, every in
             (("no checkpoints", 0), ("default (every 5)", 5), ("every epoch", 1))}
  base_wall = results["no checkpoints"][0]
  print(f"{FLAGS.members} members, MLP [{FLAGS.widths}] on {FLAGS.examples} CIFAR-shaped "
        f"examples, {FLAGS.epochs} epochs")
  print(f"{'variant':20s} {'wall s':>8s} {'median epoch s':>15s} {'saves':>6s} "
        f"{'blocked s':>10s} {'blocked/epoch-time':>19s} {'wall vs none':>13s}")
  for name, (wall, epoch, blocked, saves) in results.items():
    share = blocked / (epoch * FLAGS.epochs)
    print(f"{name:20s} {wall:8.2f} {epoch:15.3f} {saves:6d} {blocked:10.3f} "
          f"{100 * share:18.1f}% {100 * (wall / base_wall - 1):+12.1f}%")


if __name__ == "__main__":
  app.run(main)
