"""Model registry: a name maps to a Flax module factory, its tiny test sizes and its inputs.

The contract the population trainer relies on (every entry honours it):

  model = get_model(name, num_classes=10, **static_kwargs)
  variables = model.init({'params': k1, 'dropout': k2}, x, train=False, hparams=hp)
  logits, updates = model.apply(variables, x, train=True, hparams=hp,
                                rngs={'dropout': key}, mutable=['batch_stats'])
  logits = model.apply(variables, x, train=False, hparams=hp)

x is float32 [B, H, W, C] (the MLP flattens any shape, including toy [B, 2]); logits are
float32 [B, num_classes]. `hp` holds traced per-member numbers (see `jaxnn.models.layers`):
hp['dropout'] of shape [] or [model.num_dropout_sites], hp['act_param'] of shape [].
`updates` is {} for models without BatchNorm.

Static kwargs shared by all families: num_classes, activation (a `jaxnn.activations` name),
kernel_init / bias_init (`jaxnn.initializers` names, unit scale: apply
`jaxnn.initializers.rescale` after init), batchnorm, dtype. Default kernel_init: glorot_uniform
for the Keras-era nets (mlp, small_cnn, lenet5), he_normal for the ReLU CNNs (vgg, resnet,
fastnet). Each entry also carries `tiny_kwargs`, small sizes used by the registry-walking test.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax

from jaxnn.models.fastnet import FastNet
from jaxnn.models.layers import Dropout, ModelHparams
from jaxnn.models.lenet import LeNet5
from jaxnn.models.mlp import MLP
from jaxnn.models.resnet import ResNet, ResNet18
from jaxnn.models.small_cnn import SmallCNN
from jaxnn.models.vgg import VGG, VGG11, VGG16
from jaxnn.registry import Registry

MNIST_SHAPE = (28, 28, 1)
CIFAR_SHAPE = (32, 32, 3)
TOY_SHAPE = (2,)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
  """One registry row.

  Attributes:
    factory: a Module class or a functools.partial of one (fixing its sizes).
    tiny_kwargs: static kwargs giving a tiny variant of the same architecture, for tests.
    input_shapes: per-example input shapes (no batch axis) the model is meant for.
    description: one line for listings.
    convolutional: whether it convolves: under vmap its convolutions become grouped
      convolutions, so the sweep loop times vmap against lax.map for such families.
  """
  factory: Callable[..., nn.Module]
  tiny_kwargs: Mapping[str, Any]
  input_shapes: tuple[tuple[int, ...], ...]
  description: str
  convolutional: bool = True

  @property
  def module_class(self) -> type:
    factory = self.factory
    while isinstance(factory, functools.partial):
      factory = factory.func
    return factory

  def options(self) -> tuple[str, ...]:
    """Names of the static kwargs this model accepts."""
    return tuple(f.name for f in dataclasses.fields(self.module_class)
                 if f.init and f.name not in ("parent", "name"))


_IMAGES = (MNIST_SHAPE, CIFAR_SHAPE)

_MODELS: Registry[ModelEntry] = Registry("model", {
    "mlp": ModelEntry(
        MLP, {"widths": (16, 8)}, (TOY_SHAPE,) + _IMAGES,
        "fully connected; widths list or depth+width; dropout after each hidden layer",
        convolutional=False),
    "small_cnn": ModelEntry(
        SmallCNN, {"features": (4, 8), "dense_width": 8}, _IMAGES,
        "Keras MNIST CNN: conv32-pool-conv64-pool-dense64"),
    "lenet5": ModelEntry(
        LeNet5, {"features": (2, 4), "dense_widths": (8, 8)}, _IMAGES,
        "LeNet-5: conv6-pool-conv16-pool-fc120-fc84 (61,706 params on 28x28x1)"),
    "vgg11": ModelEntry(
        VGG11, {"width": 2, "dense_widths": (8,)}, _IMAGES,
        "VGG-11 (config A) for 32x32, BatchNorm, small dense head"),
    "vgg16": ModelEntry(
        VGG16, {"width": 2, "dense_widths": (8,)}, _IMAGES,
        "VGG-16 (config D) for 32x32, BatchNorm, small dense head"),
    "resnet18": ModelEntry(
        ResNet18, {"width": 2, "stage_sizes": (1, 1, 1, 1)}, _IMAGES,
        "CIFAR ResNet-18: 3x3 stem, BasicBlocks [2,2,2,2], 11.17M params"),
    "fastnet": ModelEntry(
        FastNet, {"stem_width": 4, "widths": (4, 8, 8)}, _IMAGES,
        "small ResNet-9-style speed-run net: conv-pool-BN-act stages with residuals"),
})


def list_models() -> tuple[str, ...]:
  """The registered model names."""
  return tuple(_MODELS)


def model_entry(name: str) -> ModelEntry:
  """The registry row of `name`; ValueError listing the known names if unknown."""
  return _MODELS.get(name)


def tiny_kwargs(name: str) -> dict[str, Any]:
  """Static kwargs for a tiny variant of `name` (same architecture, few channels/units)."""
  return dict(_MODELS.get(name).tiny_kwargs)


def input_shapes(name: str) -> tuple[tuple[int, ...], ...]:
  """Per-example input shapes (without batch axis) `name` is meant for."""
  return _MODELS.get(name).input_shapes


def get_model(name: str, num_classes: int = 10, **static_kwargs) -> nn.Module:
  """Builds the model called `name`.

  Args:
    name: one of `list_models()`.
    num_classes: size of the output layer.
    **static_kwargs: architecture options (see each family's fields), e.g. activation,
      kernel_init, bias_init, batchnorm, widths, width, dtype.

  Returns:
    An unbound Flax linen Module following the contract in this module's docstring.

  Raises:
    ValueError: unknown model name, or an option the model does not have.
  """
  entry = _MODELS.get(name)
  known = entry.options()
  unknown = sorted(set(static_kwargs) - set(known))
  if unknown:
    raise ValueError(f"model {name!r}: unknown option(s) {', '.join(unknown)}; "
                     f"known: {', '.join(sorted(known))}")
  return entry.factory(num_classes=num_classes, **static_kwargs)


def dropout_sites(name: str, **static_kwargs) -> int:
  """How many dropout sites `get_model(name, **static_kwargs)` has (the length of a per-site
  hp['dropout'] vector)."""
  return get_model(name, **static_kwargs).num_dropout_sites


def param_count(params: Any) -> int:
  """Number of scalars in a pytree of arrays (or of jax.ShapeDtypeStruct from eval_shape).

  Pass `variables['params']` to count trainable parameters only.
  """
  return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))


__all__ = [
    "Dropout", "FastNet", "LeNet5", "MLP", "ModelEntry", "ModelHparams", "ResNet", "ResNet18",
    "SmallCNN", "VGG", "VGG11", "VGG16", "dropout_sites", "get_model", "input_shapes",
    "list_models", "model_entry", "param_count", "tiny_kwargs",
]
