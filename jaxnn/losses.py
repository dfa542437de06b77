"""Loss functions, found by name.

Every loss maps (outputs, labels, numeric knobs) to a per-example loss vector, so the trainer can
mask padded examples and average itself. Numeric knobs (label smoothing, Huber delta) arrive as
traced per-member values, never as Python constants baked into the program.

Every data set here is a classification set and every model has one output per class, so each
loss must make sense on a classification head (that is what lets a sweep compare cross-entropy
with MSE on MNIST, as the Keras tutorials do):

  * outputs [B, K] (K > 1) with integer labels [B]: the labels become one-hot targets; the
    regression losses (mse, mae, huber) compare the outputs with them, binary cross-entropy is a
    sigmoid per class (Keras `binary_crossentropy` on one-hot labels), accuracy is the argmax;
  * outputs [B, 1] (or [B]) with labels [B]: one scalar target per example (a regression head,
    or a single binary logit); accuracy is the logit's sign for binary cross-entropy and
    undefined (reported as 0) for the regression losses;
  * outputs and labels of one shape: the labels are the targets as given (one-hot or soft).
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


def _targets(outputs: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(outputs, float targets) of one shape, by the rules in the module docstring."""
  if outputs.ndim == labels.ndim + 1:
    if outputs.shape[-1] == 1:
      return outputs[..., 0], labels.astype(jnp.float32)
    return outputs, jax.nn.one_hot(labels, outputs.shape[-1])
  return outputs, labels.astype(jnp.float32)


def _per_example(values: jax.Array) -> jax.Array:
  return values.reshape(values.shape[0], -1).mean(-1)


def softmax_cross_entropy(logits, labels, *, label_smoothing=0.0, **_):
  """Cross-entropy on integer or one-hot labels, with optional label smoothing.

  Smoothing follows the Keras/PyTorch definition: targets = (1-s)*onehot + s/num_classes.
  """
  num_classes = logits.shape[-1]
  targets = _one_hot(labels, num_classes)
  targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
  return optax.softmax_cross_entropy(logits, targets)


def mean_squared_error(preds, labels, **_):
  """Mean over outputs of (pred - target)^2."""
  preds, targets = _targets(preds, labels)
  return _per_example(jnp.square(preds - targets))


def mean_absolute_error(preds, labels, **_):
  """Mean over outputs of |pred - target|."""
  preds, targets = _targets(preds, labels)
  return _per_example(jnp.abs(preds - targets))


def huber(preds, labels, *, huber_delta=1.0, **_):
  """Mean over outputs of the Huber loss: e^2/2 for |e| <= delta, else delta*(|e| - delta/2)."""
  preds, targets = _targets(preds, labels)
  return _per_example(optax.huber_loss(preds, targets, delta=huber_delta))


def binary_cross_entropy(logits, labels, *, label_smoothing=0.0, **_):
  """Sigmoid cross-entropy per output (targets in [0, 1]), averaged over outputs.

  Smoothing follows Keras' BinaryCrossentropy: targets = (1-s)*targets + s/2.
  """
  logits, targets = _targets(logits, labels)
  targets = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
  return _per_example(optax.sigmoid_binary_cross_entropy(logits, targets))


LossFn = Callable[..., jax.Array]

LOSSES: Registry[LossFn] = Registry("loss", {
    "cross_entropy": softmax_cross_entropy,
    "mse": mean_squared_error,
    "mae": mean_absolute_error,
    "huber": huber,
    "binary_cross_entropy": binary_cross_entropy,
})


def accuracy(loss_name: str, outputs: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example correctness (float 0/1).

  Argmax against the class for any loss on a head with several outputs; on a single output, the
  logit's sign against the 0/1 label for binary cross-entropy, and zeros for the regression
  losses (accuracy is undefined there, and must not be NaN).
  """
  LOSSES.check(loss_name)
  if outputs.ndim > 1 and outputs.shape[-1] > 1:
    if labels.ndim == outputs.ndim:
      labels = jnp.argmax(labels, -1)
    return (jnp.argmax(outputs, -1) == labels).astype(jnp.float32)
  if loss_name == "binary_cross_entropy":
    outputs, targets = _targets(outputs, labels)
    return ((outputs > 0) == (targets > 0.5)).astype(jnp.float32)
  return jnp.zeros(outputs.shape[0], jnp.float32)


def get_loss(name: str) -> LossFn:
  """The loss registered as `name`; unknown names raise ValueError listing the known ones."""
  return LOSSES.get(name)
