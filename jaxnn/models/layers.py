"""Pieces every model family shares: our Dropout, layer factories, hyperparameter plumbing.

Why our own Dropout: Flax's `nn.Dropout` takes its rate as a static Python float, so each rate
would be its own compiled program. Here the rate is a traced value, one per member (and
optionally one per dropout site), so a whole population with different rates is one program.

The `hparams` dict a model receives at call time holds the per-member numbers:
  'dropout':   shape [] (one rate everywhere) or [n] (one rate per dropout site, in forward
               order; n = `model.num_dropout_sites`). Default 0.
  'act_param': shape [], passed to the activation (leaky slope, ELU alpha). Default: the
               activation's conventional value.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn import activations
from jaxnn import initializers

# PyTorch's defaults (momentum 0.1 in its convention = 0.9 here, eps 1e-5), the setting most
# published CIFAR/MNIST numbers were measured with.
BATCHNORM_MOMENTUM = 0.9
BATCHNORM_EPSILON = 1e-5


class Dropout(nn.Module):
  """Inverted dropout with a traced rate: keep with prob 1-rate, scale kept units by 1/(1-rate).

  Identity when not training. With rate 0 the output equals the input bit for bit (every unit
  is kept and scaled by exactly 1.0); with rate 1 it is all zeros (with finite gradients).
  Draws from the 'dropout' rng stream.
  """

  @nn.compact
  def __call__(self, x: jax.Array, rate, train: bool) -> jax.Array:
    if not train:
      return x
    keep = 1.0 - jnp.asarray(rate, jnp.float32)
    # uniform < keep is always true when keep == 1, so rate 0 keeps everything.
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep, x.shape)
    scale = jnp.where(keep > 0.0, 1.0 / jnp.where(keep > 0.0, keep, 1.0), 0.0)
    return jnp.where(mask, x * scale.astype(x.dtype), jnp.zeros((), x.dtype))


class ModelHparams:
  """The per-member numbers a model reads at call time, with defaults and shape checks.

  Built inside a module's `__call__` from the raw `hparams` dict.
  """

  def __init__(self, hparams: Mapping[str, Any] | None, activation: str, num_sites: int):
    hparams = dict(hparams or {})
    self._act = activations.get_activation(activation)
    self.act_param = jnp.asarray(
        hparams.get("act_param", activations.default_param(activation)), jnp.float32)
    if self.act_param.ndim != 0:
      raise ValueError(
          f"hparams['act_param']: expected a scalar per member, got shape {self.act_param.shape}")
    self.dropout = jnp.asarray(hparams.get("dropout", 0.0), jnp.float32)
    self.num_sites = num_sites
    if self.dropout.ndim != 0 and self.dropout.shape != (num_sites,):
      raise ValueError(
          f"hparams['dropout']: expected shape [] or [{num_sites}] (one rate per dropout site), "
          f"got {list(self.dropout.shape)}")

  def activate(self, x: jax.Array) -> jax.Array:
    return self._act(x, self.act_param)

  def dropout_rate(self, site: int) -> jax.Array:
    """The rate of dropout site `site` (0-based, forward order)."""
    if not 0 <= site < self.num_sites:
      raise IndexError(f"dropout site {site} out of range for {self.num_sites} sites")
    return self.dropout if self.dropout.ndim == 0 else self.dropout[site]


def dense(features: int, *, kernel_init: str, bias_init: str, use_bias: bool = True,
          dtype: Any = jnp.float32, name: str | None = None) -> nn.Dense:
  """A Dense layer with unit-scale initializers chosen by name (see `jaxnn.initializers`)."""
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
                  kernel_init=initializers.get_kernel_init(kernel_init),
                  bias_init=initializers.get_bias_init(bias_init), name=name)


def conv(features: int, kernel_size: int, *, kernel_init: str, bias_init: str,
         strides: int = 1, padding: Any = "SAME", use_bias: bool = True,
         dtype: Any = jnp.float32, name: str | None = None) -> nn.Conv:
  """A square Conv layer with unit-scale initializers chosen by name."""
  return nn.Conv(features, (kernel_size, kernel_size), strides=(strides, strides),
                 padding=padding, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
                 kernel_init=initializers.get_kernel_init(kernel_init),
                 bias_init=initializers.get_bias_init(bias_init), name=name)


def batch_norm(train: bool, dtype: Any = jnp.float32, name: str | None = None) -> nn.BatchNorm:
  """BatchNorm using batch statistics when training, running averages otherwise."""
  return nn.BatchNorm(use_running_average=not train, momentum=BATCHNORM_MOMENTUM,
                      epsilon=BATCHNORM_EPSILON, dtype=dtype, param_dtype=jnp.float32,
                      name=name)


def max_pool(x: jax.Array, padding: str = "VALID") -> jax.Array:
  """2x2 max pooling with stride 2 over the [..., H, W, C] axes, as two pairwise maxima.

  The same outputs as `nn.max_pool(x, (2, 2), strides=(2, 2), padding=padding)` ('VALID' drops
  an odd last row/column, 'SAME' pads it with -inf). Why not nn.max_pool: its gradient is XLA's
  select_and_scatter, which XLA:CPU runs ~50x slower than this one (measured on the 2-core CPU,
  batch 128 of 26x26x32: 198 ms vs 3.8 ms), and it was most of a small CNN's training step.
  Gradients equal nn.max_pool's except at ties inside a window, where jnp.maximum splits the
  gradient equally instead of giving it all to the first maximum (after a ReLU such ties are
  zeros, whose gradient the ReLU stops anyway).
  """
  if padding not in ("VALID", "SAME"):
    raise ValueError(f"max_pool: padding {padding!r}; known: VALID, SAME")
  h, w = x.shape[-3], x.shape[-2]
  if padding == "SAME":
    pad = [(0, 0)] * (x.ndim - 3) + [(0, h % 2), (0, w % 2), (0, 0)]
    x = jnp.pad(x, pad, constant_values=-jnp.inf)
  else:
    x = x[..., : h // 2 * 2, : w // 2 * 2, :]
  h, w = x.shape[-3] // 2, x.shape[-2] // 2
  x = x.reshape(x.shape[:-3] + (h, 2, w, 2, x.shape[-1]))
  x = jnp.maximum(x[..., 0, :, :, :], x[..., 1, :, :, :])   # rows: [..., h, w, 2, C]
  return jnp.maximum(x[..., 0, :], x[..., 1, :])            # columns: [..., h, w, C]


def avg_pool(x: jax.Array, padding: str = "VALID") -> jax.Array:
  """2x2 average pooling with stride 2."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2), padding=padding)
