"""ResNet (He et al., 2016) in its CIFAR form, as most CIFAR-10 ResNet-18 numbers use it.

3x3 stride-1 stem (no 7x7 conv, no max-pool), BasicBlocks in four stages of widths
64/128/256/512 (multiples of `width`) with strides 1/2/2/2, a 1x1 conv + BN projection shortcut
where shape changes, global average pooling, Dropout (one site), Dense head. Convolutions followed
by BatchNorm carry no bias. ResNet-18 = stages (2, 2, 2, 2): 11,173,962 parameters for 10
classes on 32x32x3 (the count of the widely used PyTorch CIFAR implementation).

3x3 convolutions pad one pixel on each side (PyTorch's padding=1) rather than Flax's 'SAME',
which pads strided convolutions asymmetrically; the output sizes are the same.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.models import layers

PAD_ONE = ((1, 1), (1, 1))


class BasicBlock(nn.Module):
  """Two 3x3 conv-(BN) layers and a shortcut; the activation comes after the sum."""
  features: int
  strides: int
  kernel_init: str
  bias_init: str
  batchnorm: bool
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, hp: layers.ModelHparams) -> jax.Array:
    inits = dict(kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype,
                 use_bias=not self.batchnorm)

    def norm(y):
      return layers.batch_norm(train, self.dtype)(y) if self.batchnorm else y

    y = layers.conv(self.features, 3, strides=self.strides, padding=PAD_ONE, **inits)(x)
    y = hp.activate(norm(y))
    y = norm(layers.conv(self.features, 3, padding=PAD_ONE, **inits)(y))
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = norm(layers.conv(self.features, 1, strides=self.strides, padding="VALID",
                                  **inits)(x))
    return hp.activate(y + shortcut)


class ResNet(nn.Module):
  """CIFAR ResNet with BasicBlocks; `stage_sizes` picks the depth."""
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  num_classes: int = 10
  width: int = 64
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
    hp = layers.ModelHparams(hparams, self.activation, self.num_dropout_sites)
    inits = dict(kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype)
    x = layers.conv(self.width, 3, padding=PAD_ONE, use_bias=not self.batchnorm,
                    **inits)(x.astype(self.dtype))
    if self.batchnorm:
      x = layers.batch_norm(train, self.dtype)(x)
    x = hp.activate(x)
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(self.width * 2**stage, strides, batchnorm=self.batchnorm,
                       **inits)(x, train, hp)
    x = jnp.mean(x, axis=(1, 2))
    x = layers.Dropout()(x, hp.dropout_rate(0), train)
    return layers.dense(self.num_classes, **inits)(x).astype(jnp.float32)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2))
