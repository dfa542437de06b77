"""Achieved FLOP/s of populations against this machine's float32 matmul ceiling, in one run.

    python benchmarks/cpu_throughput.py                                  # small, a few minutes
    python benchmarks/cpu_throughput.py --configs=10 --epochs=3 --examples=40000   # issue 10's size
    pip install -e ".[peers]" && python benchmarks/cpu_throughput.py     # + Keras fit, same configs

Printed, all measured in this one process (other work on the machine moves each figure by 30-50%:
compare the ratios, which are measured side by side):
  ceiling: a jitted float32 matmul of the seed space's widest first layer at batch 128
           (128 x 3072 @ 3072 x 2048), GFLOP/s; the best of several repeats, measured before
           and again after the MLP sweep (the higher counts: on an idle machine the same
           measure moved 124-154 GFLOP/s between runs); also per CPU second of this process
           (time waiting for a core on a shared machine not counted);
  mlp:     a random-search sweep of sweeps/flags/cifar_mlp_random.flags's space (batch 128,
           Adam) run by the sweep loop (sweeps/run.py) on CIFAR-shaped data: planned into
           buckets (--pack, default auto), the next bucket compiled while one trains
           (--compile_ahead, default on), compiles and evaluation included (the programs
           compiled and the compile seconds, in the loop's time and overlapped, are printed);
           GFLOP/s = (6 x true parameters x train examples + 2 x true parameters x val
           examples) / wall seconds (padding is not counted as work); the ratio to the
           ceiling is the goal's figure (>= 0.60);
           the same per CPU second, against the ceiling per CPU second (the load-robust ratio);
  cnn:     4 small_cnn members (conv32-pool-conv64-pool-dense64, momentum, batch 128) on
           MNIST-shaped data as one population vs a plain per-step loop (a jitted step called
           from Python for every batch, loss fetched each step) of the same four configs one
           after another; both compiles included; ratio >= 1.0 is the goal;
  keras:   (only with tensorflow installed) the MLP configs trained with Keras `fit`.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

import jaxnn
from jaxnn import member, population
from jaxnn.data import Dataset, normalize, random_images
from sweeps import space as space_lib
from sweeps import strategies
from sweeps.run import SweepLoop
from sweeps.strategies import base

FLAGS = flags.FLAGS
flags.DEFINE_integer("configs", 4, "MLP configs drawn from the seed space.")
flags.DEFINE_integer("epochs", 1, "MLP epochs.")
flags.DEFINE_integer("examples", 8192, "MLP training examples (32x32x3).")
flags.DEFINE_integer("val_examples", 2048, "MLP validation examples.")
flags.DEFINE_integer("cnn_members", 4, "small_cnn members.")
flags.DEFINE_integer("cnn_examples", 2048, "small_cnn training examples (28x28x1).")
flags.DEFINE_integer("cnn_epochs", 1, "small_cnn epochs.")
flags.DEFINE_integer("seed", 0, "Seed of the config draw.")
flags.DEFINE_list("parts", ["ceiling", "mlp", "cnn", "keras"], "What to measure.")
flags.DEFINE_enum("pack", "auto", ["auto", "off"], "The MLP sweep's --pack.")
flags.DEFINE_bool("compile_ahead", True, "The MLP sweep's --compile_ahead.")

FLAGFILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "sweeps", "flags", "cifar_mlp_random.flags")


def _dataset(n, n_val, shape, seed=0) -> Dataset:
  return random_images(n, n_val, shape, seed=seed)


def matmul_ceiling(m=128, k=3072, n=2048, repeats=20) -> tuple[float, float]:
  """GFLOP/s of a jitted float32 matmul (best of `repeats` timings of 10 chained calls), per
  wall second and per CPU second of this process (all its threads): on a machine shared with
  other work the CPU-second figure moves far less, since waiting for a core is not counted."""
  x = jnp.ones((m, k), jnp.float32)
  w = jnp.ones((k, n), jnp.float32) * 1e-3
  f = jax.jit(lambda x, w: x @ w)
  jax.block_until_ready(f(x, w))
  best, best_cpu = float("inf"), float("inf")
  for _ in range(repeats):
    start, cpu = time.perf_counter(), time.process_time()
    out = [f(x, w) for _ in range(10)]
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - start) / 10)
    best_cpu = min(best_cpu, (time.process_time() - cpu) / 10)
  flops = 2 * m * k * n
  return flops / best / 1e9, flops / max(best_cpu, 1e-9) / 1e9


def seed_space(seed: int, configs: int, epochs: int):
  """The random strategy over the seed CIFAR MLP flagfile's --space lines: what
  `python -m sweeps.cifar --flagfile=sweeps/flags/cifar_mlp_random.flags --trials=N` asks."""
  with open(FLAGFILE) as f:
    lines = [l.strip()[len("--space="):] for l in f if l.startswith("--space=")]
  space = space_lib.parse(lines)
  return strategies.make_strategy("random", space, base.Settings(trials=configs, epochs=epochs,
                                                                 seed=seed))


def mlp_sweep(configs, epochs, dataset, pack="auto", compile_ahead=True):
  """A sweep of `configs` seed-space configs, run by the sweep loop itself (sweeps/run.py:
  planned into buckets, `pack` its --pack, the next bucket compiled while one trains unless
  `compile_ahead` is off; no checkpoints, no test split). FLOPs count each member's TRUE
  parameters (padding is not useful work). Returns (GFLOP/s, seconds, GFLOP per CPU second,
  the loop's summary, the configs), compiles and evaluation included."""
  x = dataset.train.x
  loop = SweepLoop(seed_space(FLAGS.seed, configs, epochs), dataset, test_top=0, pack=pack,
                   compile_ahead=compile_ahead)
  start, cpu = time.perf_counter(), time.process_time()
  runs = loop.run()
  seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
  flops = sum(epochs * run.param_count * (
      6 * population.steps_per_epoch(run.spec, x.shape[0]) * run.spec.batch_size
      + 2 * dataset.val.x.shape[0]) for run in runs)
  return (flops / seconds / 1e9, seconds, flops / cpu_seconds / 1e9, loop.summary(),
          [run.trial.config for run in runs])


def _cnn_step_flops(spec, data) -> float:
  """FLOPs of one small_cnn training step (XLA's cost analysis of a forward, times 3)."""
  model = spec.build_model()
  x = jnp.zeros((spec.batch_size,) + data.train_x.shape[1:], jnp.float32)
  hp = {"dropout": jnp.float32(0), "act_param": jnp.float32(0)}
  variables = model.init({"params": jax.random.key(0)}, x[:1], train=False, hparams=hp)
  fwd = jax.jit(lambda v, x: model.apply(v, x, train=False, hparams=hp))
  cost = fwd.lower(variables, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return 3 * float(cost["flops"])


def plain_loop(spec, rows, data, epochs) -> float:
  """What a user writes by hand: one jitted step per batch called from Python, the loss
  fetched every step; the configs one after another. Returns seconds, compile included."""
  model = spec.build_model()
  n, bs = data.train_x.shape[0], spec.batch_size
  start = time.perf_counter()
  for row in rows:
    tx = optax.sgd(row["lr"], momentum=row["momentum"])
    hp = {"dropout": jnp.float32(row["dropout"]), "act_param": jnp.float32(0)}
    x0 = normalize(data.train_x[:1], data.mean, data.std)
    params = model.init({"params": jax.random.key(row["seed"])}, x0, train=False,
                        hparams=hp)["params"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y, key):
      def loss_fn(p):
        out = model.apply({"params": p}, normalize(x, data.mean, data.std), train=True,
                          hparams=hp, rngs={"dropout": key})
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    for epoch in range(epochs):
      order = np.random.default_rng(epoch).permutation(n)
      for i in range(n // bs):
        idx = order[i * bs:(i + 1) * bs]
        params, opt_state, loss = step(params, opt_state, data.train_x[idx], data.train_y[idx],
                                       jax.random.key(i))
        float(loss)
  return time.perf_counter() - start


def cnn_population_vs_loop(members, examples, epochs):
  dataset = _dataset(examples, 1024, (28, 28, 1))
  data = population.device_data(dataset)
  rng = np.random.default_rng(1)
  configs = [dict(model="small_cnn", optimizer="momentum", batch_size=128, epochs=epochs,
                  lr=float(10 ** rng.uniform(-3, -1)), momentum=0.9, seed=i)
             for i in range(members)]
  resolved = [member.resolve(c, num_classes=10) for c in configs]
  spec, rows = resolved[0][0], [r for _, r in resolved]
  seconds = {}
  for vectorize in population.VECTORIZE:
    start = time.perf_counter()
    population.train(spec, rows, list(range(members)), data, epochs, vectorize=vectorize)
    seconds[vectorize] = time.perf_counter() - start
  seconds["loop"] = plain_loop(spec, rows, data, epochs)
  flops = _cnn_step_flops(spec, data) * members * epochs * (examples // spec.batch_size)
  return seconds, flops


def keras_fit(configs, epochs, dataset):
  """The same MLP configs trained with Keras `fit` (one after another); (GFLOP/s, seconds)."""
  import tensorflow as tf  # optional extra 'peers'
  x = dataset.train.x.reshape(len(dataset.train.x), -1).astype(np.float32) / 255.0
  y = dataset.train.y
  xv = dataset.val.x.reshape(len(dataset.val.x), -1).astype(np.float32) / 255.0
  flops = 0.0
  start = time.perf_counter()
  for c in configs:
    # Plain Python values (the space's draws are numpy scalars) and keyword arguments: Keras 3's
    # compile takes loss_weights third, so a positional ["accuracy"] became a 'string' weight.
    reg = tf.keras.regularizers.l2(float(c.get("l2", 0.0)))
    layers = [tf.keras.Input((x.shape[1],))]
    for w in c["widths"]:
      layers += [tf.keras.layers.Dense(int(w), activation=str(c["activation"]),
                                       kernel_regularizer=reg),
                 tf.keras.layers.Dropout(float(c.get("dropout", 0.0)))]
    model = tf.keras.Sequential(layers + [tf.keras.layers.Dense(10)])
    model.compile(optimizer=tf.keras.optimizers.Adam(float(c.get("lr", 1e-3))),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=128, epochs=epochs, validation_data=(xv, dataset.val.y),
              verbose=0)
    params = model.count_params()
    flops += epochs * params * (6 * (len(x) // 128) * 128 + 2 * len(xv))
  seconds = time.perf_counter() - start
  return flops / seconds / 1e9, seconds


def main(argv):
  del argv
  jaxnn.configure()   # the settings a sweep runs with (without it: slower random-op compiles)
  parts = set(FLAGS.parts)
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"{os.cpu_count()} CPUs; one run, other work on the machine moves figures 30-50%")
  ceiling, ceiling_cpu = matmul_ceiling() if "ceiling" in parts else (float("nan"),) * 2
  print(f"ceiling  float32 matmul 128x3072 @ 3072x2048: {ceiling:8.1f} GFLOP/s "
        f"({ceiling_cpu:.1f} per CPU second)", flush=True)
  dataset = _dataset(FLAGS.examples, FLAGS.val_examples, (32, 32, 3))
  mlp = None
  configs = None
  if "mlp" in parts or "keras" in parts:
    mlp, seconds, mlp_cpu, summary, configs = mlp_sweep(FLAGS.configs, FLAGS.epochs, dataset,
                                                        FLAGS.pack, FLAGS.compile_ahead)
    if "ceiling" in parts:   # the same ceiling moved 124-154 GFLOP/s between idle runs: the
      again = matmul_ceiling()   # best of a measure before and one after the sweep
      print(f"ceiling  again after the sweep: {again[0]:8.1f} GFLOP/s ({again[1]:.1f} per CPU "
            f"second); the ratios use the higher of the two", flush=True)
      ceiling, ceiling_cpu = max(ceiling, again[0]), max(ceiling_cpu, again[1])
    print(f"mlp      a sweep of {FLAGS.configs} seed-space configs x {FLAGS.epochs} epochs of "
          f"{FLAGS.examples}: {mlp:8.1f} GFLOP/s in {seconds:.1f} s "
          f"({summary['programs_compiled']} epoch programs; compile "
          f"{summary['compile_seconds']:.1f} s in the loop's time, "
          f"{summary['compile_overlapped_seconds']:.1f} s more overlapped with training); "
          f"/ ceiling {mlp / ceiling:.2f} (goal >= 0.60); per CPU second {mlp_cpu:.1f}, "
          f"/ ceiling {mlp_cpu / ceiling_cpu:.2f}", flush=True)
  if "cnn" in parts:
    seconds, flops = cnn_population_vs_loop(FLAGS.cnn_members, FLAGS.cnn_examples,
                                            FLAGS.cnn_epochs)
    best = min(seconds["vmap"], seconds["map"])
    print(f"cnn      {FLAGS.cnn_members} small_cnn x {FLAGS.cnn_epochs} epochs of "
          f"{FLAGS.cnn_examples}: vmap {seconds['vmap']:.1f} s, lax.map {seconds['map']:.1f} s, "
          f"plain loop {seconds['loop']:.1f} s; {flops / best / 1e9:.1f} GFLOP/s "
          f"(/ ceiling {flops / best / 1e9 / ceiling:.2f}); population / loop speed "
          f"{seconds['loop'] / best:.2f} (goal >= 1.0)", flush=True)
  if "keras" in parts:
    try:
      import tensorflow  # noqa: F401
    except ImportError:
      print("keras    skipped: tensorflow not installed (pip install -e '.[peers]')")
    else:
      keras, seconds = keras_fit(configs, FLAGS.epochs, dataset)
      print(f"keras    same MLP configs with fit: {keras:8.1f} GFLOP/s in {seconds:.1f} s"
            + (f"; sweep / keras {mlp / keras:.2f}" if mlp else ""), flush=True)


if __name__ == "__main__":
  app.run(main)
