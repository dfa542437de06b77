"""Optuna's TPE sampler with its MedianPruner driving a plain Flax training loop.

The loop is what one writes by hand without this engine: one trial at a time, a jitted step
called from Python per batch, validation after each epoch reported to Optuna, which may prune.
  python benchmarks/peers/optuna_flax.py --data_dir=... --out=trace.json [--budget=quick]
"""

from __future__ import annotations

import functools

import common
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optuna

ACTIVATIONS = {"relu": nn.relu, "gelu": nn.gelu, "tanh": jnp.tanh}


class MLP(nn.Module):
  widths: tuple[int, ...]
  activation: str
  dropout: float

  @nn.compact
  def __call__(self, x, train: bool):
    for width in self.widths:
      x = ACTIVATIONS[self.activation](nn.Dense(width)(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(10)(x)


def _loss(params, model, x, y, l2, key):
  logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  # Keras' kernel_regularizer=l2(l2): l2 * sum(w^2) over kernels, added to the loss.
  kernels = [p["kernel"] for p in params.values()]
  return ce + l2 * sum(jnp.sum(jnp.square(k)) for k in kernels[:-1])


@functools.partial(jax.jit, static_argnames=("model", "tx"))
def train_step(params, opt_state, x, y, l2, key, *, model, tx):
  grads = jax.grad(_loss)(params, model, x, y, l2, key)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


@functools.partial(jax.jit, static_argnames=("model",))
def correct(params, x, y, *, model):
  return jnp.sum(jnp.argmax(model.apply({"params": params}, x, train=False), -1) == y)


def objective(trial, data, budget, trace):
  depth = trial.suggest_int("depth", *common.DEPTH)
  widths = tuple(trial.suggest_categorical(f"units_{i}", common.WIDTHS) for i in range(depth))
  model = MLP(widths, trial.suggest_categorical("activation", common.ACTIVATIONS),
              trial.suggest_categorical("dropout", common.DROPOUT))
  l2 = trial.suggest_categorical("l2", common.L2)
  (x, y), (xv, yv) = data
  tx = optax.adam(common.LR)
  key = jax.random.fold_in(jax.random.key(budget.seed), trial.number)
  params = model.init(key, x[:1], train=False)["params"]
  opt_state = tx.init(params)
  rng = np.random.default_rng([budget.seed, trial.number])
  steps = len(x) // common.BATCH   # the last partial batch is dropped, as in the engine
  acc = 0.0
  for epoch in range(budget.epochs):
    order = rng.permutation(len(x))
    for step in range(steps):
      idx = order[step * common.BATCH:(step + 1) * common.BATCH]
      params, opt_state = train_step(params, opt_state, x[idx], y[idx], l2,
                                     jax.random.fold_in(key, epoch * steps + step),
                                     model=model, tx=tx)
    hits = sum(int(correct(params, xv[i:i + 1000], yv[i:i + 1000], model=model))
               for i in range(0, len(xv), 1000))
    acc = hits / len(xv)
    trace.add(acc, sum(p.size for p in jax.tree_util.tree_leaves(params)), trial.number)
    trial.report(acc, epoch)
    if trial.should_prune():
      raise optuna.TrialPruned()
  return acc


def main():
  import jaxnn
  jaxnn.configure()   # as before, when importing jaxnn set it: the same random draws
  args, budget = common.runner_args()
  dataset = common.load_split(args.data_dir, budget)
  data = (common.flat_float(dataset, dataset.train), common.flat_float(dataset, dataset.val))
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  trace = common.Trace()
  study = optuna.create_study(direction="maximize",
                              sampler=optuna.samplers.TPESampler(seed=budget.seed),
                              pruner=optuna.pruners.MedianPruner(n_startup_trials=5,
                                                                 n_warmup_steps=1))
  study.optimize(lambda t: objective(t, data, budget, trace), n_trials=budget.trials)
  trace.dump(args.out, trials=len(study.trials))


if __name__ == "__main__":
  main()
