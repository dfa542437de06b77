"""The planner's memory estimate (sweeps/plan.py: `chunk_bytes`) against XLA's own count of the
compiled epoch program (`plan.compiled_bytes`: arguments + outputs + temporaries), and against
what the process's resident memory really grows by while a chunk runs (`--rss`).

    nice -n 10 python benchmarks/memory_calibration.py          # compiles only, ~3 minutes
    nice -n 10 python benchmarks/memory_calibration.py --rss    # also runs 2 epochs of a few

Shapes: packed MLPs (widths 64..2048, depth 1..5, slots 1..8, several activations), every
optimizer family and a mix of families, batch sizes, batch norm, and two convolutional models,
on CIFAR-shaped uint8 data (2048 train, 1000 val). The goal: estimate >= compiled on every
shape, and within ~1.5x of it. Measured figures: plan.py (UPDATE_TEMPORARIES) and the README.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from jaxnn import member, population
from jaxnn.data import random_images
from sweeps import plan as plan_lib

flags.DEFINE_bool("rss", False, "Also run 2 epochs of a few shapes and report the peak RSS.")
flags.DEFINE_integer("examples", 2048, "Training examples (32x32x3 uint8).")
flags.DEFINE_integer("val_examples", 1000, "Validation examples.")
FLAGS = flags.FLAGS

SHAPE = (32, 32, 3)
MIB = 2**20


def _mlp(widths, optimizer="adam", **kwargs):
  return dict(model="mlp", widths=list(widths), optimizer=optimizer,
              batch_size=kwargs.pop("batch_size", 128), **kwargs)


def cases():
  """(label, configs packed into one bucket, slots)."""
  out = []
  for widths in ([64], [256], [1024], [2048], [64] * 5, [2048] * 3, [128, 2048]):
    for slots in (1, 2, 8):
      out.append((f"mlp {widths}", [_mlp(widths)], slots))
  out.append(("packed [64] + [2048]x3", [_mlp([64]), _mlp([2048] * 3, activation="tanh")], 4))
  out.append(("packed [256]x5, 3 activations",
              [_mlp([256] * 5, activation=a) for a in ("relu", "gelu", "tanh")], 4))
  out.append(("packed [1024,2048,2048,1024,2048], 3 act.",
              [_mlp([1024, 2048, 2048, 1024, 2048], activation=a)
               for a in ("relu", "gelu", "tanh")],
              8))
  for name in ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "rmsprop_centered",
               "adagrad", "adadelta"):
    out.append((f"mlp [512,512] {name}", [_mlp([512, 512], name)], 4))
  out.append(("mlp [512,512] adam+momentum", [_mlp([512, 512], "adam"),
                                             _mlp([512, 512], "momentum")], 4))
  out.append(("mlp [512,512] 7 families", [_mlp([512, 512], o) for o in (
      "sgd", "nesterov", "adam", "rmsprop", "rmsprop_centered", "adagrad", "adadelta")], 8))
  for batch in (32, 512):
    out.append((f"mlp [1024] batch {batch}", [_mlp([1024], batch_size=batch)], 4))
  out.append(("mlp [256,256] batchnorm", [_mlp([256, 256], batchnorm=True)], 4))
  for model in ("small_cnn", "lenet5"):
    for slots in (1, 4):
      out.append((model, [dict(model=model, optimizer="adam", batch_size=128)], slots))
  return out


def bucket(configs, num_train, slots):
  resolved = [member.resolve(c, num_classes=10, num_train=num_train) for c in configs]
  spec = member.merge_specs([s for s, _ in resolved])
  rows = [member.fit_row(s, r, spec) for s, r in resolved]
  return spec, (rows * slots)[:slots]


def _data(n, n_val):
  return population.device_data(random_images(n, n_val, SHAPE))


def _rss():
  with open("/proc/self/status") as f:
    fields = dict(line.split(":", 1) for line in f)
  return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def _peak(spec, rows, data):
  """Resident bytes the process grows by over init + 2 epochs of the chunk (high-water mark)."""
  hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows(rows, range(len(rows))))
  mode = "map" if len(rows) == 1 else "vmap"
  base = _rss()[0]
  with open("/proc/self/clear_refs", "w") as f:   # resets the high-water mark
    f.write("5")
  state = population.init(spec, hparams, data)
  for _ in range(2):
    state, metrics = population.run_epoch(spec, state, hparams, data, vectorize=mode,
                                          block=population.default_block(spec), retryable=True)
    jax.block_until_ready(metrics)
  del state
  return _rss()[1] - base


def main(argv):
  del argv
  print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs, backend {jax.default_backend()}")
  n, n_val = FLAGS.examples, FLAGS.val_examples
  data = _data(n, n_val)
  ratios = []
  print(f"\n{'case':44} {'slots':>5} {'params':>10} {'compiled':>9} {'estimate':>9} {'est/xla':>7}"
        + (f" {'RSS peak':>9} {'est/RSS':>7}" if FLAGS.rss else "") + "   (MiB)")
  for label, configs, slots in cases():
    spec, rows = bucket(configs, n, slots)
    start = time.perf_counter()
    compiled = plan_lib.compiled_bytes(spec, slots, data)
    est = plan_lib.chunk_bytes(spec, slots, SHAPE, n, "uint8", n_val)
    _, params = plan_lib.estimate(spec, SHAPE, n, "uint8", n_val)
    ratios.append(est / compiled)
    line = (f"{label:44} {slots:5d} {params:10,d} {compiled / MIB:9.1f} {est / MIB:9.1f} "
            f"{est / compiled:7.2f}")
    if FLAGS.rss and slots > 1 and params > 1_000_000:
      peak = _peak(spec, rows, data)
      line += f" {peak / MIB:9.1f} {est / peak:7.2f}"
    print(line + f"   ({time.perf_counter() - start:.0f} s)", flush=True)
  print(f"\nestimate / compiled: min {min(ratios):.2f}, max {max(ratios):.2f}; "
        f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  app.run(main)
