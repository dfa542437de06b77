"""VGG (Simonyan & Zisserman, 2014) scaled for 32x32 / 28x28 images.

Convolution stacks as in configurations A (VGG-11) and D (VGG-16): 3x3 'SAME' convolutions,
each followed by (BatchNorm) and the activation, with 2x2 max pooling between stages. Pooling
uses 'SAME' padding so five poolings take both 32x32 and 28x28 inputs to 1x1 (28 -> 14 -> 7 ->
4 -> 2 -> 1). The 4096-wide ImageNet classifier is replaced, as in the CIFAR adaptations, by
small dense layers: flatten (512 features) -> [Dense(512) -> act -> Dropout] -> Dense(classes).
Dropout sites: one after each hidden dense layer.

Channel counts are stated as multiples of `width` (64 in the paper), so a tiny test variant is
the same class with `width=4`.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.models import layers

POOL = "M"
# Multiples of `width`; 'M' is a 2x2 max pooling.
VGG11_LAYOUT = (1, POOL, 2, POOL, 4, 4, POOL, 8, 8, POOL, 8, 8, POOL)
VGG16_LAYOUT = (1, 1, POOL, 2, 2, POOL, 4, 4, 4, POOL, 8, 8, 8, POOL, 8, 8, 8, POOL)


class VGG(nn.Module):
  """A VGG conv stack (BatchNorm on by default) and a small dense classifier.

  Convolutions followed by BatchNorm carry no bias.
  """
  layout: Sequence[Any] = VGG11_LAYOUT
  num_classes: int = 10
  width: int = 64
  dense_widths: Sequence[int] = (512,)
  activation: str = "relu"
  kernel_init: str = "he_normal"
  bias_init: str = "zeros"
  batchnorm: bool = True
  dtype: Any = jnp.float32

  @property
  def num_dropout_sites(self) -> int:
    return len(self.dense_widths)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               hparams: Mapping[str, Any] | None = None) -> jax.Array:
    hp = layers.ModelHparams(hparams, self.activation, self.num_dropout_sites)
    inits = dict(kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype)
    x = x.astype(self.dtype)
    for item in self.layout:
      if item == POOL:
        x = layers.max_pool(x, padding="SAME")
        continue
      x = layers.conv(item * self.width, 3, use_bias=not self.batchnorm, **inits)(x)
      if self.batchnorm:
        x = layers.batch_norm(train, self.dtype)(x)
      x = hp.activate(x)
    x = x.reshape(x.shape[0], -1)
    for site, features in enumerate(self.dense_widths):
      x = layers.dense(features, **inits)(x)
      x = layers.Dropout()(hp.activate(x), hp.dropout_rate(site), train)
    return layers.dense(self.num_classes, **inits)(x).astype(jnp.float32)


VGG11 = functools.partial(VGG, layout=VGG11_LAYOUT)
VGG16 = functools.partial(VGG, layout=VGG16_LAYOUT)
