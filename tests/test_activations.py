"""Activations: values against their formulas, per-member parameters under vmap, registry errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import activations

X = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0], np.float32)
_erf = np.vectorize(math.erf)

# Reference formulas in NumPy (float64), param = the value passed as act_param.
REFERENCES = {
    "linear": lambda x, p: x,
    "relu": lambda x, p: np.maximum(x, 0.0),
    "leaky_relu": lambda x, p: np.where(x >= 0, x, p * x),
    "relu6": lambda x, p: np.clip(x, 0.0, 6.0),
    "elu": lambda x, p: np.where(x > 0, x, p * (np.exp(x) - 1.0)),
    "gelu": lambda x, p: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "silu": lambda x, p: x / (1.0 + np.exp(-x)),
    "tanh": lambda x, p: np.tanh(x),
    "sigmoid": lambda x, p: 1.0 / (1.0 + np.exp(-x)),
    "softplus": lambda x, p: np.log1p(np.exp(x)),
}


def test_registry_matches_references():
  assert set(activations.ACTIVATIONS) == set(REFERENCES)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_values_match_formula(name):
  fn = activations.get_activation(name)
  param = 0.2 if name in ("leaky_relu", "elu") else activations.default_param(name)
  got = np.asarray(fn(jnp.asarray(X), jnp.float32(param)))
  want = REFERENCES[name](X.astype(np.float64), param)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  assert got.dtype == np.float32


def test_gelu_is_exact_not_tanh_approximation():
  # At x = -1 the erf form gives -0.158655; the tanh approximation gives -0.158808.
  got = float(activations.get_activation("gelu")(jnp.float32(-1.0), 0.0))
  assert got == pytest.approx(-0.15865525, abs=1e-6)


def test_defaults():
  assert activations.default_param("leaky_relu") == 0.01
  assert activations.default_param("elu") == 1.0
  assert activations.default_param("relu") == 0.0
  assert activations.default_param("gelu") == 0.0


def test_param_varies_per_member_under_jit_vmap():
  slopes = jnp.array([0.0, 0.1, 0.3], jnp.float32)
  alphas = jnp.array([0.5, 1.0, 2.0], jnp.float32)
  x = jnp.array([-2.0, 1.5], jnp.float32)
  leaky = jax.jit(jax.vmap(activations.get_activation("leaky_relu"), in_axes=(None, 0)))(x, slopes)
  elu = jax.jit(jax.vmap(activations.get_activation("elu"), in_axes=(None, 0)))(x, alphas)
  np.testing.assert_allclose(leaky, [[0.0, 1.5], [-0.2, 1.5], [-0.6, 1.5]], rtol=1e-6)
  np.testing.assert_allclose(elu[:, 0], np.asarray(alphas) * np.expm1(-2.0), rtol=1e-6)
  np.testing.assert_allclose(elu[:, 1], 1.5)


def test_elu_gradient_is_finite_for_large_inputs():
  # A naive where(x > 0, x, alpha * expm1(x)) gives NaN gradients where expm1 overflows.
  grad = jax.grad(lambda x: activations.get_activation("elu")(x, 1.0).sum())(
      jnp.array([200.0, -200.0, 0.5], jnp.float32))
  np.testing.assert_allclose(grad, [1.0, 0.0, 1.0], atol=1e-6)


def test_unknown_name_lists_known_ones():
  with pytest.raises(ValueError, match=r"activation: unknown 'swishy'; known: .*leaky_relu"):
    activations.get_activation("swishy")
  with pytest.raises(ValueError, match="activation: unknown"):
    activations.default_param("swishy")
