"""Packed MLPs: members of different depths, widths and activations in one program.

Tolerance: a packed member's per-epoch numbers equal its solo run's at rtol=1e-4, atol=1e-5.
Both start from the same weights and draw the same dropout masks (per-unit draws, see
jaxnn.models.mlp); padded units are exact zeros. What differs is the arithmetic: XLA reduces a
matmul over the padded length (extra terms that are exactly 0) and over the vmapped batch, with
another blocking and summation order, which moves float32 results in the last bits (measured
~3e-8 on the losses after three epochs); training can amplify such differences a little, so the
bound leaves two orders of magnitude of room and still catches any real leak (a padded unit
that contributes changes the numbers at 1e-2).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import member, models, population
from test_population import _toy_dataset

RTOL, ATOL = 1e-4, 1e-5

CONFIGS = [
    dict(widths=[16, 8], activation=["relu", "tanh"], dropout=[0.2, 0.0], l2=[1e-3, 1e-2],
         seed=1),
    dict(widths=[4], activation="gelu", dropout=0.3, seed=2, clip_norm=0.5, weight_decay=0.1),
    dict(widths=[12, 16, 8], activation="sigmoid", l2=1e-3, l1=1e-4, seed=3),
]


def _packed(configs, **common):
  resolved = [member.resolve({**common, **c}, num_classes=2) for c in configs]
  bucket = member.merge_specs([s for s, _ in resolved])
  return bucket, resolved, [member.fit_row(s, r, bucket) for s, r in resolved]


@pytest.mark.parametrize("common", [
    dict(optimizer="adam", lr=0.01, batch_size=32),
    dict(optimizer="momentum", lr=0.05, batch_size=32, batchnorm=True, kernel_init="he_normal",
         bias_init="constant"),
])
def test_a_packed_member_trains_as_it_does_alone(common):
  data = population.device_data(_toy_dataset(n_train=128, n_val=64, shape=(6,)))
  bucket, resolved, rows = _packed(CONFIGS, **common)
  assert dict(bucket.model_kwargs)["widths"] == (16, 16, 8)
  state, packed = population.train(bucket, rows, [5, 6, 7], data, 2)
  for i in (0, 1):   # the 3-deep member's solo shape is nearly the bucket's: two suffice
    spec, row = resolved[i]
    _, alone = population.train(spec, [row], [5 + i], data, 2)
    for metric in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
      np.testing.assert_allclose(packed[metric][i], alone[metric][0], rtol=RTOL, atol=ATOL,
                                 err_msg=f"member {i} {metric}")
  assert len({round(float(packed["val_loss"][i, -1]), 5) for i in range(3)}) == 3
  # Padded units stayed exact zeros: weights, optimizer state (Adam's moments, momentum).
  one = jax.tree_util.tree_map(lambda x: np.asarray(x[1]), (state.params, state.opt_state))
  for path, leaf in jax.tree_util.tree_leaves_with_path(one):
    name = jax.tree_util.keystr(path)
    if "hidden_0']['kernel" in name:
      assert np.all(leaf[:, 4:] == 0), name       # member 1 is 4 wide
      assert np.any(leaf[:, :4] != 0) or "nu" in name or "mu" in name, name
    if "hidden_1']" in name or "hidden_2']" in name:
      assert np.all(leaf == 0), name              # member 1 has one layer


def test_initial_weights_are_those_at_the_true_shape():
  x = jnp.ones((3, 7))
  small = models.get_model("mlp", widths=(5, 3), num_classes=2, kernel_init="glorot_normal")
  big = models.get_model("mlp", widths=(9, 6, 4), num_classes=2, kernel_init="glorot_normal",
                         activation=("relu", "tanh"), head_width=4)
  keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  hp = {"widths": jnp.array([5, 3, 0]), "act_index": jnp.array([0, 0, 0]), "dropout": 0.5}
  a = small.init(keys, x)["params"]
  b = big.init(keys, x, hparams=hp)["params"]
  np.testing.assert_array_equal(b["hidden_0"]["kernel"][:, :5], a["hidden_0"]["kernel"])
  np.testing.assert_array_equal(b["hidden_1"]["kernel"][:5, :3], a["hidden_1"]["kernel"])
  np.testing.assert_array_equal(b["head"]["kernel"][:3], a["head"]["kernel"])
  assert not np.any(b["hidden_2"]["kernel"]) and not np.any(b["head"]["kernel"][3:])
  rngs = {"dropout": jax.random.key(4)}
  out_a = small.apply({"params": a}, x, train=True, hparams={"dropout": 0.5}, rngs=rngs)
  out_b = big.apply({"params": b}, x, train=True, hparams=hp, rngs=rngs)
  np.testing.assert_allclose(out_a, out_b, rtol=1e-6, atol=1e-6)


def test_records_count_the_true_parameters():
  from sweeps import plan as plan_lib
  from sweeps.strategies.base import Trial
  trials = [Trial(i, dict(c, optimizer="adam", epochs=1), 1) for i, c in enumerate(CONFIGS)]
  plan = plan_lib.make_plan(trials, num_classes=2, input_shape=(6,), input_dtype="float32",
                            num_train=64, num_val=16, pack="auto")
  counts = {m.trial.member_id: m.param_count for b in plan.buckets for m in b.members}
  assert counts == {0: 6 * 16 + 16 + 16 * 8 + 8 + 8 * 2 + 2, 1: 6 * 4 + 4 + 4 * 2 + 2,
                    2: 6 * 12 + 12 + 12 * 16 + 16 + 16 * 8 + 8 + 8 * 2 + 2}
