"""A small, fast residual net in the spirit of the CIFAR-10 speed-run nets (ResNet-9/DAWNBench,
airbench): few layers, few channels, downsampling by max pooling, BatchNorm everywhere.

  stem:   Conv3x3(stem_width) -> BN -> act
  stage:  Conv3x3(w) -> MaxPool 2x2 -> BN -> act  [+ residual: x + (Conv-BN-act) x 2]
  head:   global max pool -> Dropout (one site) -> Dense(classes) -> * logit_scale

Default widths 32 / 64-128-256 with a residual on every stage (~1.97M parameters), a quarter
of ResNet-9's channels at its widest. The logits are multiplied by `logit_scale` = 0.125 as in
ResNet-9: BatchNorm'd features give large initial logits otherwise.
Without BatchNorm the convolutions carry a bias instead.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.models import layers


class FastNet(nn.Module):
  """ResNet-9-style net; `widths` and `residual` (one flag per stage) set its size."""
  num_classes: int = 10
  stem_width: int = 32
  widths: Sequence[int] = (64, 128, 256)
  residual: Sequence[bool] = (True, True, True)
  logit_scale: float = 0.125
  activation: str = "relu"
  kernel_init: str = "he_normal"
  bias_init: str = "zeros"
  batchnorm: bool = True
  dtype: Any = jnp.float32

  @property
  def num_dropout_sites(self) -> int:
    return 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               hparams: Mapping[str, Any] | None = None) -> jax.Array:
    if len(self.residual) != len(self.widths):
      raise ValueError(f"fastnet: residual={list(self.residual)} needs one flag per stage "
                       f"of widths={list(self.widths)}")
    hp = layers.ModelHparams(hparams, self.activation, self.num_dropout_sites)
    inits = dict(kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype,
                 use_bias=not self.batchnorm)

    def conv_norm_act(y, features, pool=False):
      y = layers.conv(features, 3, **inits)(y)
      if pool:
        y = layers.max_pool(y)
      if self.batchnorm:
        y = layers.batch_norm(train, self.dtype)(y)
      return hp.activate(y)

    x = conv_norm_act(x.astype(self.dtype), self.stem_width)
    for features, residual in zip(self.widths, self.residual):
      x = conv_norm_act(x, features, pool=True)
      if residual:
        x = x + conv_norm_act(conv_norm_act(x, features), features)
    x = jnp.max(x, axis=(1, 2))
    x = layers.Dropout()(x, hp.dropout_rate(0), train)
    inits["use_bias"] = True
    logits = layers.dense(self.num_classes, **inits)(x)
    return (logits * self.logit_scale).astype(jnp.float32)
