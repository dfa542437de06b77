"""The population program: invisible vectorization, no recompiles, isolated divergence.

Tolerance: members are compared with their solo runs at rtol=1e-5, atol=1e-6. The program is
the same jitted code; only the vmapped batch size differs, and XLA's CPU kernels may order a
reduction differently for different batch sizes, which moves float32 results in the last bits.
Across three epochs that stays far below 1e-5 relative.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import member, population
from jaxnn.data.containers import Dataset, Split

RTOL, ATOL = 1e-5, 1e-6


def _toy_dataset(n_train=192, n_val=64, shape=(2,), dtype=np.float32, classes=2, seed=0):
  rng = np.random.default_rng(seed)

  def split(n):
    if dtype == np.uint8:
      x = rng.integers(0, 256, size=(n,) + shape, dtype=np.uint8)
      y = (x.reshape(n, -1).astype(np.float32).mean(-1) > 127.5).astype(np.int32) % classes
    else:
      x = rng.normal(size=(n,) + shape).astype(np.float32)
      y = (np.sum(x ** 2, axis=-1) > 1.4).astype(np.int32)
    return Split(x, y)

  channels = shape[-1]
  return Dataset("synthetic", split(n_train), split(n_val), split(n_val), classes,
                 tuple(str(i) for i in range(classes)), np.zeros(channels, np.float32) + (0.5 if dtype == np.uint8 else 0.0),
                 np.ones(channels, np.float32) * (0.25 if dtype == np.uint8 else 1.0))


_COMMON = dict(model="mlp", widths=[16, 16], optimizer="momentum", batch_size=32, schedule="step")
MLP_CONFIGS = [   # one bucket: only numbers differ (gamma=1 is a constant rate)
    dict(_COMMON, lr=0.1, momentum=0.9, seed=0, gamma=1.0),
    dict(_COMMON, lr=0.03, momentum=0.5, seed=1, dropout=0.3, gamma=1.0),
    dict(_COMMON, lr=0.2, momentum=0.0, seed=2, l2=1e-3, gamma=0.5, step_size=1),
    dict(_COMMON, lr=0.05, momentum=0.8, seed=0, dropout=[0.1, 0.4], weight_decay=1e-2,
         label_smoothing=0.1, gamma=1.0),
]


def _bucket(configs, num_classes=2):
  resolved = [member.resolve(c, num_classes=num_classes) for c in configs]
  specs = {spec for spec, _ in resolved}
  assert len(specs) == 1, specs
  return specs.pop(), [row for _, row in resolved]


def _train(configs, ids, dataset, epochs=3, **kwargs):
  spec, rows = _bucket(configs, dataset.num_classes)
  data = population.device_data(dataset)
  _, history = population.train(spec, rows, ids, data, epochs, **kwargs)
  return history


# The ways an epoch can be driven: one program (a scan), blocks of unrolled steps from Python
# (XLA:CPU's convolution path; 6 steps per epoch here, so block 4 also exercises a shorter last
# block), members one after another ('map').
PATHS = [dict(block=None), dict(block=4), dict(block=4, vectorize="map")]


@pytest.mark.parametrize("path", PATHS, ids=["scan", "block", "block-map"])
def test_members_match_their_solo_runs_at_any_position(path):
  dataset = _toy_dataset()
  ids = [10, 11, 12, 13]
  together = _train(MLP_CONFIGS, ids, dataset, **path)
  order = [2, 0, 3, 1]
  shuffled = _train([MLP_CONFIGS[i] for i in order], [ids[i] for i in order], dataset, **path)
  for i, config in enumerate(MLP_CONFIGS):
    alone = _train([config], [ids[i]], dataset, **path)
    for metric in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
      np.testing.assert_allclose(together[metric][i], alone[metric][0], rtol=RTOL, atol=ATOL,
                                 err_msg=f"member {i} {metric}")
      np.testing.assert_allclose(shuffled[metric][order.index(i)], alone[metric][0], rtol=RTOL,
                                 atol=ATOL, err_msg=f"member {i} {metric} (shuffled)")
  # The members really are different runs, and training works.
  assert len({round(float(together["val_loss"][i, -1]), 6) for i in range(4)}) == 4
  assert together["train_loss"][0, -1] < together["train_loss"][0, 0]


def test_blocked_epochs_give_the_one_program_numbers():
  dataset = _toy_dataset()
  scan = _train(MLP_CONFIGS, [0, 1, 2, 3], dataset, block=None)
  for path in PATHS[1:]:
    blocked = _train(MLP_CONFIGS, [0, 1, 2, 3], dataset, **path)
    for metric in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
      np.testing.assert_allclose(blocked[metric], scan[metric], rtol=RTOL, atol=ATOL,
                                 err_msg=f"{path} {metric}")


def test_blocked_epochs_reuse_their_programs():
  dataset = _toy_dataset()
  data = population.device_data(dataset)
  spec, rows = _bucket(MLP_CONFIGS[:2])
  population.train(spec, rows, [0, 1], data, 1, block=4)
  before = dict(population.TRACE_COUNTS)
  spec2, rows2 = _bucket([dict(MLP_CONFIGS[0], lr=0.5, seed=7), dict(MLP_CONFIGS[1], lr=1e-4)])
  population.train(spec2, rows2, [5, 6], data, 2, block=4)
  assert dict(population.TRACE_COUNTS) == before


def test_randomness_comes_from_member_id_and_seed():
  dataset = _toy_dataset()
  config = dict(MLP_CONFIGS[1])
  a = _train([config, config], [0, 1], dataset)
  assert not np.allclose(a["train_loss"][0], a["train_loss"][1])   # other id, other draws
  b = _train([config], [1], dataset)
  np.testing.assert_allclose(a["train_loss"][1], b["train_loss"][0], rtol=RTOL, atol=ATOL)


def test_new_values_and_seeds_reuse_the_compiled_program():
  dataset = _toy_dataset()
  data = population.device_data(dataset)
  spec, rows = _bucket(MLP_CONFIGS[:2])
  population.train(spec, rows, [0, 1], data, 1)
  before = dict(population.TRACE_COUNTS)
  changed = [dict(MLP_CONFIGS[0], lr=0.5, momentum=0.1, seed=7, dropout=0.2),
             dict(MLP_CONFIGS[1], lr=1e-4, seed=9, l1=1e-4, weight_decay=0.3)]
  spec2, rows2 = _bucket(changed)
  assert spec2 == spec
  population.train(spec2, rows2, [5, 6], data, 2)
  assert dict(population.TRACE_COUNTS) == before


def test_a_diverging_member_does_not_change_the_others():
  dataset = _toy_dataset()
  bad = dict(MLP_CONFIGS[0], lr=1e4, seed=5)
  with_bad = _train(MLP_CONFIGS[:2] + [bad], [0, 1, 2], dataset)
  without = _train(MLP_CONFIGS[:2], [0, 1], dataset)
  assert with_bad["diverged"].tolist() == [False, False, True]
  for metric in ("train_loss", "val_loss", "val_acc"):
    np.testing.assert_allclose(with_bad[metric][:2], without[metric], rtol=RTOL, atol=ATOL)


def test_stopped_members_are_frozen():
  dataset = _toy_dataset()
  spec, rows = _bucket(MLP_CONFIGS[:2])
  data = population.device_data(dataset)
  hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows(rows, [0, 1]))
  state = population.init(spec, hparams, data)
  state, _ = population.train_epoch(spec, state, hparams, data)
  frozen = jax.device_get(jax.tree_util.tree_map(lambda x: x[0], state.params))
  state = population.set_active(state, jnp.array([False, True]))
  state, _ = population.train_epoch(spec, state, hparams, data)
  after = jax.device_get(jax.tree_util.tree_map(lambda x: x[0], state.params))
  jax.tree_util.tree_map(np.testing.assert_array_equal, frozen, after)
  assert state.step.tolist()[0] < state.step.tolist()[1]


@pytest.mark.parametrize("model,extra", [
    ("small_cnn", dict(features=(4, 8), dense_width=8, crop_padding=2, flip=True, cutout=4)),
    ("fastnet", dict(stem_width=4, widths=(4, 8, 8), flip=True)),
])
def test_cnn_members_with_augmentation_and_batchnorm_match_solo(model, extra):
  """On the CPU the default drives CNN epochs in blocks of unrolled steps; both vectorizations
  give each member its solo numbers, so the sweep's timed vmap/map choice cannot move results."""
  dataset = _toy_dataset(n_train=64, n_val=32, shape=(16, 16, 3), dtype=np.uint8)
  configs = [dict(model=model, optimizer="adam", lr=lr, seed=s, batch_size=16, **extra)
             for lr, s in ((1e-3, 0), (3e-3, 1))]
  spec, rows = _bucket(configs)
  data = population.device_data(dataset)
  _, alone = population.train(spec, rows[1:], [4], data, 2, vectorize="map")
  for vectorize in population.VECTORIZE:
    _, together = population.train(spec, rows, [3, 4], data, 2, vectorize=vectorize)
    for metric in ("train_loss", "val_loss", "val_acc"):
      np.testing.assert_allclose(together[metric][1], alone[metric][0], rtol=1e-4, atol=1e-5,
                                 err_msg=f"{vectorize} {metric}")
    assert np.all(np.isfinite(together["train_loss"]))


def test_bfloat16_computes_in_bf16_and_keeps_float32_parameters():
  dataset = _toy_dataset()
  spec, rows = _bucket(MLP_CONFIGS[:2])
  data = population.device_data(dataset)
  bf16 = population.with_dtype(spec, "bfloat16")
  assert population.with_dtype(spec, "float32") == spec and bf16 != spec
  state, low = population.train(bf16, rows, [0, 1], data, 2)
  _, full = population.train(spec, rows, [0, 1], data, 2)
  dtypes = {x.dtype for x in jax.tree_util.tree_leaves((state.params, state.opt_state))
            if jnp.issubdtype(x.dtype, jnp.floating)}
  assert dtypes == {jnp.dtype(jnp.float32)}
  # bf16 keeps ~3 significant digits: close to the float32 run, not equal to it.
  np.testing.assert_allclose(low["train_loss"], full["train_loss"], rtol=3e-2)
  assert not np.array_equal(low["train_loss"], full["train_loss"])


def test_evaluate_on_any_split():
  dataset = _toy_dataset()
  spec, rows = _bucket(MLP_CONFIGS[:2])
  data = population.device_data(dataset)
  state, history = population.train(spec, rows, [0, 1], data, 1)
  hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows(rows, [0, 1]))
  loss, acc = population.evaluate(spec, state, hparams, data.val_x, data.val_y, data.mean, data.std)
  np.testing.assert_allclose(loss, history["val_loss"][:, -1], rtol=1e-6)
  np.testing.assert_allclose(acc, history["val_acc"][:, -1], rtol=1e-6)


def test_compile_ahead_compiles_what_train_runs():
  """population.compile_ahead compiles a bucket's programs on a background thread; `train`
  then traces nothing new, and its numbers are those of a plain run."""
  dataset = _toy_dataset()
  data = population.device_data(dataset)
  configs = [dict(MLP_CONFIGS[0], widths=[5, 3]), dict(MLP_CONFIGS[1], widths=[5, 3])]
  spec, rows = _bucket(configs)
  hparams = jax.tree_util.tree_map(jnp.asarray, population.stack_rows(rows, [0, 1]))
  seconds = population.compile_ahead(spec, hparams, data).result()
  assert seconds > 0
  before = dict(population.TRACE_COUNTS)
  _, ahead = population.train(spec, rows, [0, 1], data, 2)
  assert dict(population.TRACE_COUNTS) == before
  plain = _train(configs, [0, 1], dataset, epochs=2)
  for metric in ("train_loss", "val_loss", "val_acc"):
    np.testing.assert_array_equal(ahead[metric], plain[metric])
