"""Learning-rate schedules whose numbers are per-member traced values.

Optax's schedule factories check their arguments in Python (`if transition_steps <= 0`), so they
cannot take a member's traced hyperparameters. These are the same curves written as plain jnp
formulas of (t, hp): the schedule *kind* is static (it picks the formula), every number in it is
an array leaf that varies across members without recompiling.

`t` counts epochs or optimizer steps (the static `per` of the bucket), starting at 0: the value at
t is the rate used for the updates of epoch (or step) t, which is what a PyTorch scheduler gives
after being stepped t times.

Hyperparameters (keys of `hp`, scalars unless noted):
  lr: base (peak) rate.        gamma: multiplicative decay (exponential, step, multistep).
  step_size: period of StepLR / half-cycle of the triangular cycle, in units of `per`.
  milestones: [k] vector for MultiStepLR (pad unused slots with +inf).
  lr_min: floor / eta_min / base of the cycle.   decay: k of linear decay, lambda of exp decay.
  horizon: T_max of cosine / total length of one-cycle and warmup-cosine, in units of `per`.
  warmup: warmup length.  pct_start, div_factor, final_div_factor: OneCycleLR's.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp

from jaxnn.registry import Registry

Hparams = Mapping[str, jax.Array]


def constant(t, hp):
  del t
  return hp["lr"] * 1.0


def exponential(t, hp):
  """PyTorch ExponentialLR: lr * gamma**t."""
  return hp["lr"] * hp["gamma"] ** t


def step(t, hp):
  """PyTorch StepLR: lr * gamma**floor(t / step_size)."""
  return hp["lr"] * hp["gamma"] ** jnp.floor(t / hp["step_size"])


def multistep(t, hp):
  """PyTorch MultiStepLR: lr * gamma**(number of milestones <= t)."""
  passed = jnp.sum(jnp.asarray(t) >= hp["milestones"])
  return hp["lr"] * hp["gamma"] ** passed


def linear_floor(t, hp):
  """Linear decay with a floor: max(lr - decay * t, lr_min)."""
  return jnp.maximum(hp["lr"] - hp["decay"] * t, hp["lr_min"])


def exp_decay(t, hp):
  """Continuous exponential decay: lr * exp(-decay * t)."""
  return hp["lr"] * jnp.exp(-hp["decay"] * t)


def _cosine_anneal(start, end, fraction):
  return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * fraction))


def cosine(t, hp):
  """PyTorch CosineAnnealingLR (closed form), held at lr_min after `horizon`."""
  fraction = jnp.clip(t / hp["horizon"], 0.0, 1.0)
  return _cosine_anneal(hp["lr"], hp["lr_min"], fraction)


def warmup_cosine(t, hp):
  """Linear warmup from 0 to lr over `warmup`, then cosine to lr_min at `horizon`.

  Same curve as optax.warmup_cosine_decay_schedule(0, lr, warmup, horizon, lr_min). Per step,
  step 0 at rate 0 costs one step; per epoch it would cost a whole epoch, so per epoch the ramp
  is `warmup_cosine_per_epoch`.
  """
  warm = hp["lr"] * t / jnp.maximum(hp["warmup"], 1e-12)
  return _then_cosine(t, hp, warm)


def warmup_cosine_per_epoch(t, hp):
  """warmup_cosine for whole epochs: epoch t < warmup trains at lr * (t + 1) / (warmup + 1),
  so no epoch trains at rate 0 and the ramp still meets the cosine's peak lr at t = warmup."""
  warm = hp["lr"] * (t + 1.0) / (hp["warmup"] + 1.0)
  return _then_cosine(t, hp, warm)


def _then_cosine(t, hp, warm):
  fraction = jnp.clip((t - hp["warmup"]) / jnp.maximum(hp["horizon"] - hp["warmup"], 1e-12), 0, 1)
  return jnp.where(t < hp["warmup"], warm, _cosine_anneal(hp["lr"], hp["lr_min"], fraction))


def one_cycle(t, hp):
  """PyTorch OneCycleLR (cosine annealing, two phases); lr is max_lr, horizon is total_steps."""
  initial = hp["lr"] / hp["div_factor"]
  final = initial / hp["final_div_factor"]
  peak_at = hp["pct_start"] * hp["horizon"] - 1.0
  rise = _cosine_anneal(initial, hp["lr"], jnp.clip(t / peak_at, 0.0, 1.0))
  fall_fraction = jnp.clip((t - peak_at) / (hp["horizon"] - 1.0 - peak_at), 0.0, 1.0)
  fall = _cosine_anneal(hp["lr"], final, fall_fraction)
  return jnp.where(t <= peak_at, rise, fall)


def cyclic(t, hp):
  """PyTorch CyclicLR, mode='triangular': between lr_min (base) and lr (max), half-cycle step_size."""
  cycle = jnp.floor(1.0 + t / (2.0 * hp["step_size"]))
  x = jnp.abs(t / hp["step_size"] - 2.0 * cycle + 1.0)
  return hp["lr_min"] + (hp["lr"] - hp["lr_min"]) * jnp.maximum(0.0, 1.0 - x)


Schedule = Callable[[jax.Array, Hparams], jax.Array]

SCHEDULES: Registry[Schedule] = Registry("schedule", {
    "constant": constant,
    "exponential": exponential,
    "step": step,
    "multistep": multistep,
    "linear_floor": linear_floor,
    "exp_decay": exp_decay,
    "cosine": cosine,
    "warmup_cosine": warmup_cosine,
    "one_cycle": one_cycle,
    "cyclic": cyclic,
})

# The hyperparameters each schedule reads, so configs can be checked and reports can show them.
SCHEDULE_HPARAMS: dict[str, tuple[str, ...]] = {
    "constant": ("lr",),
    "exponential": ("lr", "gamma"),
    "step": ("lr", "gamma", "step_size"),
    "multistep": ("lr", "gamma", "milestones"),
    "linear_floor": ("lr", "decay", "lr_min"),
    "exp_decay": ("lr", "decay"),
    "cosine": ("lr", "lr_min", "horizon"),
    "warmup_cosine": ("lr", "lr_min", "warmup", "horizon"),
    "one_cycle": ("lr", "pct_start", "div_factor", "final_div_factor", "horizon"),
    "cyclic": ("lr", "lr_min", "step_size"),
}

SCHEDULE_UNITS = ("epoch", "step")


def learning_rate_fn(name: str, hp: Hparams, *, per: str, steps_per_epoch: int):
  """Returns count -> lr for an optax chain, where count is the optimizer step (0-based).

  Args:
    name: schedule kind (static), or a tuple of kinds selected per member by
      hp['schedule_index'] (packed buckets: the kind is a scalar function of the step).
    hp: the member's hyperparameters (traced scalars; `milestones` a vector).
    per: 'epoch' (t = count // steps_per_epoch, PyTorch's usual stepping) or 'step'.
    steps_per_epoch: static number of optimizer steps in one epoch.
  """
  names = (name,) if isinstance(name, str) else tuple(name)
  fns = [SCHEDULES.get(n) for n in names]
  fns = [warmup_cosine_per_epoch if n == "warmup_cosine" and per == "epoch" else fn
         for n, fn in zip(names, fns)]
  if per not in SCHEDULE_UNITS:
    raise ValueError(f"schedule_per: unknown {per!r}; known: {', '.join(SCHEDULE_UNITS)}")

  def lr_at(count):
    count = jnp.asarray(count, jnp.float32)
    t = jnp.floor(count / steps_per_epoch) if per == "epoch" else count
    if len(fns) == 1:
      return fns[0](t, hp)
    # Several kinds in one program (a packed bucket): each member's kind picked by its index.
    index = jnp.asarray(hp["schedule_index"], jnp.int32)
    return jnp.select([index == i for i in range(len(fns))], [fn(t, hp) for fn in fns])

  return lr_at
