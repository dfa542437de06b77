"""Each optimizer's first steps against its update equations written out by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import optim

W0 = np.array([0.5, -1.0, 2.0], np.float32)
GRADS = [np.array([0.1, -0.2, 0.3], np.float32), np.array([-0.4, 0.5, 0.05], np.float32),
         np.array([0.2, 0.2, -0.1], np.float32)]


def _run(name, **overrides):
  hp = {k: jnp.asarray(v, jnp.float32) for k, v in {**optim.default_hparams(name), **overrides}.items()}
  tx = optim.make_optimizer(name, hp, regularize_biases=True)
  params = {"w": jnp.asarray(W0)}
  state = tx.init(params)
  out = []
  for g in GRADS:
    updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
    params = {"w": params["w"] + updates["w"]}
    out.append(np.asarray(params["w"]))
  return out


def _check(name, expected, **overrides):
  for got, want in zip(_run(name, **overrides), expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_sgd():
  lr, w, out = 0.1, W0.copy(), []
  for g in GRADS:
    w = w - lr * g
    out.append(w)
  _check("sgd", out, lr=lr)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_and_nesterov(nesterov):
  lr, mu, w, v, out = 0.1, 0.9, W0.copy(), np.zeros(3, np.float32), []
  for g in GRADS:
    v = mu * v + g
    step = g + mu * v if nesterov else v   # PyTorch's formulation (dampening 0)
    w = w - lr * step
    out.append(w)
  _check("nesterov" if nesterov else "momentum", out, lr=lr, momentum=mu)


def test_rmsprop():
  lr, rho, eps, w, s, out = 0.01, 0.9, 1e-7, W0.copy(), np.zeros(3), []
  for g in GRADS:
    s = rho * s + (1 - rho) * g ** 2
    w = w - lr * g / (np.sqrt(s) + eps)
    out.append(w)
  _check("rmsprop", out, lr=lr, rho=rho, eps=eps)


def test_rmsprop_with_momentum():
  lr, rho, eps, mom = 0.01, 0.9, 1e-7, 0.5
  w, s, buf, out = W0.copy(), np.zeros(3), np.zeros(3), []
  for g in GRADS:
    s = rho * s + (1 - rho) * g ** 2
    buf = mom * buf + g / (np.sqrt(s) + eps)
    w = w - lr * buf
    out.append(w)
  _check("rmsprop", out, lr=lr, rho=rho, eps=eps, momentum=mom)


def test_rmsprop_centered():
  lr, rho, eps, w, s, m, out = 0.01, 0.9, 1e-7, W0.copy(), np.zeros(3), np.zeros(3), []
  for g in GRADS:
    s = rho * s + (1 - rho) * g ** 2
    m = rho * m + (1 - rho) * g
    w = w - lr * g / (np.sqrt(s - m ** 2) + eps)
    out.append(w)
  _check("rmsprop_centered", out, lr=lr, rho=rho, eps=eps)


def test_adam_with_bias_correction():
  lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
  w, m, v, out = W0.copy(), np.zeros(3), np.zeros(3), []
  for t, g in enumerate(GRADS, start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g ** 2
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    out.append(w)
  _check("adam", out, lr=lr, beta1=b1, beta2=b2, eps=eps)


def test_adamw_decay_is_decoupled_and_scaled_by_lr():
  lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-8, 0.1
  w, m, v, out = W0.copy(), np.zeros(3), np.zeros(3), []
  for t, g in enumerate(GRADS, start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g ** 2
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    w = w - lr * (m_hat / (np.sqrt(v_hat) + eps) + wd * w)
    out.append(w)
  _check("adamw", out, lr=lr, weight_decay=wd)


def test_adagrad():
  lr, acc0, eps = 0.1, 0.1, 1e-7
  w, s, out = W0.copy(), np.full(3, acc0), []
  for g in GRADS:
    s = s + g ** 2
    w = w - lr * g / np.sqrt(s + eps)
    out.append(w)
  _check("adagrad", out, lr=lr, initial_accumulator=acc0, eps=eps)


def test_adadelta():
  lr, rho, eps = 1.0, 0.9, 1e-6
  w, sq, dx, out = W0.copy(), np.zeros(3), np.zeros(3), []
  for g in GRADS:
    sq = rho * sq + (1 - rho) * g ** 2
    delta = np.sqrt(dx + eps) / np.sqrt(sq + eps) * g
    dx = rho * dx + (1 - rho) * delta ** 2
    w = w - lr * delta
    out.append(w)
  _check("adadelta", out, lr=lr, rho=rho, eps=eps)


def test_coupled_l1_l2_are_keras_regularizer_gradients():
  lr, l1, l2, w, out = 0.1, 0.01, 0.05, W0.copy(), []
  for g in GRADS:
    w = w - lr * (g + l1 * np.sign(w) + 2 * l2 * w)
    out.append(w)
  _check("sgd", out, lr=lr, l1=l1, l2=l2)


def test_clip_by_global_norm_applies_to_the_regularized_gradient():
  lr, clip, w, out = 0.1, 0.1, W0.copy(), []
  for g in GRADS:
    norm = np.linalg.norm(g)
    g = g if norm < clip else g * clip / norm
    w = w - lr * g
    out.append(w)
  _check("sgd", out, lr=lr, clip_norm=clip)


def test_masks_exclude_biases_and_norms_by_default():
  params = {"Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
            "BatchNorm_0": {"scale": jnp.ones(2), "bias": jnp.ones(2)}}
  hp = {k: jnp.asarray(v) for k, v in {**optim.default_hparams("sgd"), "lr": 1.0, "l2": 0.5,
                                        "weight_decay": 0.25}.items()}
  tx = optim.make_optimizer("sgd", hp)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  # kernel: -lr * (2*l2*w + wd*w) = -(1.0 + 0.25); everything else untouched.
  np.testing.assert_allclose(updates["Dense_0"]["kernel"], -1.25)
  for leaf in (updates["Dense_0"]["bias"], updates["BatchNorm_0"]["scale"],
               updates["BatchNorm_0"]["bias"]):
    np.testing.assert_allclose(leaf, 0.0)


def test_schedule_drives_the_step_size():
  hp = {k: jnp.asarray(v) for k, v in {**optim.default_hparams("sgd"), "lr": 1.0, "gamma": 0.5,
                                        "step_size": 1.0}.items()}
  tx = optim.make_optimizer("sgd", hp, schedule="step", schedule_per="step")
  params = {"w": jnp.zeros(1)}
  state = tx.init(params)
  steps = []
  for _ in range(3):
    updates, state = tx.update({"w": jnp.ones(1)}, state, params)
    steps.append(float(updates["w"][0]))
  assert steps == pytest.approx([-1.0, -0.5, -0.25])


def test_state_structure_does_not_depend_on_values():
  """Members with different numbers must stack: same pytree structure and shapes."""
  params = {"w": jnp.zeros(3)}
  a = optim.make_optimizer("rmsprop", {k: jnp.asarray(v) for k, v in optim.default_hparams("rmsprop").items()})
  b = optim.make_optimizer("rmsprop", {k: jnp.asarray(v) for k, v in {**optim.default_hparams("rmsprop"), "momentum": 0.9, "rho": 0.5}.items()})
  sa, sb = jax.eval_shape(a.init, params), jax.eval_shape(b.init, params)
  assert jax.tree_util.tree_structure(sa) == jax.tree_util.tree_structure(sb)


def test_unknown_optimizer():
  with pytest.raises(ValueError, match="optimizer: unknown 'sgdd'; known: .*adam"):
    optim.default_hparams("sgdd")
