"""Loss functions, found by name.

Every loss maps (logits or predictions, labels, params) to a per-example loss vector, so the
trainer can mask padded examples and average itself. Numeric knobs (label smoothing, Huber
delta) arrive as traced per-member values, never as Python constants baked into the program.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxnn.registry import Registry


def _one_hot(labels: jax.Array, num_classes: int) -> jax.Array:
  if labels.ndim == 1 or labels.shape[-1] != num_classes:
    return jax.nn.one_hot(labels, num_classes)
  return labels.astype(jnp.float32)


def softmax_cross_entropy(logits, labels, *, label_smoothing=0.0, **_):
  """Cross-entropy on integer or one-hot labels, with optional label smoothing.

  Smoothing follows the Keras/PyTorch definition: targets = (1-s)*onehot + s/num_classes.
  """
  num_classes = logits.shape[-1]
  targets = _one_hot(labels, num_classes)
  targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
  return optax.softmax_cross_entropy(logits, targets)


def _regression_target(preds, labels):
  """Regression heads have one output; a [B] label is matched to preds[:, 0]."""
  preds = preds[..., 0] if preds.ndim == labels.ndim + 1 else preds
  return preds, labels.astype(jnp.float32)


def mean_squared_error(preds, labels, **_):
  preds, labels = _regression_target(preds, labels)
  return jnp.square(preds - labels).reshape(preds.shape[0], -1).mean(-1)


def mean_absolute_error(preds, labels, **_):
  preds, labels = _regression_target(preds, labels)
  return jnp.abs(preds - labels).reshape(preds.shape[0], -1).mean(-1)


def huber(preds, labels, *, huber_delta=1.0, **_):
  preds, labels = _regression_target(preds, labels)
  return optax.huber_loss(preds, labels, delta=huber_delta).reshape(preds.shape[0], -1).mean(-1)


def binary_cross_entropy(logits, labels, **_):
  """Sigmoid cross-entropy on one logit per example (labels in {0, 1})."""
  logits, labels = _regression_target(logits, labels)
  return optax.sigmoid_binary_cross_entropy(logits, labels).reshape(logits.shape[0], -1).mean(-1)


LossFn = Callable[..., jax.Array]

LOSSES: Registry[LossFn] = Registry("loss", {
    "cross_entropy": softmax_cross_entropy,
    "mse": mean_squared_error,
    "mae": mean_absolute_error,
    "huber": huber,
    "binary_cross_entropy": binary_cross_entropy,
})

# Which losses are classification losses: accuracy is argmax for these, thresholded logit for
# binary cross-entropy, and undefined (reported as NaN-free zero) for regression.
CLASSIFICATION = frozenset({"cross_entropy"})


def accuracy(loss_name: str, outputs: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example correctness (float 0/1) for classification losses; zeros for regression."""
  if loss_name == "cross_entropy":
    if labels.ndim == outputs.ndim:
      labels = jnp.argmax(labels, -1)
    return (jnp.argmax(outputs, -1) == labels).astype(jnp.float32)
  if loss_name == "binary_cross_entropy":
    outputs, labels = _regression_target(outputs, labels)
    return ((outputs > 0) == (labels > 0.5)).astype(jnp.float32)
  return jnp.zeros(outputs.shape[0], jnp.float32)


def get_loss(name: str) -> LossFn:
  return LOSSES.get(name)
