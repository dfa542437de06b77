"""Initializers: the statistics of each unit initializer against its formula, and `rescale`.

Keys use the 'rbg' PRNG implementation: the statistics do not depend on the bit generator, and
on this CPU XLA compiles the default (partitionable threefry) random ops several times slower.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import initializers
from jaxnn.models import get_model

FAN_IN, FAN_OUT = 1000, 500  # a [1000, 500] Dense kernel: 500k samples, ~0.3% error on a variance
CONV_SHAPE = (5, 5, 64, 128)  # fan_in = 5*5*64 = 1600, fan_out = 5*5*128 = 3200
# Flax/Keras truncate the unit normal at +-2 and divide by its stddev there, 0.8796...
TRUNCATED_STD = 0.87962566103423978


ALIASES = {"xavier_uniform": "glorot_uniform", "xavier_normal": "glorot_normal"}


def _key(seed=0):
  return jax.random.key(seed, impl="rbg")


@functools.lru_cache(maxsize=None)
def _all_samples():
  """One compiled program draws every kernel initializer (each compile costs ~0.5 s here).

  An alias draws with the same key as the name it stands for, so the two must be equal.
  """
  names = initializers.KERNEL_INITS
  canonical = sorted({ALIASES.get(n, n) for n in names})

  def draw(key):
    keys = dict(zip(canonical, jax.random.split(key, len(canonical))))
    dense = {n: initializers.get_kernel_init(n)(keys[ALIASES.get(n, n)], (FAN_IN, FAN_OUT))
             for n in names}
    conv = {n: initializers.get_kernel_init(n)(keys[n], CONV_SHAPE)
            for n in ("he_normal", "glorot_uniform")}
    return dense, conv

  dense, conv = jax.jit(draw)(_key())
  as_np = lambda d: {n: np.asarray(w, np.float64) for n, w in d.items()}
  return as_np(dense), as_np(conv)


def _sample(name, conv=False):
  return _all_samples()[1 if conv else 0][name]


VARIANCE_SCALING = {
    # name: (variance, uniform?) for a [fan_in, fan_out] kernel
    "glorot_uniform": (2.0 / (FAN_IN + FAN_OUT), True),
    "glorot_normal": (2.0 / (FAN_IN + FAN_OUT), False),
    "he_uniform": (2.0 / FAN_IN, True),
    "he_normal": (2.0 / FAN_IN, False),
    "lecun_uniform": (1.0 / FAN_IN, True),
    "lecun_normal": (1.0 / FAN_IN, False),
}


@pytest.mark.parametrize("name", sorted(VARIANCE_SCALING))
def test_variance_scaling_statistics(name):
  variance, uniform = VARIANCE_SCALING[name]
  w = _sample(name)
  assert abs(w.mean()) < 0.01 * math.sqrt(variance)
  assert w.var() == pytest.approx(variance, rel=0.02)
  limit = math.sqrt(3 * variance) if uniform else 2 * math.sqrt(variance) / TRUNCATED_STD
  assert np.abs(w).max() <= limit
  assert np.abs(w).max() > 0.99 * limit  # the support reaches its bound


def test_glorot_uniform_bound_is_keras_formula():
  w = _sample("glorot_uniform")
  bound = math.sqrt(6.0 / (FAN_IN + FAN_OUT))
  assert np.abs(w).max() <= bound
  assert w.min() < -0.99 * bound and w.max() > 0.99 * bound


def test_conv_kernel_fans_include_receptive_field():
  w = _sample("he_normal", conv=True)
  assert w.var() == pytest.approx(2.0 / 1600, rel=0.02)
  w = _sample("glorot_uniform", conv=True)
  assert np.abs(w).max() <= math.sqrt(6.0 / (1600 + 3200))
  assert w.var() == pytest.approx(2.0 / (1600 + 3200), rel=0.02)


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_aliases_are_the_same_initializer(alias):
  np.testing.assert_array_equal(_sample(alias), _sample(ALIASES[alias]))


def test_unit_normal_and_uniform():
  w = _sample("normal")
  assert w.mean() == pytest.approx(0.0, abs=0.01)
  assert w.std() == pytest.approx(1.0, rel=0.01)
  u = _sample("uniform")
  assert u.min() >= -1.0 and u.max() <= 1.0
  assert u.min() < -0.999 and u.max() > 0.999  # symmetric, unlike flax's U[0, scale)
  assert u.var() == pytest.approx(1.0 / 3.0, rel=0.01)


def test_zeros_and_constant():
  np.testing.assert_array_equal(_sample("zeros"), np.zeros((FAN_IN, FAN_OUT)))
  np.testing.assert_array_equal(_sample("constant"), np.ones((FAN_IN, FAN_OUT)))
  bias = initializers.get_bias_init("constant")(_key(), (5,), jnp.float32)
  np.testing.assert_array_equal(bias, np.ones(5))
  np.testing.assert_array_equal(initializers.get_bias_init("zeros")(_key(), (5,)), np.zeros(5))


def test_defaults():
  assert initializers.default_kernel_scale("he_normal") == 1.0
  assert initializers.default_kernel_scale("glorot_uniform") == 1.0
  assert initializers.default_kernel_scale("normal") == 0.05
  assert initializers.default_kernel_scale("uniform") == 0.05
  assert initializers.default_kernel_scale("constant") == 1.0
  assert initializers.default_bias_value("zeros") == 0.0
  assert initializers.default_bias_value("constant") == 0.1
  assert set(initializers.BIAS_INITS) == {"zeros", "constant"}


def test_default_normal_scale_gives_keras_stddev():
  w = initializers.rescale({"kernel": jnp.asarray(_sample("normal"), jnp.float32)},
                           initializers.default_kernel_scale("normal"), 0.0)["kernel"]
  assert float(jnp.std(w)) == pytest.approx(0.05, rel=0.01)


def test_unknown_names_list_known_ones():
  with pytest.raises(ValueError, match=r"kernel_init: unknown 'kaiming'; known: .*he_normal"):
    initializers.get_kernel_init("kaiming")
  with pytest.raises(ValueError, match=r"bias_init: unknown 'ones'; known: constant, zeros"):
    initializers.get_bias_init("ones")
  with pytest.raises(ValueError, match="kernel_init: unknown"):
    initializers.default_kernel_scale("kaiming")


def _tree():
  return {
      "Dense_0": {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.ones(3)},
      "Block": {"Conv_0": {"kernel": jnp.ones((1, 1, 2, 2))},  # conv without bias
                "BatchNorm_0": {"scale": jnp.ones(2), "bias": jnp.zeros(2)}},
      "LayerNorm_0": {"scale": jnp.full(3, 0.5), "bias": jnp.full(3, 0.25)},
  }


def test_rescale_touches_only_dense_and_conv():
  out = initializers.rescale(_tree(), 0.5, 0.1)
  np.testing.assert_allclose(out["Dense_0"]["kernel"], np.full((2, 3), 1.0))
  np.testing.assert_allclose(out["Dense_0"]["bias"], np.full(3, 0.1), rtol=1e-7)
  np.testing.assert_allclose(out["Block"]["Conv_0"]["kernel"], np.full((1, 1, 2, 2), 0.5))
  np.testing.assert_array_equal(out["Block"]["BatchNorm_0"]["scale"], np.ones(2))
  np.testing.assert_array_equal(out["Block"]["BatchNorm_0"]["bias"], np.zeros(2))
  np.testing.assert_array_equal(out["LayerNorm_0"]["bias"], np.full(3, 0.25))
  assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(_tree())


def test_rescale_per_member_under_jit_vmap():
  scales = jnp.array([0.5, 2.0, 3.0])
  values = jnp.array([0.1, 0.0, -1.0])
  out = jax.jit(jax.vmap(initializers.rescale, in_axes=(None, 0, 0)))(_tree(), scales, values)
  np.testing.assert_allclose(out["Dense_0"]["kernel"][:, 0, 0], 2.0 * np.asarray(scales))
  np.testing.assert_allclose(out["Dense_0"]["bias"][:, 0], np.asarray(values), rtol=1e-7)
  np.testing.assert_array_equal(out["Block"]["BatchNorm_0"]["scale"], np.ones((3, 2)))


def test_rescale_real_model_leaves_batchnorm_and_zero_biases():
  model = get_model("mlp", widths=(4,), batchnorm=True, kernel_init="constant",
                    bias_init="zeros")
  variables = jax.jit(lambda k: model.init({"params": k}, jnp.zeros((2, 3))))(_key())
  scaled = initializers.rescale(variables, 0.3, 7.0)  # the whole variables dict is fine too
  params = scaled["params"]
  np.testing.assert_allclose(params["hidden_0"]["kernel"], np.full((3, 4), 0.3), rtol=1e-7)
  np.testing.assert_allclose(params["head"]["kernel"], np.full((4, 10), 0.3), rtol=1e-7)
  np.testing.assert_array_equal(params["head"]["bias"], np.zeros(10))  # zeros stay zeros
  assert "bias" not in params["hidden_0"]  # the Dense before BatchNorm has none
  np.testing.assert_array_equal(params["bn_0"]["scale"], np.ones(4))
  np.testing.assert_array_equal(params["bn_0"]["bias"], np.zeros(4))
  np.testing.assert_array_equal(scaled["batch_stats"]["bn_0"]["var"], np.ones(4))


@pytest.mark.parametrize("name", sorted(VARIANCE_SCALING) + ["normal", "uniform"])
def test_packed_kernels_hashed_draws_have_the_unit_statistics_and_survive_padding(name):
  """`packed_kernel` (the MLP's kernels, drawn from `jaxnn.hashing`): the same statistics as
  the unit initializer, zeros outside the true block, the true block equal at any padding."""
  init = initializers.packed_kernel(name)
  key = jax.random.key(3)   # the production keys: the hash's key words come from them
  w = np.asarray(init(key, (FAN_IN, FAN_OUT), FAN_IN, FAN_OUT))
  padded = np.asarray(init(key, (FAN_IN + 24, FAN_OUT + 100), FAN_IN, FAN_OUT))
  np.testing.assert_array_equal(padded[:FAN_IN, :FAN_OUT], w)
  assert not padded[FAN_IN:].any() and not padded[:, FAN_OUT:].any()
  if name in VARIANCE_SCALING:
    variance, _ = VARIANCE_SCALING[name]
  else:
    variance = 1.0 if name == "normal" else 1.0 / 3.0   # N(0, 1), U(-1, 1)
  assert abs(w.mean()) < 0.01 * math.sqrt(variance)
  assert w.var() == pytest.approx(variance, rel=0.02)
  # Neighbours along either axis are uncorrelated (a hash, not a stream with short periods).
  for a, b in ((w[:, :-1], w[:, 1:]), (w[:-1], w[1:])):
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.01
  other = np.asarray(init(jax.random.key(4), (FAN_IN, FAN_OUT), FAN_IN, FAN_OUT))
  assert abs(np.corrcoef(w.ravel(), other.ravel())[0, 1]) < 0.01
