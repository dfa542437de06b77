"""Multi-layer perceptron: flatten, [Dense -> (BatchNorm) -> act -> Dropout] x depth, Dense.

Accepts any input shape (images [B, H, W, C] or toy points [B, 2]); everything after the batch
axis is flattened. Depth 0 is multinomial logistic regression.

Packing. Members of different depths, widths and activations share one compiled MLP: the model
is built at the bucket's padded shape and reads each member's true shape from its hparams
(`hparams['widths']`: [depth] true widths, 0 for an absent layer; `hparams['act_index']`:
[depth] indices into the `activation` tuple). Padded units are exact zeros everywhere:
  * their kernels and biases start at 0 and their outputs are masked to 0 after the
    activation, so every gradient reaching them is exactly 0 and every optimizer (Adam moments,
    momentum, L1/L2, weight decay, clipping's global norm) leaves them at 0;
  * an absent layer is an identity: the output layer reads the member's last real layer (a
    select, exact), so a depth-2 member in a depth-5 bucket computes its own 2-layer function;
  * initial weights survive padding: kernel entry (fan-in r, unit u) and dropout mask entry
    (example b, unit u) are keyed hashes of (key, u, r) and (key, u, b) (`jaxnn.hashing`),
    independent of the padded shape; the kernel's scale comes from the TRUE fan-in/out. A
    member alone at its true shape uses the same scheme, so a packed member starts from, and
    trains on, the numbers it gets alone.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn import activations, hashing, initializers
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


class PackedDense(nn.Module):
  """A Dense layer whose real block is [true_in, true_out] of its [in, features] shape.

  Initialized by `initializers.packed_kernel` (hashed draws, true-fan scale, zeros outside
  the real block); the bias is the unit bias init on real units, 0 on padded ones.
  """
  features: int
  kernel_init: str
  bias_init: str
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, true_in, true_out):
    kernel = self.param("kernel", initializers.packed_kernel(self.kernel_init),
                        (x.shape[-1], self.features), true_in, true_out)
    y = layers.matmul(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      unit = initializers.get_bias_init(self.bias_init)

      def bias_init(key, shape, count):
        return jnp.where(jnp.arange(shape[0]) < count, unit(key, shape, jnp.float32), 0.0)

      y = y + self.param("bias", bias_init, (self.features,), true_out).astype(self.dtype)
    return y


def unit_dropout(key, x, rate, width):
  """Inverted dropout on [B, W] whose mask entry (example b, unit u) is a keyed hash of
  (key, u, b) (`jaxnn.hashing`): a unit's mask does not depend on how many padded units follow
  it. The whole mask is one elementwise kernel laid out as x is (no per-unit keys, no
  transposes); keep iff uniform < 1-rate, the uniform made from the top 23 bits as
  `jax.random.uniform` does. `width` is x's unit count (kept for callers; x.shape[1])."""
  del width
  keep = 1.0 - jnp.asarray(rate, jnp.float32)
  mask = hashing.uniform01(hashing.bits(key, x.shape, unit_axis=1)) < keep
  scale = jnp.where(keep > 0.0, 1.0 / jnp.where(keep > 0.0, keep, 1.0), 0.0)
  return jnp.where(mask, x * scale.astype(x.dtype), jnp.zeros((), x.dtype))


class MLP(nn.Module):
  """Fully connected classifier; one dropout site after each hidden layer.

  Dense layers followed by BatchNorm carry no bias (BatchNorm's shift replaces it).
  `activation` is one name, or a tuple of names selected per layer by hparams['act_index'].
  `head_width` (packing only): the input size of the output layer when members of several
  depths share the model (the widest last layer among them); default the last hidden width.
  """
  num_classes: int = 10
  widths: Any = None  # see `hidden_widths`; nothing given = 2 hidden layers of 256
  depth: int | None = None
  width: int | None = None
  activation: Any = "relu"
  kernel_init: str = "glorot_uniform"  # Keras' default
  bias_init: str = "zeros"
  batchnorm: bool = False
  head_width: int | None = None
  dtype: Any = jnp.float32

  @property
  def hidden(self) -> tuple[int, ...]:
    return hidden_widths(self.widths, self.depth, self.width)

  @property
  def num_dropout_sites(self) -> int:
    return len(self.hidden)

  @property
  def choices(self) -> tuple[str, ...]:
    return (self.activation,) if isinstance(self.activation, str) else tuple(self.activation)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               hparams: Mapping[str, Any] | None = None) -> jax.Array:
    hidden = self.hidden
    choices = self.choices
    hp = layers.ModelHparams(hparams, choices[0], len(hidden))
    raw = dict(hparams or {})
    true = jnp.asarray(raw.get("widths", hidden), jnp.int32).reshape(len(hidden))
    act_index = jnp.asarray(raw.get("act_index", [0] * len(hidden)), jnp.int32).reshape(
        len(hidden))
    fns = [activations.get_activation(name) for name in choices]
    key = self.make_rng("dropout") if train else None
    x = x.reshape(x.shape[0], -1).astype(self.dtype)
    true_in = jnp.int32(x.shape[-1])
    outputs = []
    for site, features in enumerate(hidden):
      x = PackedDense(features, self.kernel_init, self.bias_init, use_bias=not self.batchnorm,
                      dtype=self.dtype, name=f"hidden_{site}")(x, true_in, true[site])
      if self.batchnorm:
        x = layers.batch_norm(train, self.dtype, name=f"bn_{site}")(x)
      if len(fns) == 1:
        x = fns[0](x, hp.act_param)
      else:   # per member and layer: every choice is computed, one is kept (vmap-friendly)
        x = jnp.select([act_index[site] == i for i in range(len(fns))],
                       [fn(x, hp.act_param) for fn in fns])
      x = jnp.where(jnp.arange(features) < true[site], x, jnp.zeros((), x.dtype))
      if train:
        x = unit_dropout(jax.random.fold_in(key, site), x, hp.dropout_rate(site), features)
      outputs.append(x)
      true_in = true[site]
    if hidden:
      size = self.head_width or hidden[-1]
      depth = jnp.sum(true > 0)
      x = jnp.zeros((x.shape[0], size), x.dtype)
      for site, out in enumerate(outputs):   # the last real layer feeds the output layer
        out = out[:, :size] if out.shape[1] >= size else jnp.pad(out, ((0, 0), (0, size - out.shape[1])))
        x = jnp.where(depth == site + 1, out, x)
    head = PackedDense(self.num_classes, self.kernel_init, self.bias_init, dtype=self.dtype,
                       name="head")
    return head(x, true_in if not hidden else true[jnp.maximum(jnp.sum(true > 0) - 1, 0)],
                jnp.int32(self.num_classes)).astype(jnp.float32)

  @staticmethod
  def per_layer(params: Mapping[str, Any], values: jax.Array) -> Any:
    """A pytree like `params` giving each leaf its layer's entry of `values` ([depth + 1]:
    one per hidden layer, then the output layer); used for per-layer L2."""
    def layer(name):
      if name == "head":
        return values[-1]
      return values[int(name.rsplit("_", 1)[1])]
    return {name: jax.tree_util.tree_map(lambda _: layer(name), sub)
            for name, sub in params.items()}
