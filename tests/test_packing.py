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

import functools

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
    dict(widths=[4], activation="gelu", dropout=0.3, seed=2, clip_norm=0.5, weight_decay=0.1,
         schedule="step", gamma=0.5, step_size=1),
    dict(widths=[12, 16, 8], activation="sigmoid", l2=1e-3, l1=1e-4, seed=3, schedule="cosine",
         horizon=2),
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
  assert bucket.schedule == ("constant", "cosine", "step")   # the kind varies per member
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


def test_members_of_several_optimizer_families_train_as_they_do_alone():
  """One program selects each member's optimizer family by an index (an array leaf): its
  updates and state evolve as in its own program. sgd and momentum are one family."""
  data = population.device_data(_toy_dataset(n_train=128, n_val=64, shape=(6,)))
  configs = [dict(c, optimizer=o, lr=lr) for c, o, lr in zip(
      CONFIGS + CONFIGS[:2], ["adam", "momentum", "rmsprop", "adagrad", "sgd"],
      [0.01, 0.05, 0.003, 0.05, 0.1])]
  bucket, resolved, rows = _packed(configs, batch_size=32, clip_norm=1.0)
  assert bucket.optimizer == ("adagrad", "adam", "momentum", "rmsprop", "sgd")
  assert [r["optimizer_index"] for r in rows] == [1.0, 2.0, 3.0, 0.0, 2.0]   # sgd = momentum
  _, packed = population.train(bucket, rows, list(range(5)), data, 2)
  for i, (spec, row) in enumerate(resolved):
    _, alone = population.train(spec, [row], [i], data, 2)
    for metric in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
      np.testing.assert_allclose(packed[metric][i], alone[metric][0], rtol=RTOL, atol=ATOL,
                                 err_msg=f"member {i} ({spec.optimizer}) {metric}")


def test_initial_weights_are_those_at_the_true_shape():
  x = jnp.ones((3, 7))
  small = models.get_model("mlp", widths=(5, 3), num_classes=2, kernel_init="glorot_normal")
  big = models.get_model("mlp", widths=(9, 6, 4), num_classes=2, kernel_init="glorot_normal",
                         activation=("relu", "tanh"), head_width=4)
  keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  hp = {"widths": jnp.array([5, 3, 0]), "act_index": jnp.array([0, 0, 0]), "dropout": 0.5}
  a = jax.jit(small.init)(keys, x)["params"]
  b = jax.jit(functools.partial(big.init, hparams=hp))(keys, x)["params"]
  np.testing.assert_array_equal(b["hidden_0"]["kernel"][:, :5], a["hidden_0"]["kernel"])
  np.testing.assert_array_equal(b["hidden_1"]["kernel"][:5, :3], a["hidden_1"]["kernel"])
  np.testing.assert_array_equal(b["head"]["kernel"][:3], a["head"]["kernel"])
  assert not np.any(b["hidden_2"]["kernel"]) and not np.any(b["head"]["kernel"][3:])
  rngs = {"dropout": jax.random.key(4)}
  apply = jax.jit(lambda model, params, hp: model.apply(
      {"params": params}, x, train=True, hparams=hp, rngs=rngs), static_argnums=0)
  out_a = apply(small, a, {"dropout": 0.5})
  out_b = apply(big, b, hp)
  np.testing.assert_allclose(out_a, out_b, rtol=1e-6, atol=1e-6)


def test_records_count_the_true_parameters():
  from sweeps import plan as plan_lib
  from sweeps.strategies.base import Trial
  trials = [Trial(i, dict(c, optimizer="adam", epochs=1), 1) for i, c in enumerate(CONFIGS)]
  plan = plan_lib.make_plan(trials, num_classes=2, input_shape=(6,), input_dtype="float32",
                            num_train=256, num_val=16, pack="auto")
  counts = {m.trial.member_id: m.param_count for b in plan.buckets for m in b.members}
  assert counts == {0: 6 * 16 + 16 + 16 * 8 + 8 + 8 * 2 + 2, 1: 6 * 4 + 4 + 4 * 2 + 2,
                    2: 6 * 12 + 12 + 12 * 16 + 16 + 16 * 8 + 8 + 8 * 2 + 2}


# ------------------------------------------------------------------- whole sweeps: auto == off

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from sweeps import space as space_lib  # noqa: E402
from sweeps.run import EarlyStopping, SweepLoop  # noqa: E402
from sweeps.strategies import make_strategy  # noqa: E402
from sweeps.strategies.base import Settings  # noqa: E402

SWEEPS = {   # strategy, its settings, early stopping patience
    "random": ("random", Settings(trials=4, epochs=2, seed=0, objective="val_loss"), 0),
    "hyperband": ("hyperband", Settings(trials=1, epochs=3, eta=3, min_epochs=1, seed=1,
                                        objective="val_loss"), 0),
    "pbt": ("pbt", Settings(batch=4, epochs=4, pbt_interval=2, pbt_fraction=0.25, seed=2,
                            objective="val_loss"), 0),
    "early_stopping": ("random", Settings(trials=4, epochs=3, seed=3, objective="val_loss"), 1),
}


def _sweep(name, lines, pack):
  strategy_name, config, patience = SWEEPS[name]
  strategy = make_strategy(strategy_name, space_lib.parse(lines), config)
  loop = SweepLoop(strategy, _toy_dataset(n_train=64, n_val=32, shape=(5,)), objective="val_loss",
                   early_stopping=EarlyStopping(patience=patience, min_delta=0.05), test_top=0,
                   pack=pack)
  runs = loop.run()
  return {r.trial.member_id: r for r in runs}, loop


@pytest.mark.parametrize("name", sorted(SWEEPS))
@settings(max_examples=1, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(widths=st.lists(st.sampled_from([3, 6]), min_size=1, max_size=2, unique=True),
       activations=st.lists(st.sampled_from(["relu", "tanh", "gelu"]), min_size=1, max_size=2,
                            unique=True),
       depth=st.integers(1, 2),
       optimizer=st.sampled_from(["choice(adam, momentum)", "adam", "momentum"]))
def test_packed_and_unpacked_sweeps_give_the_same_records(name, widths, activations, depth,
                                                          optimizer):
  if name == "pbt":   # pbt keeps static fields (the optimizer) fixed: one program by design
    optimizer = optimizer.replace("choice(adam, momentum)", "adam")
  lines = ["model=mlp", f"depth=int(1, {depth})",
           f"widths=per_layer(depth, choice({', '.join(map(str, widths))}))",
           f"activation=choice({', '.join(activations)})", f"optimizer={optimizer}",
           "lr=loguniform(0.01, 0.3)", "dropout=choice(0.0, 0.3)", "batch_size=16"]
  packed, loop = _sweep(name, lines, "auto")
  alone, loop_off = _sweep(name, lines, "off")
  assert sum(len(p.buckets) for p in loop.plans) <= sum(len(p.buckets) for p in loop_off.plans)
  assert packed.keys() == alone.keys()
  for member_id, run in packed.items():
    other = alone[member_id]
    assert (run.status, run.epochs_run, run.param_count) == (
        other.status, other.epochs_run, other.param_count), member_id
    assert run.trial.config == other.trial.config
    for metric in ("train_loss", "val_loss", "val_acc", "lr"):
      np.testing.assert_allclose(np.array(run.history[metric], float),
                                 np.array(other.history[metric], float), rtol=RTOL, atol=ATOL,
                                 err_msg=f"{name} member {member_id} {metric}")


@pytest.mark.parametrize("args,message", [
    (["--pack=sometimes"], "--pack=sometimes: value should be one of <auto|off>"),   # absl enum
    (["--space=l2=[0.001]"], "l2: got [0.001]; allowed: one number or a list of 2 numbers"),
    (["--space=activation=['relu', 'tanh', 'relu']"],
     "activation: got ['relu', 'tanh', 'relu']; allowed: one name or a list of 2 names"),
])
def test_bad_packing_input_is_one_line_exit_2_nothing_written(tmp_path, args, message):
  import subprocess
  import sys
  workdir = tmp_path / "w"
  result = subprocess.run(
      [sys.executable, "-m", "sweeps.toy", f"--workdir={workdir}", "--strategy=grid",
       "--space=model=mlp", "--space=widths=[8, 8]", *args],
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 2, result.stderr
  lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
  assert len(lines) == 1 and message in lines[0], result.stderr
  assert not workdir.exists()


def test_the_cost_model_keeps_a_narrow_member_out_of_a_wide_program_on_cpu():
  from sweeps import plan as plan_lib
  from sweeps.strategies.base import Trial
  trials = [Trial(0, dict(widths=[64], optimizer="adam", epochs=10), 10),
            Trial(1, dict(widths=[2048], optimizer="adam", epochs=10), 10),
            Trial(2, dict(widths=[2048], optimizer="sgd", epochs=10), 10)]
  common = dict(num_classes=10, input_shape=(32, 32, 3), input_dtype="uint8", num_train=40000,
                num_val=10000)
  cpu = plan_lib.make_plan(trials, pack="auto", backend="cpu", **common)
  assert len(cpu.buckets) == 3
  assert cpu.buckets[1].split_by == ("cost", "optimizer")
  assert cpu.buckets[2].split_by == ("optimizer",)
  assert "split by: " in cpu.summary() and "padding waste" in cpu.summary()
  gpu = plan_lib.make_plan(trials[:2], pack="auto", backend="gpu", **common)
  assert len(gpu.buckets) == 1 and gpu.buckets[0].waste > 0.4   # launch-bound: packing pays
  off = plan_lib.make_plan(trials[:2], pack="off", backend="gpu", **common)
  assert len(off.buckets) == 2


def test_a_checkpoint_restores_packed_buckets():
  import json
  strategy = make_strategy("random", space_lib.parse(
      ["model=mlp", "depth=int(1, 2)", "widths=per_layer(depth, choice(3, 6))",
       "activation=choice(relu, tanh)", "batch_size=16"]), Settings(trials=4, epochs=1, seed=0))
  dataset = _toy_dataset(n_train=32, n_val=16, shape=(5,))
  loop = SweepLoop(strategy, dataset, test_top=0, pack="auto")
  loop.start(strategy.ask())
  # A packed chunk: members of several true shapes in one program.
  assert any(len({tuple(loop.members[i].row["widths"]) for i in c.ids}) > 1 for c in loop.chunks)
  # Chunks initialize as they first train; the first one only, so the checkpoint holds an
  # initialized chunk and (where the plan has more) chunks still waiting, with no arrays.
  assert all(c.state is None for c in loop.chunks)
  loop.init_chunk(loop.chunks[0])
  meta, arrays = loop.state_dict()
  assert len(arrays["chunks"]) == 1 and meta["chunk_ready"][0]
  meta = json.loads(json.dumps(meta))
  fresh = SweepLoop(make_strategy("random", strategy.space, strategy.settings), dataset,
                    test_top=0, pack="auto")
  target = fresh.abstract_arrays(meta)
  assert (jax.tree_util.tree_structure(target["chunks"])
          == jax.tree_util.tree_structure(arrays["chunks"]))
  fresh.load_state_dict(meta, arrays)
  assert [c.spec for c in fresh.chunks] == [c.spec for c in loop.chunks]
  assert [c.state is None for c in fresh.chunks] == [c.state is None for c in loop.chunks]
  assert {i: r.row for i, r in fresh.members.items()} == {i: r.row for i, r in loop.members.items()}


@pytest.mark.parametrize("name,argv", [
    ("hyperband", ["--strategy=hyperband", "--epochs=9", "--eta=3", "--trials=2",
                   "--space=lr=loguniform(0.01, 0.3)", "--seed=1", "--train_subset=311"]),
    ("early_stopping", ["--strategy=grid", "--epochs=6", "--patience=1", "--monitor=val_loss",
                        "--space=lr=grid(0.0, 0.1)", "--space=l2=grid(0.0, 0.001)",
                        "--train_subset=312"]),
])
def test_the_dry_run_announces_what_hyperband_and_early_stopping_compile(tmp_path, name, argv):
  """Rungs and retirement shrink chunks; on this CPU a small MLP's chunk then keeps its
  compiled slot size (fillers cost less than a compile), so the sweep compiles exactly the one
  program per bucket its dry run announced (each test has its own --train_subset: the jit
  caches are process-wide and data shapes are part of a program)."""
  import io
  import json
  import os
  import re
  from sweeps import cli, records
  base = ["--dataset=circle", "--noprogress", "--test_top=0", "--space=model=mlp",
          "--space=depth=int(1, 2)", "--space=widths=per_layer(depth, choice(4, 8))",
          "--space=batch_size=50", "--val_subset=100", *argv]
  out = io.StringIO()
  cfg = cli.config_from_argv(["--dry_run", *base], "circle")
  cli.run_sweep(cfg, *cli.validate(cfg), out=out)
  announced = int(re.search(r"(\d+) compiled programs", out.getvalue()).group(1))
  workdir = str(tmp_path / name)
  cfg = cli.config_from_argv([f"--workdir={workdir}", *base], "circle")
  cli.run_sweep(cfg, *cli.validate(cfg), out=io.StringIO())
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  recs = records.read_records(workdir)
  assert any(r.status in ("pruned", "stopped") for r in recs)   # chunks did shrink
  assert summary["programs_compiled"] == summary["programs_announced"] == announced
  with open(os.path.join(workdir, "plan.json")) as f:
    assert announced == len(json.load(f)[0]["buckets"])   # one program per bucket
