"""Members spread over 8 devices give the numbers of the unsharded population.

The device count of the CPU backend is fixed when JAX starts, so the 8-device runs happen in a
subprocess (this file run as a script, with XLA_FLAGS=--xla_force_host_platform_device_count=8)
that prints its results as JSON; the assertions are here. Tolerance as in test_population:
rtol 1e-5 (the sharded program runs one member per device, the unsharded one 8 in a vmapped
batch; XLA may order a reduction differently, which moves float32 results in the last bits).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from launch import multihost

RTOL, ATOL = 1e-5, 1e-6
DEVICES = 8
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


# ------------------------------------------------------------------ the subprocess (8 devices)

def _dataset():
  from jaxnn.data.containers import Dataset, Split
  rng = np.random.default_rng(0)

  def split(n):
    x = rng.normal(size=(n, 2)).astype(np.float32)
    return Split(x, (np.sum(x ** 2, axis=-1) > 1.4).astype(np.int32))

  return Dataset("synthetic", split(128), split(64), split(64), 2, ("0", "1"),
                 np.zeros(2, np.float32), np.ones(2, np.float32))


def _configs(count):
  common = dict(model="mlp", widths=[8], optimizer="momentum", batch_size=32)
  return [dict(common, lr=0.02 * (i + 1), momentum=0.1 * i, dropout=0.05 * (i % 3), seed=i % 2)
          for i in range(count)]


def _sharding_report(tree):
  import jax
  return sorted({(len({s.device for s in leaf.addressable_shards}),
                  tuple(leaf.addressable_shards[0].data.shape), tuple(leaf.shape))
                 for leaf in jax.tree_util.tree_leaves(tree)})


def _run(count, epochs=2):
  """Trains `count` members twice, sharded over the mesh and unsharded; returns what to check."""
  import jax
  import jax.numpy as jnp
  from jaxnn import member, population
  from launch import mesh as mesh_lib

  resolved = [member.resolve(c, num_classes=2) for c in _configs(count)]
  spec = resolved[0][0]
  assert all(s == spec for s, _ in resolved)
  hparams = jax.tree_util.tree_map(
      jnp.asarray, population.stack_rows([row for _, row in resolved], list(range(count))))
  data = population.device_data(_dataset())

  def train(hparams, data, place):
    state = population.init(spec, hparams, data)
    if place:
      hparams, state = place(hparams, state)
    history = []
    for _ in range(epochs):
      state, metrics = population.train_epoch(spec, state, hparams, data)
      history.append(metrics)
    return state, {k: np.stack([np.asarray(m[k]) for m in history], 1).tolist() for k in METRICS}

  _, plain = train(hparams, data, None)
  mesh = mesh_lib.member_mesh()
  placed_data = mesh_lib.place_data(data, mesh)
  placed_hparams, _ = mesh_lib.place_population(hparams, {}, mesh)
  state, sharded = train(placed_hparams, placed_data,
                         lambda h, s: mesh_lib.place_population(h, s, mesh))
  return {"devices": jax.device_count(), "mesh_axes": list(mesh.axis_names),
          "plain": plain, "sharded": sharded,
          "state_shards": _sharding_report(state), "hparams_shards": _sharding_report(placed_hparams),
          "data_shards": _sharding_report(placed_data),
          "state_spec": str(jax.tree_util.tree_leaves(state)[0].sharding.spec)}


# --------------------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def eight_devices():
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={DEVICES}").strip())
  done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


def test_members_sharded_over_devices_match_the_unsharded_population(eight_devices):
  result = eight_devices["even"]
  assert eight_devices["devices"] == DEVICES and eight_devices["mesh_axes"] == ["members"]
  for metric in METRICS:
    np.testing.assert_allclose(result["sharded"][metric], result["plain"][metric], rtol=RTOL,
                               atol=ATOL, err_msg=metric)
  # The members are different runs and they trained.
  val_loss = np.asarray(result["plain"]["val_loss"])
  assert len(set(np.round(val_loss[:, -1], 6))) == DEVICES
  assert np.asarray(result["plain"]["lr"])[:, 0].tolist() == pytest.approx(
      [0.02 * (i + 1) for i in range(DEVICES)])


def test_even_population_leaves_live_one_member_per_device(eight_devices):
  result = eight_devices["even"]
  # (devices holding the leaf, shard shape, global shape): every leaf of the state after two
  # epochs, and of the hyperparameters, is split 8 ways along members, one member per device.
  for kind in ("state_shards", "hparams_shards"):
    for devices, shard, shape in result[kind]:
      assert devices == DEVICES and shape[0] == DEVICES, (kind, devices, shard, shape)
      assert shard == [1] + shape[1:], (kind, shard, shape)
  assert result["state_spec"] == "PartitionSpec('members',)"
  for devices, shard, shape in result["data_shards"]:
    assert devices == DEVICES and shard == shape   # the data: a whole copy on every device


def test_uneven_population_is_replicated_and_still_exact(eight_devices):
  result = eight_devices["uneven"]   # 6 members on 8 devices
  for metric in METRICS:
    np.testing.assert_allclose(result["sharded"][metric], result["plain"][metric], rtol=RTOL,
                               atol=ATOL, err_msg=metric)
  for devices, shard, shape in result["state_shards"] + result["hparams_shards"]:
    assert devices == DEVICES and shard == shape and shape[0] == 6


# -------------------------------------------------------------------------- multihost

def test_initialize_is_a_no_op_without_a_job(monkeypatch):
  calls = []
  monkeypatch.setattr(multihost.jax.distributed, "initialize", lambda **kw: calls.append(kw))
  assert multihost.initialize_from_env(environ={}) is False
  assert multihost.initialize_from_env(environ={"JAX_NUM_PROCESSES": "1"}) is False
  assert calls == []
  assert multihost.is_primary()


def test_initialize_reads_the_environment_and_arguments_win(monkeypatch):
  calls = []
  monkeypatch.setattr(multihost.jax.distributed, "initialize", lambda **kw: calls.append(kw))
  monkeypatch.setattr(multihost.jax.distributed, "is_initialized", lambda: False)
  environ = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
             "JAX_PROCESS_ID": "2"}
  assert multihost.initialize_from_env(environ=environ) is True
  assert multihost.initialize_from_env(process_id=3, environ=environ) is True
  assert calls == [dict(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=2),
                   dict(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3)]


@pytest.mark.parametrize("environ,message", [
    ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_NUM_PROCESSES, JAX_PROCESS_ID not set"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "JAX_COORDINATOR_ADDRESS not set"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
     r"process id 2 not in \[0, 2\)"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
     "JAX_NUM_PROCESSES: 'two' is not an integer"),
])
def test_partial_or_bad_jobs_fail_in_one_line(environ, message, monkeypatch):
  monkeypatch.setattr(multihost.jax.distributed, "initialize",
                      lambda **kw: pytest.fail("must not initialize"))
  with pytest.raises(ValueError, match=message) as error:
    multihost.initialize_from_env(environ=environ)
  assert "\n" not in str(error.value)


if __name__ == "__main__":
  print(json.dumps({"even": _run(DEVICES), "uneven": _run(6),
                    "devices": _run.__globals__["_device_count"]() if False else
                    __import__("jax").device_count(),
                    "mesh_axes": ["members"]}))
