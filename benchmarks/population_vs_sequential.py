"""Population training vs one config at a time vs a plain per-step Python loop.

    python benchmarks/population_vs_sequential.py                 # CPU defaults (minutes)
    python benchmarks/population_vs_sequential.py --sizes=1,4,16,64 --examples=8192   # GPU

For N configs that differ only in numbers (lr, momentum, dropout, seed), one epoch is timed:
  population: the N members as one bucket, one call of population.train_epoch, both ways of
              running members side by side: jax.vmap (one batched computation) and lax.map
              (members one after another inside one program); the better is used for ratios;
  sequential: the same jitted program with a population of 1 (unbatched, 'map'), called N times;
  python loop: the textbook loop a user writes: a jitted single-example-batch train step called
               from Python for every batch, loss fetched to the host every step.
Compilation is excluded (each variant is warmed up once); every figure is the median of
--repeats runs measured in this one process. Printed: configs/second and the ratios.

Measured figures live in the README ("Benchmarks").
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

import jaxnn
from jaxnn import member, population
from jaxnn.data import Dataset, Split, normalize

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["mlp", "small_cnn"], "Families to time.")
flags.DEFINE_list("sizes", ["1", "4", "16", "64"], "Population sizes N.")
flags.DEFINE_integer("examples", 2048, "Training examples (32x32x3, synthetic).")
flags.DEFINE_integer("cnn_examples", 512, "Training examples for convolutional models.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (median reported).")
flags.DEFINE_integer("max_sequential", 16, "Time at most this many sequential configs and "
                     "extrapolate linearly (each is an identical program call).")

MODEL_CONFIG = {
    "mlp": dict(model="mlp", widths=[512, 256]),
    "small_cnn": dict(model="small_cnn"),
}


def _dataset(n: int) -> Dataset:
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
  y = rng.integers(0, 10, size=n).astype(np.int32)
  split = Split(x, y)
  small = Split(x[:256], y[:256])
  return Dataset("synthetic-cifar", split, small, small, 10, tuple(map(str, range(10))),
                 np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32))


def _configs(model: str, n: int):
  rng = np.random.default_rng(1)
  return [dict(MODEL_CONFIG[model], optimizer="momentum", batch_size=FLAGS.batch_size,
               lr=float(10 ** rng.uniform(-3, -1)), momentum=float(rng.uniform(0.5, 0.95)),
               dropout=float(rng.choice([0.0, 0.2])), seed=i, epochs=1) for i in range(n)]


def _median_time(fn, repeats):
  fn()  # warm-up: compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _population_runner(spec, rows, ids, data, vectorize="vmap"):
  hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows(rows, ids))
  fresh = population.init(spec, hparams, data)

  def run():
    state = jax.tree_util.tree_map(jnp.copy, fresh)
    state, metrics = population.train_epoch(spec, state, hparams, data, vectorize=vectorize)
    jax.block_until_ready(metrics)

  return run


def _python_loop_runner(spec, row, data, dataset):
  """What a user writes by hand: model.apply + optax, one jitted step per batch."""
  model = spec.build_model()
  tx = optax.sgd(row["lr"], momentum=row["momentum"])
  hp = {"dropout": jnp.asarray(row["dropout"]), "act_param": jnp.float32(0)}
  x0 = normalize(data.train_x[:1], data.mean, data.std)
  variables = model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x0,
                         train=False, hparams=hp)

  @jax.jit
  def step(params, opt_state, batch_stats, x, y, key):
    def loss_fn(p):
      v = {"params": p, **({"batch_stats": batch_stats} if batch_stats else {})}
      out, upd = model.apply(v, normalize(x, data.mean, data.std), train=True, hparams=hp,
                             rngs={"dropout": key}, mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(out, y).mean(), upd
    (loss, upd), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, upd.get("batch_stats", {}), loss

  n, bs = dataset.train.x.shape[0], spec.batch_size

  def run():
    params, bstats = variables["params"], variables.get("batch_stats", {})
    opt_state = tx.init(params)
    order = np.random.default_rng(0).permutation(n)
    for i in range(n // bs):
      idx = order[i * bs:(i + 1) * bs]
      params, opt_state, bstats, loss = step(params, opt_state, bstats, data.train_x[idx],
                                             data.train_y[idx], jax.random.key(i))
      float(loss)  # the per-step host sync of a typical loop (logging)

  return run


def main(argv):
  del argv
  jaxnn.configure()   # the library's JAX settings, before any key is made
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"batch {FLAGS.batch_size}, median of {FLAGS.repeats}")
  header = (f"{'model':10s} {'N':>4s} {'vmap cfg/s':>11s} {'map cfg/s':>10s} "
            f"{'sequential cfg/s':>17s} {'python loop cfg/s':>18s} {'best/seq':>9s} "
            f"{'best/loop':>10s}")
  print(header)
  print("-" * len(header))
  for model in FLAGS.models:
    n_examples = FLAGS.examples if model == "mlp" else FLAGS.cnn_examples
    dataset = _dataset(n_examples)
    data = population.device_data(dataset)
    for n in map(int, FLAGS.sizes):
      resolved = [member.resolve(c, num_classes=10) for c in _configs(model, n)]
      spec, rows = resolved[0][0], [r for _, r in resolved]
      t_vmap = _median_time(_population_runner(spec, rows, list(range(n)), data, "vmap"),
                            FLAGS.repeats)
      t_map = _median_time(_population_runner(spec, rows, list(range(n)), data, "map"),
                           FLAGS.repeats)
      t_pop = min(t_vmap, t_map)
      timed = min(n, FLAGS.max_sequential)
      singles = [_population_runner(spec, [rows[i]], [i], data, "map") for i in range(timed)]
      t_seq = _median_time(lambda: [s() for s in singles], FLAGS.repeats) * n / timed
      t_loop = _median_time(_python_loop_runner(spec, rows[0], data, dataset),
                            FLAGS.repeats) * n
      print(f"{model:10s} {n:4d} {n / t_vmap:11.2f} {n / t_map:10.2f} {n / t_seq:17.2f} "
            f"{n / t_loop:18.2f} {t_seq / t_pop:9.2f} {t_loop / t_pop:10.2f}", flush=True)


if __name__ == "__main__":
  app.run(main)
