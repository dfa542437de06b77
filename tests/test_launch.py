"""Members spread over 8 devices, in one process or two, give the numbers of the unsharded run.

The device count of the CPU backend is fixed when JAX starts, so the sharded runs happen in
subprocesses (this file run as a script, with XLA_FLAGS=--xla_force_host_platform_device_count)
that print their results as JSON; the assertions are here. One subprocess has 8 devices; then two
processes of 4 devices each join through jax.distributed on localhost (the multi-host path:
arrays built per process from host copies, metrics gathered across processes).

Tolerance as in test_population: rtol 1e-5 (the sharded program runs one member per device, the
unsharded one 8 in a vmapped batch; XLA may order a reduction differently, which moves float32
results in the last bits).
"""

import json
import os
import socket
import subprocess
import sys
import time

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


def _run(count, epochs=2, compare=True):
  """Trains `count` members placed on a mesh of every device (and, with `compare`, unplaced);
  returns the metrics and where the arrays live."""
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec
  from jaxnn import member, population
  from launch import mesh as mesh_lib

  resolved = [member.resolve(c, num_classes=2) for c in _configs(count)]
  spec = resolved[0][0]
  assert all(s == spec for s, _ in resolved)
  hparams = jax.tree_util.tree_map(
      jnp.asarray, population.stack_rows([row for _, row in resolved], list(range(count))))
  data = population.device_data(_dataset())

  def train(hparams, state, data):
    history = []
    for _ in range(epochs):
      state, metrics = population.train_epoch(spec, state, hparams, data)
      history.append(metrics)
    history = multihost.to_host(history)   # gathers members held by other processes
    return state, {k: np.stack([m[k] for m in history], 1).tolist() for k in METRICS}

  mesh = mesh_lib.member_mesh()
  state = population.init(spec, hparams, data)
  placed_hparams, placed_state = mesh_lib.place_population(hparams, state, mesh)
  placed_data = mesh_lib.place_data(data, mesh)
  result = {"devices": jax.device_count(), "local_devices": jax.local_device_count(),
            "process": jax.process_index(), "primary": multihost.is_primary(),
            "mesh_axes": list(mesh.axis_names)}
  if compare:
    _, result["plain"] = train(hparams, state, data)
  state, result["sharded"] = train(placed_hparams, placed_state, placed_data)
  split = NamedSharding(mesh, PartitionSpec("members"))
  result.update(
      state_shards=_sharding_report(state), hparams_shards=_sharding_report(placed_hparams),
      data_shards=_sharding_report(placed_data),
      state_split_on_members=all(leaf.sharding.is_equivalent_to(split, leaf.ndim)
                                 for leaf in jax.tree_util.tree_leaves(state)))
  return result


# --------------------------------------------------------------------------- the tests

def _device_count_flag(count):
  return f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()


@pytest.fixture(scope="module")
def eight_devices():
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=_device_count_flag(DEVICES))
  done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_processes():
  """Two processes of 4 CPU devices each, joined by jax.distributed into one 8-device mesh."""
  with socket.socket() as free:
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
  procs = []
  for process_id in range(2):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=_device_count_flag(DEVICES // 2),
               JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(process_id))
    procs.append(subprocess.Popen([sys.executable, __file__, "--process"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  deadline = time.monotonic() + 300
  try:
    # A process that fails leaves the other waiting for it: stop both at the first failure.
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
      if any(p.poll() not in (None, 0) for p in procs):
        break
      time.sleep(0.1)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  results = []
  for proc in procs:
    out, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    results.append(json.loads(out.strip().splitlines()[-1]))
  return results


def test_members_sharded_over_devices_match_the_unsharded_population(eight_devices):
  result = eight_devices["even"]
  assert result["devices"] == DEVICES and result["mesh_axes"] == ["members"]
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
  assert result["state_split_on_members"]
  for devices, shard, shape in result["data_shards"]:
    assert devices == DEVICES and shard == shape   # the data: a whole copy on every device


def test_uneven_population_is_replicated_and_still_exact(eight_devices):
  # 6 members on 8 devices; they are the first 6 of the even run, and a member gives the same
  # numbers in any population, so the unsharded 8 are the reference.
  result = eight_devices["uneven"]
  for metric in METRICS:
    reference = np.asarray(eight_devices["even"]["plain"][metric])[:6]
    np.testing.assert_allclose(result["sharded"][metric], reference, rtol=RTOL, atol=ATOL,
                               err_msg=metric)
  assert not result["state_split_on_members"]
  for devices, shard, shape in result["state_shards"] + result["hparams_shards"]:
    assert devices == DEVICES and shard == shape and shape[0] == 6


# -------------------------------------------------------------------------- multihost

def test_two_processes_train_the_population_of_one(two_processes, eight_devices):
  plain = eight_devices["even"]["plain"]
  assert [r["process"] for r in two_processes] == [0, 1]
  assert [r["primary"] for r in two_processes] == [True, False]
  for result in two_processes:
    assert result["devices"] == DEVICES and result["local_devices"] == DEVICES // 2
    assert result["state_split_on_members"]
    for devices, shard, shape in result["state_shards"] + result["hparams_shards"]:
      assert devices == DEVICES // 2 and shard == [1] + shape[1:] and shape[0] == DEVICES
    # Every process reads every member's metrics, equal to the single-process population's.
    for metric in METRICS:
      np.testing.assert_allclose(result["sharded"][metric], plain[metric], rtol=RTOL,
                                 atol=ATOL, err_msg=metric)


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
  # Bounded waits: joining 60 s (ours) + 30 s (JAX's backstop), JAX's heartbeat 3 x 10 s.
  timeouts = dict(initialization_timeout=90, heartbeat_timeout_seconds=30)
  assert calls == [dict(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=2,
                        **timeouts),
                   dict(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3,
                        **timeouts)]


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
  if sys.argv[1:] == ["--process"]:   # one process of a job described by the environment
    assert multihost.initialize_from_env()
    print(json.dumps(_run(DEVICES, compare=False)))
  else:
    print(json.dumps({"even": _run(DEVICES), "uneven": _run(6, compare=False)}))
