"""Losses pinned to their formulas, written here in numpy (float64) from their textbook forms.

The outputs are chosen so every branch is exercised: large logits (where a naive log(sigmoid)
overflows), errors on both sides of the Huber delta, one-hot and integer labels.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import losses

RTOL = 1e-5

LOGITS = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-3.0, 4.0, 1.0], [30.0, -30.0, 0.0]],
                  np.float32)
LABELS = np.array([0, 2, 1, 1], np.int32)
ONE_HOT = np.eye(3, dtype=np.float32)[LABELS]


def _log_softmax(z):
  z = np.asarray(z, np.float64)
  m = z.max(-1, keepdims=True)
  return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def _cross_entropy(z, targets):
  return -(np.asarray(targets, np.float64) * _log_softmax(z)).sum(-1)


def _sigmoid_bce(z, y):
  """The stable form: max(z, 0) - z*y + log(1 + exp(-|z|))."""
  z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
  return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


def _huber(e, delta):
  a = np.abs(np.asarray(e, np.float64))
  return np.where(a <= delta, 0.5 * a ** 2, delta * (a - 0.5 * delta))


def test_cross_entropy_integer_and_one_hot_labels_equal_log_sum_exp():
  by_int = losses.get_loss("cross_entropy")(LOGITS, LABELS)
  by_one_hot = losses.get_loss("cross_entropy")(LOGITS, ONE_HOT)
  # -log softmax(z)_y = logsumexp(z) - z_y
  z = LOGITS.astype(np.float64)
  m = z.max(-1)
  expected = np.log(np.exp(z - m[:, None]).sum(-1)) + m - z[np.arange(4), LABELS]
  assert by_int.shape == (4,)
  np.testing.assert_allclose(by_int, expected, rtol=RTOL)
  np.testing.assert_allclose(by_one_hot, expected, rtol=RTOL)
  assert float(by_int[3]) == pytest.approx(60.0, rel=1e-6)   # logsumexp(30, -30, 0) - (-30)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_label_smoothing_targets(smoothing):
  got = losses.get_loss("cross_entropy")(LOGITS, LABELS, label_smoothing=smoothing)
  targets = (1 - smoothing) * ONE_HOT + smoothing / 3
  np.testing.assert_allclose(got, _cross_entropy(LOGITS, targets), rtol=RTOL)


def test_label_smoothing_is_traced_per_member_under_vmap():
  smoothing = jnp.array([0.0, 0.1, 0.3], jnp.float32)
  logits = jnp.stack([jnp.asarray(LOGITS)] * 3)
  loss_fn = losses.get_loss("cross_entropy")
  fn = jax.jit(jax.vmap(lambda z, s: loss_fn(z, LABELS, label_smoothing=s)))
  got = fn(logits, smoothing)
  assert got.shape == (3, 4)
  for i, s in enumerate([0.0, 0.1, 0.3]):
    np.testing.assert_allclose(got[i], _cross_entropy(LOGITS, (1 - s) * ONE_HOT + s / 3),
                               rtol=RTOL)
  assert not np.allclose(got[0], got[2])


PREDS_1 = np.array([[0.5], [-2.0], [3.0], [0.9]], np.float32)   # one output per example
TARGET_1 = np.array([0.0, 1.0, 1.0, 1.0], np.float32)


@pytest.mark.parametrize("name,formula", [
    ("mse", lambda e: e ** 2),
    ("mae", np.abs),
    ("huber", lambda e: _huber(e, 1.0)),
])
def test_regression_losses_on_one_output(name, formula):
  got = losses.get_loss(name)(PREDS_1, TARGET_1)
  error = PREDS_1[:, 0].astype(np.float64) - TARGET_1
  assert got.shape == (4,)
  np.testing.assert_allclose(got, formula(error), rtol=RTOL)


@pytest.mark.parametrize("name,formula", [
    ("mse", lambda e: e ** 2),
    ("mae", np.abs),
    ("huber", lambda e: _huber(e, 1.0)),
])
def test_regression_losses_on_a_class_head_use_one_hot_targets(name, formula):
  # What a sweep with loss=mse on a classification set computes (Keras: MSE on one-hot labels).
  got = losses.get_loss(name)(LOGITS, LABELS)
  expected = formula(LOGITS.astype(np.float64) - ONE_HOT).mean(-1)
  np.testing.assert_allclose(got, expected, rtol=RTOL)
  np.testing.assert_allclose(losses.get_loss(name)(LOGITS, ONE_HOT), expected, rtol=RTOL)


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.5])
def test_huber_delta(delta):
  got = losses.get_loss("huber")(PREDS_1, TARGET_1, huber_delta=delta)
  np.testing.assert_allclose(got, _huber(PREDS_1[:, 0] - TARGET_1, delta), rtol=RTOL)
  # Hand values for delta=1: |e|=0.5 -> 0.125 (quadratic), |e|=3 -> 2.5 (linear).
  if delta == 1.0:
    np.testing.assert_allclose(got[:2], [0.125, 2.5], rtol=RTOL)


def test_huber_delta_is_traced_per_member_under_vmap():
  deltas = jnp.array([0.5, 1.0, 2.5])
  preds = jnp.stack([jnp.asarray(PREDS_1)] * 3)
  got = jax.jit(jax.vmap(lambda p, d: losses.get_loss("huber")(p, TARGET_1, huber_delta=d)))(
      preds, deltas)
  for i, d in enumerate([0.5, 1.0, 2.5]):
    np.testing.assert_allclose(got[i], _huber(PREDS_1[:, 0] - TARGET_1, d), rtol=RTOL)


def test_binary_cross_entropy_is_the_stable_formula():
  logits = np.array([[0.0], [2.0], [-3.0], [100.0], [-100.0]], np.float32)
  labels = np.array([1, 0, 0, 0, 0], np.int32)
  got = losses.get_loss("binary_cross_entropy")(logits, labels)
  # atol: exp(-100) underflows to 0 in float32.
  np.testing.assert_allclose(got, _sigmoid_bce(logits[:, 0], labels), rtol=RTOL, atol=1e-30)
  assert np.all(np.isfinite(got))
  assert float(got[0]) == pytest.approx(np.log(2), rel=1e-6)
  assert float(got[3]) == pytest.approx(100.0, rel=1e-6)   # naive log(1 - sigmoid(100)) = -inf


def test_binary_cross_entropy_on_a_class_head_is_a_sigmoid_per_class():
  got = losses.get_loss("binary_cross_entropy")(LOGITS, LABELS)
  np.testing.assert_allclose(got, _sigmoid_bce(LOGITS, ONE_HOT).mean(-1), rtol=RTOL)


def test_binary_cross_entropy_label_smoothing():
  s = 0.2
  got = losses.get_loss("binary_cross_entropy")(PREDS_1, TARGET_1, label_smoothing=s)
  np.testing.assert_allclose(got, _sigmoid_bce(PREDS_1[:, 0], TARGET_1 * (1 - s) + s / 2),
                             rtol=RTOL)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_accuracy_on_a_class_head_is_the_argmax(name):
  # argmax per row: 0, 2, 1, 0 against labels 0, 2, 1, 1 -> 3 of 4 right, for every loss.
  np.testing.assert_array_equal(losses.accuracy(name, LOGITS, LABELS), [1, 1, 1, 0])
  np.testing.assert_array_equal(losses.accuracy(name, LOGITS, ONE_HOT), [1, 1, 1, 0])


@pytest.mark.parametrize("name,expected", [
    ("binary_cross_entropy", [0, 0, 1, 1]),   # sign of the logit against the 0/1 label
    ("mse", [0, 0, 0, 0]), ("mae", [0, 0, 0, 0]), ("huber", [0, 0, 0, 0]),   # undefined -> 0
])
def test_accuracy_on_one_output(name, expected):
  got = losses.accuracy(name, PREDS_1, TARGET_1.astype(np.int32))
  assert got.dtype == jnp.float32
  np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_every_loss_is_per_example_finite_and_differentiable(name):
  loss_fn = losses.get_loss(name)
  value, grad = jax.value_and_grad(lambda z: loss_fn(z, LABELS).mean())(jnp.asarray(LOGITS))
  assert loss_fn(LOGITS, LABELS).shape == (4,)
  assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
  assert np.any(grad != 0)


def test_unknown_loss_names_the_field_and_lists_the_known_ones():
  with pytest.raises(ValueError) as error:
    losses.get_loss("hinge")
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith("loss: unknown 'hinge'")
  for name in losses.LOSSES:
    assert name in message
  with pytest.raises(ValueError, match="loss: unknown 'hinge'"):
    losses.accuracy("hinge", LOGITS, LABELS)
