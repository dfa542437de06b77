"""Activation functions, found by name, each taking a per-member parameter.

Every activation has the signature `fn(x, param)`. `param` is a traced float scalar (the
member's `act_param` hyperparameter) so that, for instance, leaky-ReLU slopes can differ across
members of one compiled population without a recompile. Activations without a knob ignore it.

GELU is the exact (erf) form, as PyTorch's and Keras' defaults, not JAX's tanh approximation,
so results compare with those frameworks.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxnn.registry import Registry

Activation = Callable[[jax.Array, jax.Array], jax.Array]


def _param_like(param, x):
  return jnp.asarray(param, dtype=x.dtype)


def linear(x, param=0.0):
  del param
  return x


def relu(x, param=0.0):
  del param
  return jax.nn.relu(x)


def leaky_relu(x, param=0.01):
  """x for x >= 0, param * x below (param is the negative slope)."""
  return jax.nn.leaky_relu(x, negative_slope=_param_like(param, x))


def relu6(x, param=0.0):
  del param
  return jax.nn.relu6(x)


def elu(x, param=1.0):
  """x for x > 0, param * (exp(x) - 1) below (param is alpha); NaN-free gradients."""
  return jax.nn.elu(x, alpha=_param_like(param, x))


def gelu(x, param=0.0):
  del param
  return jax.nn.gelu(x, approximate=False)


def silu(x, param=0.0):
  del param
  return jax.nn.silu(x)


def tanh(x, param=0.0):
  del param
  return jnp.tanh(x)


def sigmoid(x, param=0.0):
  del param
  return jax.nn.sigmoid(x)


def softplus(x, param=0.0):
  del param
  return jax.nn.softplus(x)


_ACTIVATIONS: Registry[Activation] = Registry("activation", {
    "linear": linear,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "relu6": relu6,
    "elu": elu,
    "gelu": gelu,
    "silu": silu,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "softplus": softplus,
})

# Default `act_param` where the activation has one (Keras/PyTorch defaults), 0.0 elsewhere.
_DEFAULT_PARAMS = {"leaky_relu": 0.01, "elu": 1.0}

ACTIVATIONS: tuple[str, ...] = tuple(_ACTIVATIONS)


def get_activation(name: str) -> Activation:
  """Looks up an activation by name.

  Args:
    name: one of `ACTIVATIONS`.

  Returns:
    `fn(x, param)`; `param` is used only by leaky_relu (negative slope) and elu (alpha).

  Raises:
    ValueError: unknown name (the message lists the known ones).
  """
  return _ACTIVATIONS.get(name)


def default_param(name: str) -> float:
  """The conventional `act_param` of an activation (leaky_relu 0.01, elu 1.0, others 0.0).

  Raises:
    ValueError: unknown name.
  """
  _ACTIVATIONS.check(name)
  return _DEFAULT_PARAMS.get(name, 0.0)
