"""Weight initializers, found by name, whose numbers can vary across members.

An initializer has a *shape* (which distribution, which fan) and a *scale* (stddev, range,
constant value, gain). The shape changes the program, so it is static: a model is built with a
unit-scale Flax initializer chosen by name. The scale is a per-member hyperparameter, so it is
applied after `init` by `rescale(params, kernel_scale, bias_value)`, which takes traced scalars
and therefore works under `jit(vmap(...))` without one compile per value.

Unit initializers (what the model is built with) and the default scale that recovers the
conventional initializer:

  kernel name                       unit distribution                   default kernel_scale
  glorot_uniform (xavier_uniform)   U(+-sqrt(6/(fan_in+fan_out)))       1.0 (a gain)
  glorot_normal  (xavier_normal)    truncated N, var 2/(fan_in+fan_out) 1.0 (a gain)
  he_uniform                        U(+-sqrt(6/fan_in))                 1.0 (a gain)
  he_normal                         truncated N, var 2/fan_in           1.0 (a gain)
  lecun_uniform                     U(+-sqrt(3/fan_in))                 1.0 (a gain)
  lecun_normal                      truncated N, var 1/fan_in           1.0 (a gain)
  normal                            N(0, 1)                             0.05 (Keras stddev)
  uniform                           U(-1, 1)                            0.05 (Keras range)
  zeros                             0                                   1.0 (no effect)
  constant                          1                                   1.0 (the value)

The gain multiplies the weights, so it multiplies the stddev (variance by gain**2), as PyTorch's
`gain` argument does. The truncated normals are rescaled so their variance is the stated one
(Keras' and Flax's convention).

  bias name   unit   default bias_value
  zeros       0      0.0 (no effect: zeros stay zeros)
  constant    1      0.1 (a small positive bias keeps ReLU units alive at the start)

A model built with bias_init='constant' has biases of exactly 1 until `rescale` is applied;
the trainer always calls `rescale` right after `init`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax.linen import initializers as flax_init

from jaxnn import hashing
from jaxnn.registry import Registry

Initializer = Callable[..., jax.Array]


def _symmetric_unit_uniform(key, shape, dtype=jnp.float32):
  """U(-1, 1); Flax's `uniform(scale)` is U[0, scale), which is not what Keras means."""
  return jax.random.uniform(key, shape, dtype, minval=-1.0, maxval=1.0)


def _variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
  return flax_init.variance_scaling(scale, mode, distribution)


_KERNEL_INITS: Registry[Initializer] = Registry("kernel_init", {
    "glorot_uniform": _variance_scaling(1.0, "fan_avg", "uniform"),
    "glorot_normal": _variance_scaling(1.0, "fan_avg", "truncated_normal"),
    "xavier_uniform": _variance_scaling(1.0, "fan_avg", "uniform"),
    "xavier_normal": _variance_scaling(1.0, "fan_avg", "truncated_normal"),
    "he_uniform": _variance_scaling(2.0, "fan_in", "uniform"),
    "he_normal": _variance_scaling(2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": _variance_scaling(1.0, "fan_in", "uniform"),
    "lecun_normal": _variance_scaling(1.0, "fan_in", "truncated_normal"),
    "normal": flax_init.normal(stddev=1.0),
    "uniform": _symmetric_unit_uniform,
    "zeros": flax_init.zeros,
    "constant": flax_init.ones,
})

_BIAS_INITS: Registry[Initializer] = Registry("bias_init", {
    "zeros": flax_init.zeros,
    "constant": flax_init.ones,
})

_DEFAULT_KERNEL_SCALES = {"normal": 0.05, "uniform": 0.05}
_DEFAULT_BIAS_VALUES = {"zeros": 0.0, "constant": 0.1}

KERNEL_INITS: tuple[str, ...] = tuple(_KERNEL_INITS)
BIAS_INITS: tuple[str, ...] = tuple(_BIAS_INITS)


def get_kernel_init(name: str) -> Initializer:
  """The unit-scale Flax kernel initializer called `name` (see the module table).

  Raises:
    ValueError: unknown name (the message lists the known ones).
  """
  return _KERNEL_INITS.get(name)


def get_bias_init(name: str) -> Initializer:
  """The unit-scale Flax bias initializer called `name` ('zeros' or 'constant' = ones).

  Raises:
    ValueError: unknown name.
  """
  return _BIAS_INITS.get(name)


def default_kernel_scale(name: str) -> float:
  """The `kernel_scale` that turns the unit initializer into the conventional one.

  1.0 (gain) for the variance-scaling family, zeros and constant; 0.05 for normal (stddev) and
  uniform (half-range), Keras' RandomNormal/RandomUniform defaults.
  """
  _KERNEL_INITS.check(name)
  return _DEFAULT_KERNEL_SCALES.get(name, 1.0)


def default_bias_value(name: str) -> float:
  """The conventional `bias_value`: 0.0 for zeros, 0.1 for constant."""
  _BIAS_INITS.check(name)
  return _DEFAULT_BIAS_VALUES[name]


def rescale(params: Mapping[str, Any], kernel_scale, bias_value) -> dict:
  """Applies per-member initializer numbers to unit-initialized parameters.

  Every leaf named 'kernel' is multiplied by `kernel_scale`; a leaf named 'bias' that sits
  beside a 'kernel' (Dense/Conv) is multiplied by `bias_value`. Normalization layers (whose
  'scale'/'bias' have no 'kernel' beside them) and other collections are returned unchanged.

  Args:
    params: a (nested) mapping of parameters, e.g. `variables['params']` or `variables`.
    kernel_scale: float or traced scalar; the gain / stddev / range / constant of the kernels.
    bias_value: float or traced scalar; the constant of 'constant' biases (zeros stay zeros).

  Returns:
    A new nested dict with the same structure.
  """

  def walk(tree):
    if not isinstance(tree, Mapping):
      return tree
    out = {key: walk(value) for key, value in tree.items()}
    if "kernel" in out and not isinstance(out["kernel"], Mapping):
      kernel = out["kernel"]
      out["kernel"] = kernel * jnp.asarray(kernel_scale, kernel.dtype)
      bias = out.get("bias")
      if bias is not None and not isinstance(bias, Mapping):
        out["bias"] = bias * jnp.asarray(bias_value, bias.dtype)
    return out

  return walk(params)


# How each kernel initializer draws, for `packed_kernel`: (distribution, variance scale, fan).
_PACKED = {
    "glorot_uniform": ("uniform", 1.0, "fan_avg"), "xavier_uniform": ("uniform", 1.0, "fan_avg"),
    "glorot_normal": ("truncated_normal", 1.0, "fan_avg"),
    "xavier_normal": ("truncated_normal", 1.0, "fan_avg"),
    "he_uniform": ("uniform", 2.0, "fan_in"), "he_normal": ("truncated_normal", 2.0, "fan_in"),
    "lecun_uniform": ("uniform", 1.0, "fan_in"),
    "lecun_normal": ("truncated_normal", 1.0, "fan_in"),
    "normal": ("normal", None, None), "uniform": ("symmetric", None, None),
    "zeros": ("zeros", None, None), "constant": ("ones", None, None),
}
# The stddev of a standard normal truncated to [-2, 2] (Flax's and Keras' correction).
_TRUNCATED_STD = 0.87962566103423978


def packed_kernel(name: str) -> Callable[..., jax.Array]:
  """A Dense kernel initializer that survives padding: init(key, shape, fan_in, fan_out).

  `shape` is the padded [in, out]; `fan_in`, `fan_out` the layer's true sizes (traced ints).
  Entry (r, u) is made from a keyed hash of (key, u, r) (`jaxnn.hashing`), so it does not
  depend on the padded shape at all: the real block equals the draw at the true shape.
  Why a hash and not per-unit draws (fold_in(key, u), then a 1-D draw): the per-unit draws
  needed partitionable threefry under vmap, which XLA:CPU compiled in ~2.4 s per 5-layer
  bucket (most of an MLP's init program); the hash is one small elementwise kernel per layer.
  The variance-scaling factor comes from the true fans; entries outside the real block are 0.
  Same distributions as `get_kernel_init(name)` (unit scale; `rescale` applies the gain), the
  uniforms made from the top 23 bits and the normals by the inverse error function, as
  `jax.random` makes them.
  """
  _KERNEL_INITS.check(name)
  distribution, scale, mode = _PACKED[name]

  def init(key, shape, fan_in, fan_out, dtype=jnp.float32):
    rows, cols = shape
    fan_in = jnp.asarray(fan_in, jnp.float32)
    fan_out = jnp.asarray(fan_out, jnp.float32)
    if distribution in ("zeros", "ones"):
      unit = jnp.full((rows, cols), 0.0 if distribution == "zeros" else 1.0, jnp.float32)
    else:
      unit = _hashed(key, rows, cols, distribution)
    if scale is not None:
      fan = fan_in if mode == "fan_in" else (fan_in + fan_out) / 2.0
      std = jnp.sqrt(scale / jnp.maximum(fan, 1.0))
      unit = unit * (std * jnp.sqrt(3.0) if distribution == "uniform" else std / _TRUNCATED_STD)
    real = (jnp.arange(rows) < fan_in)[:, None] & (jnp.arange(cols) < fan_out)[None, :]
    return jnp.where(real, unit, 0.0).astype(dtype)

  return init


def _hashed(key, rows: int, cols: int, distribution: str) -> jax.Array:
  """[rows, cols] unit draws, entry (r, u) from the hash of (key, u, r) alone."""
  u01 = hashing.uniform01(hashing.bits(key, (rows, cols), unit_axis=1))
  if distribution in ("uniform", "symmetric"):
    return 2.0 * u01 - 1.0
  sqrt2 = np.float32(np.sqrt(2.0))
  if distribution == "truncated_normal":   # as jax.random.truncated_normal on [-2, 2]
    a, b = jax.lax.erf(np.float32(-2.0) / sqrt2), jax.lax.erf(np.float32(2.0) / sqrt2)
    u = jnp.maximum(a + (b - a) * u01, a)
    return jnp.clip(sqrt2 * jax.lax.erf_inv(u), np.nextafter(np.float32(-2.0), np.float32(0.0)),
                    np.nextafter(np.float32(2.0), np.float32(0.0)))
  lo = np.nextafter(np.float32(-1.0), np.float32(0.0))   # normal, as jax.random.normal
  return sqrt2 * jax.lax.erf_inv(jnp.maximum(lo + (np.float32(1.0) - lo) * u01, lo))
