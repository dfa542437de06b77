"""Measures the constants of the packing cost model (sweeps/plan.py, CALIBRATION) on this machine.

    nice -n 10 python benchmarks/cost_calibration.py            # ~3 minutes on the 2-core CPU

Two things decide whether packing pays, and both are measured through the real programs
(population.init + population.train_epoch of MLP buckets on CIFAR-shaped uint8 data):
  compile: seconds JAX spends tracing + compiling one MLP bucket's init and epoch programs
           (its own monitoring events), for depths 1-5, 1 or 3 activations, 1 or 8 slots;
  compute: seconds of one epoch (compile excluded: the second epoch) of a one-layer MLP of
           width w, vmapped over `slots` members, as achieved FLOP/s where
           FLOPs = 6 x MACs x train examples + 2 x MACs x val examples per member.
It prints a fitted model: compile_seconds = base + per_layer * depth (+ per_choice per extra
activation), and seconds per epoch = steps x step_seconds + FLOPs / rate(width), with rate(w)
a table over widths (interpolated in log width). Copy the printed table into plan.py.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import app, flags

from jaxnn import member, population
from jaxnn.data import random_images
from sweeps import programs

flags.DEFINE_integer("examples", 2048, "Training examples (32x32x3 uint8).")
flags.DEFINE_integer("val_examples", 1000, "Validation examples.")
flags.DEFINE_list("widths", ["64", "128", "256", "512", "1024", "2048"], "Widths to time.")
flags.DEFINE_list("slots", ["1", "8"], "Population sizes to time.")
FLAGS = flags.FLAGS

SHAPE = (32, 32, 3)


def _data(n, n_val):
  return population.device_data(random_images(n, n_val, SHAPE))


def _bucket(widths, activations, slots, num_train):
  configs = [dict(model="mlp", widths=list(widths), optimizer="adam", batch_size=128,
                  activation=activations[i % len(activations)], seed=i) for i in range(slots)]
  resolved = [member.resolve(c, num_classes=10, num_train=num_train) for c in configs]
  spec = member.merge_specs([s for s, _ in resolved])
  rows = [member.fit_row(s, r, spec) for s, r in resolved]
  return spec, rows


def _time(spec, rows, data):
  """(compile seconds, seconds of a compiled epoch)."""
  hparams = jax.tree_util.tree_map(
      jax.numpy.asarray, population.stack_rows(rows, list(range(len(rows)))))
  mode = "map" if len(rows) == 1 else "vmap"   # what the sweep loop runs (SweepLoop._mode)
  before = programs.compile_seconds()
  state = population.init(spec, hparams, data)
  state, metrics = population.train_epoch(spec, state, hparams, data, vectorize=mode)
  jax.block_until_ready(metrics)
  compile_s = programs.compile_seconds() - before
  start = time.perf_counter()
  state, metrics = population.train_epoch(spec, state, hparams, data, vectorize=mode)
  jax.block_until_ready(metrics)
  return compile_s, time.perf_counter() - start


def main(argv):
  del argv
  print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs, backend {jax.default_backend()}")
  data = _data(FLAGS.examples, FLAGS.val_examples)
  n, n_val = FLAGS.examples, FLAGS.val_examples
  steps = n // 128
  print("\ncompile seconds (init + train_epoch) of one MLP bucket, width 256")
  compiles = []
  for depth in (1, 3, 5):
    for acts in (("relu",), ("relu", "gelu", "tanh")):
      for slots in (1, 8):
        if slots == 1 and len(acts) > 1:   # one member has one activation: the row above
          continue
        spec, rows = _bucket([256] * depth, acts, slots, n)
        c, _ = _time(spec, rows, data)
        compiles.append((depth, len(acts), slots, c))
        print(f"  depth {depth} activations {len(acts)} slots {slots}: {c:.2f} s", flush=True)
  a = np.array([[1.0, d, k - 1] for d, k, _, _ in compiles])
  fit = np.linalg.lstsq(a, np.array([c for *_, c in compiles]), rcond=None)[0]
  print(f"  fit: compile = {fit[0]:.2f} + {fit[1]:.2f} x depth + {fit[2]:.2f} x extra activations")

  print("\nachieved GFLOP/s of one epoch (compiled), one layer of width w, batch 128")
  rates = {}
  for slots in map(int, FLAGS.slots):
    for width in map(int, FLAGS.widths):
      spec, rows = _bucket([width], ("relu",), slots, n)
      _, seconds = _time(spec, rows, data)
      macs = 3072 * width + width * 10
      flops = (6 * macs * steps * 128 + 2 * macs * n_val) * slots
      rates.setdefault(width, []).append(flops / seconds)
      print(f"  slots {slots:2d} width {width:5d}: {seconds:6.3f} s, "
            f"{flops / seconds / 1e9:6.1f} GFLOP/s", flush=True)
  print("  table (width: GFLOP/s, mean over slot sizes): {"
        + ", ".join(f"{w}: {np.mean(r) / 1e9:.0f}" for w, r in rates.items()) + "}")


if __name__ == "__main__":
  app.run(main)
