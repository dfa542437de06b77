"""Random bits as a keyed hash of (key, unit, row): draws that do not depend on array shapes.

Packing pads an MLP's layers to a bucket's larger shape, and a member must draw the same
numbers for its real units whatever the padding (initial weights, dropout masks). A
counter-based hash of (unit, row) under the member's key gives exactly that, on both axes, in
the layout the arrays already have (no per-unit keys, no transposes).

Why not Threefry-2x32 (jax's own counter-based hash): XLA:CPU compiles each Threefry kernel in
~0.3 s (20 rounds inlined), one per layer and purpose, so a 5-layer MLP bucket paid ~1.8 s of
compile for its initial kernels and as much again for its dropout masks, and ~7% of each
training step for the masks (measured on the 2-core CPU). Here each entry is three rounds of
MurmurHash3's 32-bit finalizer (full avalanche: every input bit flips each output bit with
probability ~1/2) with the key's two words injected between rounds: ~12 integer operations,
compiled in a fraction of the time. The key's words come from `jax.random.bits`, so the
randomness still derives from the member's (seed, member_id) by fold_in alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_GOLDEN = np.uint32(0x9E3779B9)


def _fmix(h: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finalizer (a bijection of uint32)."""
  h = h ^ (h >> 16)
  h = h * np.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * np.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def bits(key: jax.Array, shape: tuple[int, int], unit_axis: int) -> jax.Array:
  """uint32 [rows, cols]: entry (i, j) a hash of (key, unit, row) alone, where the unit is the
  index along `unit_axis` and the row the index along the other axis."""
  k1, k2 = _words(key)
  units = jax.lax.broadcasted_iota(jnp.uint32, shape, unit_axis)
  rows = jax.lax.broadcasted_iota(jnp.uint32, shape, 1 - unit_axis)
  h = _fmix(units ^ k1)
  h = _fmix((h + rows * _GOLDEN) ^ k2)
  return _fmix(h + k1)


def _words(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Two uint32 words of `key`: a threefry key's own data (already a hash of the seed, the
  member id and every fold_in: no Threefry call to compile), other kinds through their bits."""
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and "threefry" in str(
      jax.random.key_impl(key)):
    data = jax.random.key_data(key)
    return data[0], data[1]
  words = jax.random.bits(key, (2,), jnp.uint32)
  return words[0], words[1]


def uniform01(bits_: jax.Array) -> jax.Array:
  """float32 in [0, 1) from the top 23 bits, as `jax.random.uniform` makes them."""
  return jax.lax.bitcast_convert_type((bits_ >> 9) | np.uint32(0x3F800000), jnp.float32) - 1.0
