"""The test process is an entry point: it applies the library's JAX settings once, as the
`sweeps` CLI, the benchmarks and the notebooks do (importing jaxnn changes nothing global)."""

import jaxnn

jaxnn.configure()
