"""jaxnn: the library a notebook imports: models, optimizers, data, population training.

Threefry keys are made non-partitionable: on the CPU, XLA compiles the partitionable variant of
every random op several times slower (measured about 7x on a small benchmark: a tiny VGG-16 init
took 19 s to compile), and compile time is what a sweep of many small buckets pays most. Member
randomness stays a pure function of (seed, member_id), inside vmap or alone.
"""

import jax

jax.config.update("jax_threefry_partitionable", False)
