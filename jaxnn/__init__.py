"""jaxnn: the library a notebook imports: models, optimizers, data, population training.

Importing it changes no global JAX setting: entry points (the `sweeps` CLI, benchmarks,
notebooks, the test suite's conftest) call `jaxnn.configure()` once, before any key is made.
"""

import jax

# What configure() sets, kept here so tests and reports can show it.
SETTINGS = {"jax_threefry_partitionable": False}


def configure() -> None:
  """Applies the JAX settings the numbers of this library were measured and pinned with.

  Threefry keys are made non-partitionable: on the CPU, XLA compiles the partitionable variant
  of every random op several times slower (measured about 7x on a small benchmark: a tiny
  VGG-16 init took 19 s to compile), and compile time is what a sweep of many small buckets pays
  most. Member randomness stays a pure function of (seed, member_id), inside vmap or alone.
  It is a process-wide setting (it changes every random draw), which is why a library import
  must not flip it: the program that owns the process does, by calling this.
  """
  for name, value in SETTINGS.items():
    jax.config.update(name, value)
