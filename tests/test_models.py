"""Models: walk the registry with tiny variants; pin parameter counts of the classic nets.

Each tiny model is compiled twice: its init, and one step program (an SGD step plus train- and
eval-mode logits) called a few times; the tests below read those outputs. Full-size models are
only shape-evaluated (jax.eval_shape): their parameters are counted without compiling anything.
Compile time is the cost here, and on this CPU XLA compiles random-number ops slowly (the
default partitionable threefry ~1.5 s per op; a tiny VGG-16 init took 19 s). So keys use the
'rbg' implementation, and the tiny models are built with kernel_init='zeros' and get their
random kernels from NumPy after `init` (`_init`); the initializers have their own tests.
The walk's programs are compiled at LLVM -O0 (`_compile`): a tiny VGG-16 step builds in 2.4 s
instead of 7.9 s here.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnn import models
from jaxnn.models import layers

NAMES = models.list_models()
BATCH = 4
SGD_STEPS, SGD_LR = 5, 0.1
BN_FREE = ("mlp", "small_cnn", "lenet5")  # families whose default has no BatchNorm
BATCHNORM_BY_DEFAULT = ("vgg11", "vgg16", "resnet18", "fastnet")


def _key(seed=0):
  return jax.random.key(seed, impl="rbg")


def _hp(dropout=0.0, act_param=0.0):
  return {"dropout": jnp.asarray(dropout, jnp.float32),
          "act_param": jnp.asarray(act_param, jnp.float32)}


def _compute_shape(name):
  """The input shape the registry walk computes with (the smallest the model supports)."""
  return min(models.input_shapes(name), key=lambda s: int(np.prod(s)))


def _compile(fn, *args):
  """jit(fn) compiled for `args` with the backend optimizer off (faster builds, same math)."""
  return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})


def _tiny(name, **kwargs):
  """The tiny variant of `name`, built for `_init` (kernels filled in afterwards)."""
  return models.get_model(name, **{**models.tiny_kwargs(name), "kernel_init": "zeros", **kwargs})


def _init(model, x, seed=0):
  """`model.init`, then He-normal kernels drawn by NumPy (no random ops to compile)."""
  init = lambda k: model.init({"params": k}, x, train=False, hparams=_hp())
  variables = _compile(init, _key())(_key())
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    if getattr(path[-1], "key", None) != "kernel":
      return leaf
    fan_in = int(np.prod(leaf.shape[:-1]))
    return jnp.asarray(rng.normal(size=leaf.shape) * np.sqrt(2.0 / fan_in), jnp.float32)

  return {**variables, "params": jax.tree_util.tree_map_with_path(fill, variables["params"])}


@functools.lru_cache(maxsize=None)
def _walk(name):
  """Eval and SGD-train the tiny `name` on a fixed random batch with one compiled step.

  The step is called from Python: a `lax.scan` over the steps compiled ~5x slower here.
  """
  model = _tiny(name)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(BATCH,) + _compute_shape(name)), jnp.float32)
  y = jnp.arange(BATCH) % 10
  variables = _init(model, x)
  optimizer = optax.sgd(SGD_LR)

  def loss_fn(params, state):
    logits, updates = model.apply({"params": params, **state}, x, train=True, hparams=_hp(),
                                  rngs={"dropout": _key(2)}, mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, (logits, {**state, **updates})

  def step_fn(params, state, opt_state):
    """One SGD step; also returns the train- and eval-mode logits before it."""
    (loss, (logits, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, state)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    eval_logits = model.apply({"params": params, **state}, x, train=False, hparams=_hp())
    return optax.apply_updates(params, updates), new_state, opt_state, loss, logits, eval_logits

  params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  carry = (params, state, optimizer.init(params))
  step = _compile(step_fn, *carry)
  losses, first = [], None
  for _ in range(SGD_STEPS + 1):  # losses[i] is the loss after i updates
    *carry, loss, train_logits, eval_logits = step(*carry)
    losses.append(loss)
    first = first or dict(train_logits=train_logits, eval_logits=eval_logits,
                          state_after_one=carry[1])
  return jax.tree_util.tree_map(np.asarray, dict(first, losses=jnp.stack(losses), state=state))


# --- the registry walk -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_for_every_declared_input(name):
  model = models.get_model(name, **models.tiny_kwargs(name))
  for shape in models.input_shapes(name):
    x = jax.ShapeDtypeStruct((3,) + shape, jnp.float32)
    variables = jax.eval_shape(
        lambda x: model.init({"params": _key(), "dropout": _key(1)}, x, train=False,
                             hparams=_hp()), x)
    logits, updates = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, hparams=_hp(0.5), rngs={"dropout": _key()},
                                 mutable=["batch_stats"]), variables, x)
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32, (name, shape)
    assert set(updates) == ({"batch_stats"} if "batch_stats" in variables else set())


@pytest.mark.parametrize("name", NAMES)
def test_outputs_are_finite(name):
  out = _walk(name)
  assert out["eval_logits"].shape == (BATCH, 10)
  assert np.isfinite(out["eval_logits"]).all() and np.isfinite(out["train_logits"]).all()
  assert np.isfinite(out["losses"]).all()


@pytest.mark.parametrize("name", NAMES)
def test_sgd_steps_lower_the_loss(name):
  out = _walk(name)
  # ln(10) = 2.30 is chance; a few steps on one fixed batch must move clearly below the start.
  assert out["losses"][-1] < 0.95 * out["losses"][0], out["losses"]


@pytest.mark.parametrize("name", BN_FREE)
def test_dropout_rate_zero_equals_eval(name):
  out = _walk(name)
  # Dropout at rate 0 is the identity bit for bit (see the Dropout test); here the two paths sit
  # in different fusions of one program, where XLA may round a conv differently in the last bit.
  np.testing.assert_allclose(out["train_logits"], out["eval_logits"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", BATCHNORM_BY_DEFAULT)
def test_batch_stats_are_updated_in_training(name):
  out = _walk(name)
  before = jax.tree_util.tree_leaves(out["state"]["batch_stats"])
  after = jax.tree_util.tree_leaves(out["state_after_one"]["batch_stats"])
  assert before and len(before) == len(after)
  assert all(not np.array_equal(b, a) for b, a in zip(before, after))
  # Momentum 0.9 from var = 1: one step moves the running variance to 0.9 + 0.1 * batch var.
  variances = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(
      out["state_after_one"]["batch_stats"]) if path[-1].key == "var"]
  assert variances and all((v > 0.9).all() for v in variances)


@pytest.mark.parametrize("name", BN_FREE)
def test_batchnorm_option_adds_batch_stats(name):
  model = models.get_model(name, batchnorm=True, **models.tiny_kwargs(name))
  x = jax.ShapeDtypeStruct((2,) + _compute_shape(name), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init({"params": _key()}, x, hparams=_hp()), x)
  assert "batch_stats" in variables
  _, updates = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, hparams=_hp(), rngs={"dropout": _key()},
                               mutable=["batch_stats"]), variables, x)
  assert jax.tree_util.tree_structure(updates["batch_stats"]) == \
      jax.tree_util.tree_structure(variables["batch_stats"])


def test_every_family_has_tiny_kwargs_and_image_shapes():
  for name in NAMES:
    assert models.tiny_kwargs(name) == dict(models.model_entry(name).tiny_kwargs)
    assert {(28, 28, 1), (32, 32, 3)} <= set(models.input_shapes(name)), name
  assert (2,) in models.input_shapes("mlp")


# --- parameter counts ------------------------------------------------------------------------


def _count(name, shape, num_classes=10, **kwargs):
  model = models.get_model(name, num_classes=num_classes, **kwargs)
  x = jax.ShapeDtypeStruct((1,) + shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init({"params": _key()}, x, hparams=_hp()), x)
  return models.param_count(variables["params"])


def _dense(n_in, n_out, bias=True):
  return n_in * n_out + (n_out if bias else 0)


def _conv(k, c_in, c_out, bias=True):
  return k * k * c_in * c_out + (c_out if bias else 0)


def test_lenet5_parameter_count():
  # conv 5x5x1x6 + 6, conv 5x5x6x16 + 16, fc 400->120, 120->84, 84->10.
  assert _count("lenet5", (28, 28, 1)) == 61_706 == (
      _conv(5, 1, 6) + _conv(5, 6, 16) + _dense(400, 120) + _dense(120, 84) + _dense(84, 10))
  assert _count("lenet5", (32, 32, 3)) == 61_706 + 5 * 5 * 2 * 6  # only conv1's input grows
  assert _count("lenet5", (32, 32, 1), first_padding="SAME") == 61_706 - 400 * 120 + 576 * 120


def test_small_cnn_parameter_count():
  # 28 -conv3-> 26 -pool-> 13 -conv3-> 11 -pool-> 5: 5*5*64 = 1600 features.
  assert _count("small_cnn", (28, 28, 1)) == 121_930 == (
      _conv(3, 1, 32) + _conv(3, 32, 64) + _dense(1600, 64) + _dense(64, 10))
  # 32 -> 30 -> 15 -> 13 -> 6: 6*6*64 = 2304 features.
  assert _count("small_cnn", (32, 32, 3)) == 167_562 == (
      _conv(3, 3, 32) + _conv(3, 32, 64) + _dense(2304, 64) + _dense(64, 10))


@pytest.mark.parametrize("widths,shape,classes", [
    ((256, 256), (28, 28, 1), 10), ((100,), (32, 32, 3), 100), ((), (2,), 2),
    ((16, 8, 4), (2,), 3)])
def test_mlp_parameter_count(widths, shape, classes):
  sizes = (int(np.prod(shape)),) + widths + (classes,)
  want = sum(_dense(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
  assert _count("mlp", shape, classes, widths=widths) == want
  # With BatchNorm the hidden Dense layers lose their bias and gain a scale and a shift.
  assert _count("mlp", shape, classes, widths=widths, batchnorm=True) == want + sum(widths)


def test_mlp_default_is_two_hidden_layers_of_256():
  assert _count("mlp", (28, 28, 1)) == _dense(784, 256) + _dense(256, 256) + _dense(256, 10)
  assert _count("mlp", (2,), depth=3, width=5) == _dense(2, 5) + 2 * _dense(5, 5) + _dense(5, 10)


def test_resnet18_parameter_count():
  # The count of the common PyTorch CIFAR ResNet-18 (bias-free convs, BatchNorm, linear head).
  assert _count("resnet18", (32, 32, 3)) == 11_173_962


def _vgg_count(layout, c_in, width=64, dense=(512,), classes=10):
  convs = [m * width for m in layout if m != "M"]
  total, prev = 0, c_in
  for c in convs:
    total += _conv(3, prev, c, bias=False) + 2 * c  # BatchNorm scale and shift
    prev = c
  sizes = (prev,) + tuple(dense) + (classes,)
  return total + sum(_dense(a, b) for a, b in zip(sizes[:-1], sizes[1:]))


def test_vgg_parameter_counts():
  from jaxnn.models import vgg
  assert _count("vgg11", (32, 32, 3)) == _vgg_count(vgg.VGG11_LAYOUT, 3) == 9_491_018
  assert _count("vgg16", (32, 32, 3)) == _vgg_count(vgg.VGG16_LAYOUT, 3) == 14_986_698
  # 28x28 also pools down to 1x1 (SAME pooling), so only the first conv differs.
  assert _count("vgg16", (28, 28, 1)) == _vgg_count(vgg.VGG16_LAYOUT, 1)


def test_fastnet_parameter_count():
  def conv_bn(c_in, c_out):
    return _conv(3, c_in, c_out, bias=False) + 2 * c_out
  want = conv_bn(3, 32)
  for c_in, c in ((32, 64), (64, 128), (128, 256)):
    want += conv_bn(c_in, c) + 2 * conv_bn(c, c)
  want += _dense(256, 10)
  assert _count("fastnet", (32, 32, 3)) == want == 1_941_546


def test_param_count_counts_arrays_and_shape_structs():
  tree = {"a": jnp.zeros((2, 3)), "b": {"c": jax.ShapeDtypeStruct((4,), jnp.float32)}}
  assert models.param_count(tree) == 10


# --- dropout ---------------------------------------------------------------------------------


def test_dropout_module_semantics_with_traced_rates():
  x = jnp.linspace(1.0, 2.0, 20_000).reshape(100, 200)
  rates = jnp.array([0.0, 0.25, 0.5, 1.0])

  def apply(rate):
    return layers.Dropout().apply({}, x, rate, True, rngs={"dropout": _key()})

  out = np.asarray(jax.jit(jax.vmap(apply))(rates))
  np.testing.assert_array_equal(out[0], x)  # rate 0: bit-for-bit identity
  np.testing.assert_array_equal(out[3], np.zeros_like(x))  # rate 1: all dropped
  for i, rate in ((1, 0.25), (2, 0.5)):
    kept = out[i] != 0
    assert kept.mean() == pytest.approx(1 - rate, abs=0.01)
    np.testing.assert_allclose(out[i][kept], np.asarray(x)[kept] / (1 - rate), rtol=1e-6)
  # Eval mode ignores the rate.
  np.testing.assert_array_equal(layers.Dropout().apply({}, x, 0.9, False), x)


def test_dropout_gradient_is_finite_at_rate_one():
  grad = jax.jit(jax.grad(lambda r: layers.Dropout().apply(
      {}, jnp.ones(8), r, True, rngs={"dropout": _key()}).sum()))(jnp.float32(1.0))
  assert np.isfinite(grad)


def test_per_site_dropout_vector():
  model = _tiny("mlp", widths=(16, 8), bias_init="constant")
  x = jnp.asarray(np.random.default_rng(2).normal(size=(5, 6)), jnp.float32)
  variables = _init(model, x)
  assert model.num_dropout_sites == 2 == models.dropout_sites("mlp", widths=(16, 8))

  def train_logits(rates):
    return model.apply(variables, x, train=True, hparams=_hp(rates), rngs={"dropout": _key(3)})

  rates = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.3, 0.6]])
  out = np.asarray(jax.jit(jax.vmap(train_logits))(rates))
  eval_logits = model.apply(variables, x, hparams=_hp())
  # (vmapped and unbatched matmuls may round differently: exact equality is checked elsewhere)
  np.testing.assert_allclose(out[0], eval_logits, rtol=1e-5, atol=1e-6)
  # Last hidden layer fully dropped: the logits are the output bias (ones, the unit constant).
  np.testing.assert_array_equal(out[1], np.ones((5, 10)))
  # First hidden layer dropped: every example sees the same input to layer 2.
  np.testing.assert_allclose(out[2], np.broadcast_to(out[2][0], out[2].shape), rtol=1e-6)
  assert not np.allclose(out[2][0], 1.0)
  assert not np.allclose(out[3], eval_logits)
  with pytest.raises(ValueError, match=r"hparams\['dropout'\]: expected shape \[\] or \[2\]"):
    train_logits(jnp.zeros(3))


@pytest.mark.parametrize("name,kwargs,sites", [
    ("mlp", {}, 2), ("mlp", {"depth": 0}, 0), ("mlp", {"widths": [4, 4, 4]}, 3),
    ("small_cnn", {}, 3), ("lenet5", {}, 2), ("vgg11", {}, 1),
    ("vgg16", {"dense_widths": (64, 64)}, 2), ("resnet18", {}, 1), ("fastnet", {}, 1)])
def test_dropout_sites(name, kwargs, sites):
  assert models.dropout_sites(name, **kwargs) == sites
  assert models.get_model(name, **kwargs).num_dropout_sites == sites


# --- a population of members in one program --------------------------------------------------


def test_members_with_different_hparams_share_one_program():
  model = _tiny("mlp", widths=(8,), activation="leaky_relu")
  x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 4)), jnp.float32)
  variables = _init(model, x)

  def member_logits(dropout, slope, key):
    return model.apply(variables, x, train=True, hparams=_hp(dropout, slope),
                       rngs={"dropout": key})

  population = jax.jit(jax.vmap(member_logits))
  # The default (threefry) keys: 'rbg' bits under vmap differ from the unbatched ones, so only
  # threefry makes a member equal its solo run (which is why production uses it).
  keys = jax.random.split(jax.random.key(5), 3)
  out = population(jnp.array([0.0, 0.0, 0.5]), jnp.array([0.0, 0.2, 0.2]), keys)
  population(jnp.array([0.1, 0.2, 0.3]), jnp.array([0.3, 0.1, 0.0]), keys)
  assert population._cache_size() == 1  # new values, same program
  solo = jax.jit(member_logits)
  for i, (rate, slope) in enumerate([(0.0, 0.0), (0.0, 0.2), (0.5, 0.2)]):
    np.testing.assert_allclose(out[i], solo(rate, slope, keys[i]), rtol=1e-5, atol=1e-6)
  assert not np.allclose(out[0], out[1])  # the slope reaches the activation
  assert not np.allclose(out[1], out[2])  # the dropout rate reaches the dropout sites


# --- registry errors and options -------------------------------------------------------------


def test_unknown_model_lists_known_ones():
  with pytest.raises(ValueError, match=r"model: unknown 'resnet1000'; known: .*fastnet.*lenet5"):
    models.get_model("resnet1000")
  with pytest.raises(ValueError, match="model: unknown"):
    models.tiny_kwargs("nope")


def test_unknown_option_lists_known_ones():
  with pytest.raises(ValueError, match=r"model 'lenet5': unknown option\(s\) depth; known: .*"):
    models.get_model("lenet5", depth=3)


def test_unknown_activation_or_initializer_fails_at_init():
  x = jnp.zeros((1, 2))
  with pytest.raises(ValueError, match="activation: unknown 'relu7'"):
    models.get_model("mlp", activation="relu7").init({"params": _key()}, x)
  with pytest.raises(ValueError, match="kernel_init: unknown 'kaiming'"):
    models.get_model("mlp", kernel_init="kaiming").init({"params": _key()}, x)


@pytest.mark.parametrize("kwargs,message", [
    ({"widths": [4, 4], "depth": 3}, "depth=3 disagrees"),
    ({"widths": [4], "width": 4}, "either `widths` or `width`")])
def test_mlp_contradictory_sizes(kwargs, message):
  with pytest.raises(ValueError, match=message):
    models.get_model("mlp", **kwargs).init({"params": _key()}, jnp.zeros((1, 2)))


def test_options_include_the_shared_ones():
  for name in NAMES:
    options = set(models.model_entry(name).options())
    assert {"num_classes", "activation", "kernel_init", "bias_init", "batchnorm",
            "dtype"} <= options, name


@pytest.mark.parametrize("shape, padding", [((2, 6, 6, 3), "VALID"), ((2, 7, 5, 3), "VALID"),
                                            ((2, 7, 5, 3), "SAME"), ((7, 7, 2), "SAME")])
def test_max_pool_matches_flax_values_and_gradients(shape, padding):
  # layers.max_pool replaces nn.max_pool (whose select_and_scatter gradient is slow on XLA:CPU):
  # outputs equal, and so are gradients where no window holds a tie (distinct random values).
  import flax.linen as nn
  x = jnp.asarray(np.random.default_rng(0).permutation(np.prod(shape)).reshape(shape),
                  jnp.float32)
  weights = jnp.asarray(np.random.default_rng(1).normal(size=nn.max_pool(
      x, (2, 2), strides=(2, 2), padding=padding).shape), jnp.float32)
  ours = lambda x: layers.max_pool(x, padding)  # noqa: E731
  theirs = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding=padding)  # noqa: E731
  np.testing.assert_array_equal(ours(x), theirs(x))
  grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * weights))(x)  # noqa: E731
  np.testing.assert_array_equal(grad(ours), grad(theirs))


def test_max_pool_refuses_unknown_padding():
  with pytest.raises(ValueError, match="VALID, SAME"):
    layers.max_pool(jnp.zeros((1, 4, 4, 1)), "FULL")
