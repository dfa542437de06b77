"""LeNet-5 (LeCun et al., 1998) in its common modern reading.

  Conv(6, 5x5) -> act -> AvgPool 2x2 -> Conv(16, 5x5 valid) -> act -> AvgPool 2x2
  -> Dense(120) -> act -> Dropout -> Dense(84) -> act -> Dropout -> Dense(num_classes)

The original took 32x32 inputs with a 'valid' first convolution (32 -> 28). With
`first_padding='auto'` (default) inputs smaller than 32x32 (MNIST's 28x28) get a 'SAME' first
convolution instead, so both reach the 28 -> 14 -> 10 -> 5 feature maps of the original and
the dense part is identical. Parameters for 10 classes: 61,706 on 28x28x1, 62,006 on 32x32x3.
Simplifications (as almost everyone's LeNet-5): parameter-free average pooling, full C3
connectivity, a plain dense output instead of RBF units. Two dropout sites (after fc120, fc84).
`batchnorm=True` puts BatchNorm after each convolution (which then has no bias).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.models import layers


class LeNet5(nn.Module):
  """LeNet-5; `pool` is 'avg' (classic subsampling) or 'max'."""
  num_classes: int = 10
  features: Sequence[int] = (6, 16)
  dense_widths: Sequence[int] = (120, 84)
  first_padding: str = "auto"  # 'auto' | 'SAME' | 'VALID'
  pool: str = "avg"
  activation: str = "tanh"  # the original's squashing function
  kernel_init: str = "glorot_uniform"
  bias_init: str = "zeros"
  batchnorm: bool = False
  dtype: Any = jnp.float32

  @property
  def num_dropout_sites(self) -> int:
    return len(self.dense_widths)

  def _first_padding(self, height: int) -> str:
    if self.first_padding == "auto":
      return "SAME" if height < 32 else "VALID"
    if self.first_padding not in ("SAME", "VALID"):
      raise ValueError(f"lenet5.first_padding: unknown {self.first_padding!r}; "
                       "known: SAME, VALID, auto")
    return self.first_padding

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               hparams: Mapping[str, Any] | None = None) -> jax.Array:
    hp = layers.ModelHparams(hparams, self.activation, self.num_dropout_sites)
    inits = dict(kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype)
    pools = {"avg": layers.avg_pool, "max": layers.max_pool}
    if self.pool not in pools:
      raise ValueError(f"lenet5.pool: unknown {self.pool!r}; known: avg, max")
    x = x.astype(self.dtype)
    paddings = (self._first_padding(x.shape[1]),) + ("VALID",) * (len(self.features) - 1)
    for features, padding in zip(self.features, paddings):
      x = layers.conv(features, 5, padding=padding, use_bias=not self.batchnorm, **inits)(x)
      if self.batchnorm:
        x = layers.batch_norm(train, self.dtype)(x)
      x = pools[self.pool](hp.activate(x))
    x = x.reshape(x.shape[0], -1)
    for site, width in enumerate(self.dense_widths):
      x = layers.dense(width, **inits)(x)
      x = layers.Dropout()(hp.activate(x), hp.dropout_rate(site), train)
    return layers.dense(self.num_classes, **inits)(x).astype(jnp.float32)
