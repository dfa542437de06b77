"""Multi-layer perceptron: flatten, [Dense -> (BatchNorm) -> act -> Dropout] x depth, Dense.

Accepts any input shape (images [B, H, W, C] or toy points [B, 2]); everything after the batch
axis is flattened. Depth 0 is multinomial logistic regression.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.models import layers

DEFAULT_WIDTH = 256
DEFAULT_DEPTH = 2


def hidden_widths(widths: int | Sequence[int] | None = None, depth: int | None = None,
                  width: int | None = None) -> tuple[int, ...]:
  """Resolves the hidden layer sizes from the ways a config may state them.

  Args:
    widths: a list of hidden sizes (the depth is its length); an int is a one-element list,
      or, when `depth` is given, the size of each of `depth` layers.
    depth: the number of hidden layers when no list is given (default 2; 0 is allowed).
    width: the size of each hidden layer when `widths` is not given (default 256).

  Returns:
    A tuple of hidden sizes (empty for depth 0). With nothing given: (256, 256).

  Raises:
    ValueError: contradictory settings.
  """
  if widths is not None and width is not None:
    raise ValueError("mlp: give either `widths` or `width`, not both")
  if widths is None:
    size = DEFAULT_WIDTH if width is None else int(width)
    return (size,) * (DEFAULT_DEPTH if depth is None else int(depth))
  if isinstance(widths, int):
    return (int(widths),) * (1 if depth is None else int(depth))
  widths = tuple(int(w) for w in widths)
  if depth is not None and depth != len(widths):
    raise ValueError(f"mlp: depth={depth} disagrees with widths={list(widths)}")
  return widths


class MLP(nn.Module):
  """Fully connected classifier; one dropout site after each hidden layer.

  Dense layers followed by BatchNorm carry no bias (BatchNorm's shift replaces it).
  """
  num_classes: int = 10
  widths: Any = None  # see `hidden_widths`; nothing given = 2 hidden layers of 256
  depth: int | None = None
  width: int | None = None
  activation: str = "relu"
  kernel_init: str = "glorot_uniform"  # Keras' default
  bias_init: str = "zeros"
  batchnorm: bool = False
  dtype: Any = jnp.float32

  @property
  def hidden(self) -> tuple[int, ...]:
    return hidden_widths(self.widths, self.depth, self.width)

  @property
  def num_dropout_sites(self) -> int:
    return len(self.hidden)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               hparams: Mapping[str, Any] | None = None) -> jax.Array:
    hp = layers.ModelHparams(hparams, self.activation, self.num_dropout_sites)
    inits = dict(kernel_init=self.kernel_init, bias_init=self.bias_init, dtype=self.dtype)
    x = x.reshape(x.shape[0], -1).astype(self.dtype)
    for site, features in enumerate(self.hidden):
      x = layers.dense(features, use_bias=not self.batchnorm, **inits)(x)
      if self.batchnorm:
        x = layers.batch_norm(train, self.dtype)(x)
      x = hp.activate(x)
      x = layers.Dropout()(x, hp.dropout_rate(site), train)
    return layers.dense(self.num_classes, **inits)(x).astype(jnp.float32)
