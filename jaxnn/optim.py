"""Optax chains built from an optimizer name (static) and a member's hyperparameters (traced).

The chain is rebuilt inside the vmapped program for each member, so every number in it (lr,
momentum, betas, eps, rho, L1/L2, weight decay, clip norm, schedule parameters) is that member's
array value: one compiled program serves any values. Its order is the one Keras users expect:

    coupled L1/L2 (gradient of the penalty, as Keras regularizers add it to the loss)
    -> clip by global norm (of the regularized gradient)
    -> scale_by_<optimizer>
    -> decoupled weight decay (AdamW / PyTorch style: multiplied by the learning rate)
    -> scale by -lr(t) from the schedule.

Update equations (g = regularized, clipped gradient; lr = lr(t)):
  sgd:      v = mu*v + g;  u = v (nesterov: u = g + mu*v)              [momentum mu may be 0]
  adam:     m = b1*m + (1-b1)g; s = b2*s + (1-b2)g^2; u = m_hat/(sqrt(s_hat)+eps)
  adamw:    adam + weight decay (any optimizer accepts weight_decay; adamw only changes defaults)
  rmsprop:  s = rho*s + (1-rho)g^2; u = g/(sqrt(s)+eps) (PyTorch/Keras eps placement);
            centered: s - mean^2; momentum: v = mom*v + u
  adagrad:  s = s + g^2 (s0 = initial_accumulator); u = g/sqrt(s+eps) (optax placement)
  adadelta: Zeiler 2012 with rho, eps.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxnn import schedules
from jaxnn.registry import Registry

Hparams = Mapping[str, jax.Array]


def keep_where(ok: jax.Array, new, old):
  """`new` where the scalar `ok` holds, else `old` (pytrees of one structure)."""
  return jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, old)


def gated(transform: optax.GradientTransformation, gate: jax.Array | None
          ) -> optax.GradientTransformation:
  """`transform` whose state is left as it was where the scalar `gate` is False (a skipped
  step: non-finite, or an inactive member); None: `transform` itself."""
  if gate is None:
    return transform

  def update_fn(updates, state, params=None):
    updates, new_state = transform.update(updates, state, params)
    return updates, keep_where(gate, new_state, state)

  return optax.GradientTransformation(transform.init, update_fn)


def _scale_sgd(hp, *, nesterov=False, gate=None, **_):
  return gated(optax.trace(decay=hp["momentum"], nesterov=nesterov), gate)


def _scale_adam(hp, *, gate=None, **_):
  if gate is None:
    return optax.scale_by_adam(b1=hp["beta1"], b2=hp["beta2"], eps=hp["eps"])
  return scale_by_adam_gated(hp["beta1"], hp["beta2"], hp["eps"], gate)


def scale_by_adam_gated(b1, b2, eps, gate: jax.Array) -> optax.GradientTransformation:
  """`optax.scale_by_adam` (same state, same numbers) whose state stays as it was where the
  scalar `gate` is False, with the new moments materialized before the update is made.

  Why: with the gate applied after the update (a select over the state), XLA:CPU recomputed
  the new moments inside the parameters' pass from copies of the old ones (two moment-sized
  copies and a second moment computation per step: ~1/3 of the optimizer's memory traffic).
  Selected here and put behind an optimization barrier, the moments are written once, in
  place, and the parameters' pass reads them. (Where the gate is False the returned update is
  meaningless, possibly NaN: the caller keeps the old parameters there.)
  """
  base = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    mu, nu, count = keep_where(gate, (mu, nu, count), (state.mu, state.nu, state.count))
    mu, nu = jax.lax.optimization_barrier((mu, nu))
    mu_hat = optax.tree.bias_correction(mu, b1, count)
    nu_hat = optax.tree.bias_correction(nu, b2, count)
    updates = jax.tree_util.tree_map(lambda m, v: m / (jnp.sqrt(v + 0.0) + eps), mu_hat, nu_hat)
    return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(base.init, update_fn)


def _scale_rmsprop(hp, *, centered=False, gate=None, **_):
  return gated(optax.chain(
      optax.scale_by_rms(decay=hp["rho"], eps=hp["eps"], eps_in_sqrt=False)
      if not centered else
      optax.scale_by_stddev(decay=hp["rho"], eps=hp["eps"], eps_in_sqrt=False),
      optax.trace(decay=hp["momentum"]),
  ), gate)


def _scale_adagrad(hp, *, gate=None, **_):
  return gated(optax.scale_by_rss(initial_accumulator_value=hp["initial_accumulator"],
                                  eps=hp["eps"]), gate)


def _scale_adadelta(hp, *, gate=None, **_):
  return gated(optax.scale_by_adadelta(rho=hp["rho"], eps=hp["eps"]), gate)


# name -> (scale_by factory, default numeric hyperparameters, static options it accepts).
# Whose defaults each entry takes where Keras and PyTorch disagree (the values are unchanged;
# an earlier comment called them all PyTorch's):
#   sgd/momentum/nesterov: lr 0.01 (both agree; PyTorch has no default lr, Keras 0.01).
#   adam/adamw: PyTorch's (eps 1e-8; Keras 1e-7), AdamW's weight decay 0.01 (PyTorch's).
#   rmsprop: Keras's (lr 1e-3, rho 0.9, eps 1e-7; PyTorch: lr 0.01, alpha 0.99, eps 1e-8).
#   adagrad: lr 0.01 is PyTorch's (Keras 1e-3); initial_accumulator 0.1 and eps 1e-7 are
#     Keras's (PyTorch: 0 and 1e-10).
#   adadelta: PyTorch's (lr 1.0, rho 0.9, eps 1e-6; Keras: 1e-3, 0.95, 1e-7).
class OptimizerEntry(NamedTuple):
  scale_by: Callable[..., optax.GradientTransformation]
  defaults: Mapping[str, float]
  static: Mapping[str, Any]


OPTIMIZERS: Registry[OptimizerEntry] = Registry("optimizer", {
    "sgd": OptimizerEntry(_scale_sgd, {"lr": 0.01, "momentum": 0.0}, {}),
    "momentum": OptimizerEntry(_scale_sgd, {"lr": 0.01, "momentum": 0.9}, {}),
    "nesterov": OptimizerEntry(_scale_sgd, {"lr": 0.01, "momentum": 0.9}, {"nesterov": True}),
    "adam": OptimizerEntry(_scale_adam, {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, {}),
    "adamw": OptimizerEntry(_scale_adam, {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                          "weight_decay": 0.01}, {}),
    "rmsprop": OptimizerEntry(_scale_rmsprop, {"lr": 1e-3, "rho": 0.9, "eps": 1e-7,
                                               "momentum": 0.0}, {}),
    "rmsprop_centered": OptimizerEntry(_scale_rmsprop, {"lr": 1e-3, "rho": 0.9, "eps": 1e-7,
                                                        "momentum": 0.0}, {"centered": True}),
    "adagrad": OptimizerEntry(_scale_adagrad, {"lr": 0.01, "initial_accumulator": 0.1,
                                               "eps": 1e-7}, {}),
    # Adadelta: PyTorch's lr=1.0 (Keras uses 1e-3, which barely moves in a short sweep).
    "adadelta": OptimizerEntry(_scale_adadelta, {"lr": 1.0, "rho": 0.9, "eps": 1e-6}, {}),
})

# Every numeric optimizer hyperparameter with its neutral value: a member that does not use one
# still carries it, so all members of a bucket have the same pytree structure.
OPTIMIZER_HPARAMS: dict[str, float] = {
    "lr": 0.01, "momentum": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "rho": 0.9,
    "initial_accumulator": 0.1, "weight_decay": 0.0, "l1": 0.0, "l2": 0.0,
    "clip_norm": float("inf"),
}


def default_hparams(optimizer: str) -> dict[str, float]:
  """The numeric defaults of `optimizer`, on top of the neutral values of all the others."""
  return {**OPTIMIZER_HPARAMS, **OPTIMIZERS.get(optimizer).defaults}


def kernel_mask(params) -> Any:
  """True for weight matrices/filters (leaves named 'kernel'); biases and norm scales excluded."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def all_mask(params) -> Any:
  return jax.tree_util.tree_map(lambda _: True, params)


class AddL1L2State(NamedTuple):
  """Stateless."""


def add_l1_l2(l1: jax.Array, l2: jax.Array, mask: Any = None) -> optax.GradientTransformation:
  """Adds the gradient of l1*sum|w| + l2*sum w^2 (Keras' L1L2 regularizer) to the updates.

  Args:
    l1, l2: penalty coefficients (traced scalars); `l2` may also be a callable params -> a
      pytree like params of per-leaf coefficients (per-layer L2).
    mask: pytree of bools like params, or a callable params -> mask; unmasked leaves untouched.
  """

  def init_fn(params):
    del params
    return AddL1L2State()

  def update_fn(updates, state, params):
    if params is None:
      raise ValueError("add_l1_l2 needs params")
    if callable(l2):
      regularized = jax.tree_util.tree_map(
          lambda g, p, c: g + l1 * jnp.sign(p) + 2.0 * c * p, updates, params, l2(params))
    else:
      regularized = jax.tree_util.tree_map(
          lambda g, p: g + l1 * jnp.sign(p) + 2.0 * l2 * p, updates, params)
    return regularized, state

  transform = optax.GradientTransformation(init_fn, update_fn)
  return optax.masked(transform, mask) if mask is not None else transform


class SelectState(NamedTuple):
  """The states of every family a packed bucket selects among."""
  inner: tuple


def select_by_index(transforms, index: jax.Array) -> optax.GradientTransformation:
  """Runs every transformation of `transforms` and keeps the updates of `transforms[index]`.

  For packed buckets whose members use different optimizer families: `index` is the member's
  traced family index, so one program serves them all. Every family's state is carried and
  updated (under vmap a switch computes every branch anyway), but a member only ever reads the
  updates of its own family, whose state evolves exactly as it does alone.
  """
  transforms = tuple(transforms)

  def init_fn(params):
    return SelectState(tuple(t.init(params) for t in transforms))

  def update_fn(updates, state, params=None):
    outs = [t.update(updates, s, params) for t, s in zip(transforms, state.inner)]
    index_ = jnp.asarray(index, jnp.int32)
    chosen = jax.tree_util.tree_map(
        lambda *us: jnp.select([index_ == i for i in range(len(us))], us), *[u for u, _ in outs])
    return chosen, SelectState(tuple(s for _, s in outs))

  return optax.GradientTransformation(init_fn, update_fn)


def families(optimizers) -> tuple[tuple[str, ...], ...]:
  """Groups optimizer names by the update they compute (scale_by function and static options):
  sgd and momentum are one family (momentum is a number), adam and adamw another."""
  groups: dict[Any, list[str]] = {}
  for name in optimizers:
    entry = OPTIMIZERS.get(name)
    groups.setdefault((entry.scale_by, tuple(sorted(entry.static.items()))), []).append(name)
  return tuple(tuple(g) for g in groups.values())


def make_optimizer(optimizer: str | tuple[str, ...], hp: Hparams, *, schedule: str = "constant",
                   schedule_per: str = "epoch", steps_per_epoch: int = 1,
                   regularize_biases: bool = False,
                   l2_per_leaf: Callable[[Any], Any] | None = None,
                   grad_norm: jax.Array | None = None,
                   gate: jax.Array | None = None) -> optax.GradientTransformation:
  """Builds the member's optax chain.

  Args:
    optimizer: registry name (static), or a tuple of names selected per member by
      hp['optimizer_index'] (a packed bucket; see `select_by_index`).
    hp: the member's numeric hyperparameters (see OPTIMIZER_HPARAMS and schedules.SCHEDULE_HPARAMS).
    schedule, schedule_per, steps_per_epoch: the learning-rate schedule (static kind and unit).
    regularize_biases: also apply L1/L2/weight decay to biases and norm parameters.
    l2_per_leaf: params -> per-leaf L2 coefficients, replacing the scalar hp['l2'] (per layer).
    grad_norm: given when the caller regularized the gradient itself (`regularized`) and took
      its global norm: the updates passed in then carry the penalty already, the chain's first
      link only keeps its state, and the clip uses this norm instead of taking it again.
    gate: a scalar bool; where False the chain's state is left as it was (a skipped step), so
      the caller needs no select over the optimizer state (see `scale_by_adam_gated`). The
      updates are then meaningless: keep the old parameters.

  Returns:
    An optax GradientTransformation whose state shape does not depend on any value in `hp`.
  """
  lr = schedules.learning_rate_fn(schedule, hp, per=schedule_per, steps_per_epoch=steps_per_epoch)
  if isinstance(optimizer, str):
    entry = OPTIMIZERS.get(optimizer)
    scale = entry.scale_by(hp, gate=gate, **entry.static)
  else:   # one branch per family, in the order of `families` (the index counts families)
    entries = [OPTIMIZERS.get(group[0]) for group in families(optimizer)]
    scale = select_by_index([e.scale_by(hp, gate=gate, **e.static) for e in entries],
                            hp["optimizer_index"])
  mask = all_mask if regularize_biases else kernel_mask
  regularize = regularizer(hp, regularize_biases=regularize_biases, l2_per_leaf=l2_per_leaf)
  if grad_norm is not None:   # applied by the caller: same state, updates passed through
    regularize = optax.GradientTransformation(regularize.init, lambda u, state, params=None:
                                              (u, state))
  return optax.chain(
      regularize,
      clip_by_global_norm(hp["clip_norm"], grad_norm),
      scale,
      optax.add_decayed_weights(hp["weight_decay"], mask),
      gated(optax.scale_by_learning_rate(lr), gate),
  )


def clip_by_global_norm(max_norm: jax.Array, norm: jax.Array | None = None
                        ) -> optax.GradientTransformation:
  """`optax.clip_by_global_norm`, the same state and numbers, optionally given the norm.

  Why: a training step that checks the gradient's norm for finiteness already has it; taking
  it again here is another pass over every parameter (XLA does not merge the two reductions)."""
  if norm is None:
    return optax.clip_by_global_norm(max_norm)

  def update_fn(updates, state, params=None):
    del params
    trigger = jnp.squeeze(norm < max_norm)
    return jax.tree_util.tree_map(
        lambda t: jax.lax.select(trigger, t, (t / norm.astype(t.dtype)) * max_norm),
        updates), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def regularizer(hp: Hparams, *, regularize_biases: bool = False,
                l2_per_leaf: Callable[[Any], Any] | None = None) -> optax.GradientTransformation:
  """The first link of `make_optimizer`'s chain: the gradient of the member's L1/L2 penalty
  added to the gradient (on kernels only, unless `regularize_biases`).

  Exposed so a training step can regularize the gradient itself (`regularized`), check its
  global norm for finiteness and hand both to the chain (`grad_norm`): one penalty pass and
  one reduction over the parameters, not two of each.
  """
  mask = all_mask if regularize_biases else kernel_mask
  return add_l1_l2(hp["l1"], l2_per_leaf or hp["l2"], mask)


def regularized(regularize: optax.GradientTransformation, grads, params):
  """(`grads` after `regularize` (see `regularizer`), their global norm as the clip sees it)."""
  updates, _ = regularize.update(grads, regularize.init(params), params)
  return updates, optax.tree.norm(updates)
