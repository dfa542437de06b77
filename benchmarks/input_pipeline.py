"""What the on-device data path costs: a training epoch with gather + normalize + augmentation
vs the same number of training steps on one fixed, already normalized batch.

    python benchmarks/input_pipeline.py                       # small CNN, CIFAR-10 shapes
    python benchmarks/input_pipeline.py --data_dir=../shared/datasets --real   # the JPEG copy

Both variants run the same model, loss and optimizer inside one jitted lax.scan per epoch, for a
population of --members; only the data path differs. Compilation is excluded; the median of
--repeats epochs is reported with images/second and the data path's share of step time
(goal: under 10%).
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
from jaxnn import data as data_lib
from jaxnn import member, population

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "small_cnn", "Model family.")
flags.DEFINE_integer("examples", 2048, "Training examples per epoch.")
flags.DEFINE_integer("members", 4, "Population size.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("repeats", 3, "Timed epochs (median reported).")
flags.DEFINE_bool("real", False, "Use CIFAR-10 from --data_dir instead of synthetic pixels.")
flags.DEFINE_string("data_dir", None, "Where CIFAR-10 is (with --real).")


def _dataset():
  if FLAGS.real:
    return data_lib.load("cifar10", FLAGS.data_dir, train_subset=FLAGS.examples, val_subset=256,
                         test_subset=256)
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, size=(FLAGS.examples, 32, 32, 3), dtype=np.uint8)
  y = rng.integers(0, 10, size=FLAGS.examples).astype(np.int32)
  small = data_lib.Split(x[:256], y[:256])
  return data_lib.Dataset("synthetic-cifar", data_lib.Split(x, y), small, small, 10,
                          tuple(map(str, range(10))), np.full(3, 0.5, np.float32),
                          np.full(3, 0.25, np.float32))


def _median(fn):
  fn()
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  jaxnn.configure()   # the library's JAX settings, before any key is made
  dataset = _dataset()
  data = population.device_data(dataset)
  configs = [dict(model=FLAGS.model, optimizer="momentum", lr=0.01, seed=i,
                  batch_size=FLAGS.batch_size, crop_padding=4, flip=True) for i in range(FLAGS.members)]
  resolved = [member.resolve(c, num_classes=10) for c in configs]
  spec, rows = resolved[0][0], [r for _, r in resolved]
  hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows(rows, list(range(len(rows)))))
  fresh = population.init(spec, hparams, data)

  def full_epoch():
    state = jax.tree_util.tree_map(jnp.copy, fresh)
    jax.block_until_ready(population.train_epoch(spec, state, hparams, data))

  # The training step alone: the same model/loss/optimizer, scanned over the same number of
  # steps, on one fixed batch that is already normalized (no gather, no augmentation).
  steps = population.steps_per_epoch(spec, dataset.train.x.shape[0])
  model = spec.build_model()
  tx = optax.sgd(0.01, momentum=0.9)
  fixed_x = data_lib.normalize(data.train_x[:spec.batch_size], data.mean, data.std)
  fixed_y = data.train_y[:spec.batch_size]
  hp = {"dropout": jnp.asarray(rows[0]["dropout"], jnp.float32), "act_param": jnp.float32(0)}

  @jax.jit
  def steps_alone(params, batch_stats):
    def member_steps(params, batch_stats):
      opt_state = tx.init(params)

      def step(carry, i):
        params, opt_state, batch_stats = carry

        def loss_fn(p):
          v = {"params": p, **({"batch_stats": batch_stats} if batch_stats else {})}
          out, upd = model.apply(v, fixed_x, train=True, hparams=hp,
                                 rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"])
          return optax.softmax_cross_entropy_with_integer_labels(out, fixed_y).mean(), upd
        (loss, upd), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state,
                upd.get("batch_stats", batch_stats)), loss

      _, losses = jax.lax.scan(step, (params, opt_state, batch_stats), jnp.arange(steps))
      return losses
    return jax.vmap(member_steps)(params, batch_stats)

  def alone():
    jax.block_until_ready(steps_alone(fresh.params, fresh.batch_stats))

  # The epoch also evaluates on the (small) validation split; time that apart and remove it.
  def eval_only():
    jax.block_until_ready(population.evaluate(spec, fresh, hparams, data.val_x, data.val_y,
                                              data.mean, data.std))

  t_epoch, t_alone, t_eval = _median(full_epoch), _median(alone), _median(eval_only)
  t_train = max(t_epoch - t_eval, 1e-9)
  images = steps * spec.batch_size * FLAGS.members
  share = (t_train - t_alone) / t_train
  print(f"device: {jax.devices()[0].device_kind}; {FLAGS.model}, {FLAGS.members} members, "
        f"batch {spec.batch_size}, {steps} steps/epoch, crop(4)+flip on, median of {FLAGS.repeats}")
  print(f"epoch with data path : {t_train:8.3f} s  {images / t_train:10.0f} images/s")
  print(f"training steps alone : {t_alone:8.3f} s  {images / t_alone:10.0f} images/s")
  print(f"data path share of step time: {100 * share:.1f}% (goal < 10%)")


if __name__ == "__main__":
  app.run(main)
