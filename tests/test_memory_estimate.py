"""The planner's memory estimate against XLA's own count of the program the sweep compiles.

`plan.chunk_bytes` (shapes only, no compile) must never be below `plan.compiled_bytes`
(arguments + outputs + temporaries of the real epoch program, lowered and compiled, not run):
a chunk the planner says fits must fit. And it must not be wasteful: at most MLP_FACTOR above
for MLPs (1.0-1.35x measured at CIFAR sizes, benchmarks/memory_calibration.py) and CONV_FACTOR
for convolutional models (the capture-based activation count is coarser there: 1.2-1.9x). The
shapes are tiny, so the test takes seconds; what they exercise is every term of the estimate:
packed widths and depths, several activations, every optimizer family alone and mixed, batch
norm, one slot ('map') and several ('vmap'), and a convolutional model's blocked programs.
"""

import jax
import jax.numpy as jnp
import pytest

from jaxnn import member, population
from sweeps import plan as plan_lib

MLP_FACTOR = 1.5
CONV_FACTOR = 2.0
SHAPE = (8, 8, 3)
NUM_TRAIN, NUM_VAL = 96, 40


def _data(shape):
  s = jax.ShapeDtypeStruct
  return population.DeviceData(
      s((NUM_TRAIN,) + shape, jnp.uint8), s((NUM_TRAIN,), jnp.int32),
      s((NUM_VAL,) + shape, jnp.uint8), s((NUM_VAL,), jnp.int32),
      s(shape[-1:], jnp.float32), s(shape[-1:], jnp.float32))


def _bucket(configs):
  common = dict(batch_size=32, eval_batch_size=16)
  resolved = [member.resolve({**common, **c}, num_classes=10, num_train=NUM_TRAIN)
              for c in configs]
  return member.merge_specs([s for s, _ in resolved])


MLPS = {   # name: (members' configs, slot counts); 1 slot runs 'map', more run 'vmap'
    "one layer, adam": ([dict(model="mlp", widths=[64], optimizer="adam")], (1, 4)),
    "packed depths 1 and 3, 3 activations": ([
        dict(model="mlp", widths=[16], activation="relu", optimizer="adam"),
        dict(model="mlp", widths=[64, 32, 128], activation=["tanh", "gelu", "relu"],
             optimizer="adam")], (4,)),
    "wide": ([dict(model="mlp", widths=[512, 512], optimizer="adam")], (2,)),
    "batch norm, momentum": ([dict(model="mlp", widths=[32, 32], batchnorm=True,
                                   optimizer="momentum")], (4,)),
    **{name: ([dict(model="mlp", widths=[128], optimizer=name)], (1,))   # 'map' holds more
       for name in ("sgd", "nesterov", "rmsprop", "rmsprop_centered", "adagrad", "adadelta")},
    "every family in one bucket": ([
        dict(model="mlp", widths=[128], optimizer=name)
        for name in ("sgd", "adam", "rmsprop", "rmsprop_centered", "adagrad", "adadelta")], (4,)),
}


def _check(spec, slots, factor, shape=SHAPE):
  compiled = plan_lib.compiled_bytes(spec, slots, _data(shape))
  estimated = plan_lib.chunk_bytes(spec, slots, shape, NUM_TRAIN, "uint8", NUM_VAL)
  assert compiled <= estimated <= factor * compiled, (spec.name(), slots, compiled, estimated)


@pytest.mark.parametrize("name,slots", [(n, k) for n in sorted(MLPS) for k in MLPS[n][1]])
def test_the_estimate_covers_the_compiled_mlp_epoch(name, slots):
  _check(_bucket(MLPS[name][0]), slots, MLP_FACTOR)


@pytest.mark.parametrize("name,slots", [("small_cnn", 2), ("lenet5", 1), ("lenet5", 2)])
def test_the_estimate_covers_the_compiled_convolutional_epoch(name, slots):
  """At the models' real sizes on MNIST-shaped inputs (the tiny variants' few channels make
  XLA:CPU's convolution workspace, not the layers' outputs, the largest buffer)."""
  shape = (28, 28, 1)
  config = dict(model=name, optimizer="adam")
  _check(_bucket([config]), slots, CONV_FACTOR, shape)


def test_the_packing_search_weighs_the_same_bytes_as_the_plan():
  """`mlp_slot_bytes` (the DP's analytic estimate, no tracing) agrees with `estimate`."""
  for name, (configs, _) in MLPS.items():
    spec = _bucket(configs)
    traced, _ = plan_lib.estimate(spec, SHAPE, NUM_TRAIN, "uint8", NUM_VAL)
    analytic = plan_lib.mlp_slot_bytes(spec, 8 * 8 * 3, 10, NUM_TRAIN, NUM_VAL)
    assert 0.9 * traced <= analytic <= 1.1 * traced, (name, traced, analytic)
