"""`import jaxnn` leaves JAX's global settings alone; `jaxnn.configure()` (called by the entry
points) applies them. Run in fresh interpreters: this process is already configured."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str) -> str:
  env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                        capture_output=True, text=True).stdout.strip()


def test_import_flips_nothing_and_configure_applies_the_settings():
  out = _python(
      "import jax; before = jax.config.jax_threefry_partitionable\n"
      "import jaxnn, jaxnn.population, sweeps.run, sweeps.cli\n"
      "after_import = jax.config.jax_threefry_partitionable\n"
      "jaxnn.configure()\n"
      "print(before, after_import, jax.config.jax_threefry_partitionable)")
  before, after_import, configured = out.split()
  assert after_import == before
  assert configured == "False"


def test_configure_keeps_the_numbers_the_suite_pins():
  """The same draw in a configured fresh process and in this (conftest-configured) one."""
  import jax
  import numpy as np
  out = _python("import jax, jaxnn; jaxnn.configure()\n"
                "print(*jax.random.bits(jax.random.key(3), (4,)).tolist())")
  here = np.asarray(jax.random.bits(jax.random.key(3), (4,))).tolist()
  assert [int(v) for v in out.split()] == here
