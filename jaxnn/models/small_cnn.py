"""The small CNN of the Keras MNIST tutorials: conv32-pool-conv64-pool-dense64-out.

Layout (Keras defaults: 3x3 'valid' convolutions, 2x2 max pooling):
  Conv(32) -> (BN) -> act -> MaxPool -> Dropout
  Conv(64) -> (BN) -> act -> MaxPool -> Dropout
  Flatten -> Dense(64) -> (BN) -> act -> Dropout -> Dense(num_classes)
Three dropout sites, in that order (one per conv block, one after the hidden dense layer).
Parameters (no BN, 10 classes): 121,930 on 28x28x1 (5x5x64 = 1600 features flattened),
167,562 on 32x32x3 (6x6x64 = 2304). With BatchNorm the convs and the hidden Dense lose their
bias.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.models import layers


class SmallCNN(nn.Module):
  """Conv/pool blocks (`features`) then one hidden dense layer (`dense_width`)."""
  num_classes: int = 10
  features: Sequence[int] = (32, 64)
  dense_width: int = 64
  activation: str = "relu"
  kernel_init: str = "glorot_uniform"  # Keras' default
  bias_init: str = "zeros"
  batchnorm: bool = False
  dtype: Any = jnp.float32

  @property
  def num_dropout_sites(self) -> int:
    return len(self.features) + 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               hparams: Mapping[str, Any] | None = None) -> jax.Array:
    hp = layers.ModelHparams(hparams, self.activation, self.num_dropout_sites)
    inits = dict(kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype)
    x = x.astype(self.dtype)
    site = 0
    for features in self.features:
      x = layers.conv(features, 3, padding="VALID", use_bias=not self.batchnorm, **inits)(x)
      if self.batchnorm:
        x = layers.batch_norm(train, self.dtype)(x)
      x = layers.max_pool(hp.activate(x))
      x = layers.Dropout()(x, hp.dropout_rate(site), train)
      site += 1
    x = x.reshape(x.shape[0], -1)
    x = layers.dense(self.dense_width, use_bias=not self.batchnorm, **inits)(x)
    if self.batchnorm:
      x = layers.batch_norm(train, self.dtype)(x)
    x = layers.Dropout()(hp.activate(x), hp.dropout_rate(site), train)
    return layers.dense(self.num_classes, **inits)(x).astype(jnp.float32)
