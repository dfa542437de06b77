"""On-device augmentation and normalization, checked against numpy on small batches."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import data

B, H, W, C = 64, 8, 10, 3


@pytest.fixture(scope="module")
def images():
  return np.random.default_rng(0).normal(size=(B, H, W, C)).astype(np.float32)


def _run(key, images, **config):
  # Eager: each primitive compiles once for the whole file; a jit per config would compile the
  # random-bit generator again each time (seconds on a 2-core machine).
  return np.asarray(data.augment(key, images, **config))


def test_all_off_is_identity(images):
  np.testing.assert_array_equal(_run(jax.random.key(0), images), images)


def test_flip_is_exactly_a_mirror(images):
  out = _run(jax.random.key(1), images, flip=True)
  flipped = np.array([np.array_equal(o, x[:, ::-1]) for o, x in zip(out, images)])
  kept = np.array([np.array_equal(o, x) for o, x in zip(out, images)])
  assert np.all(flipped ^ kept)  # each example is either mirrored or untouched
  assert 10 < flipped.sum() < 54  # about half of 64 (bounds hold with prob > 1 - 1e-6)


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_crop_is_a_shifted_window_of_the_padded_image(images, pad_mode):
  p = 2
  out = _run(jax.random.key(2), images, crop_padding=p, pad_mode=pad_mode)
  padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode=pad_mode)
  shifts = []
  for o, q in zip(out, padded):
    matches = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
               if np.array_equal(o, q[dy:dy + H, dx:dx + W])]
    assert len(matches) == 1
    shifts.append(matches[0])
  assert len(set(shifts)) > 10  # offsets vary across the 25 possible
  centred = [i for i, s in enumerate(shifts) if s == (p, p)]
  for i in centred:
    np.testing.assert_array_equal(out[i], images[i])


def test_cutout_zeroes_one_square(images):
  ones = np.ones_like(images)
  size = 4
  out = _run(jax.random.key(3), ones, cutout=size)
  full_squares = 0
  for o in out:
    zero = np.all(o == 0, axis=-1)
    rows, cols = np.nonzero(zero)
    assert len(rows) > 0
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert height <= size and width <= size and zero.sum() == height * width  # a rectangle
    assert np.all(o[~zero] == 1)
    full_squares += zero.sum() == size * size
  assert full_squares > 0


def test_deterministic_under_a_key_and_different_across_keys(images):
  config = dict(crop_padding=2, flip=True, cutout=3)
  a = _run(jax.random.key(4), images, **config)
  np.testing.assert_array_equal(a, _run(jax.random.key(4), images, **config))
  assert not np.array_equal(a, _run(jax.random.key(5), images, **config))


def test_members_under_jit_vmap_get_their_own_augmentations(images):
  keys = jax.random.split(jax.random.key(6), 4)
  config = dict(crop_padding=2, flip=True, cutout=3)
  augment = functools.partial(data.augment, **config)
  out = np.asarray(jax.jit(jax.vmap(augment, in_axes=(0, None)))(keys, images))
  assert out.shape == (4, B, H, W, C)
  for i in range(4):
    # A member inside the vmapped program sees exactly what it would see alone.
    np.testing.assert_array_equal(out[i], _run(keys[i], images, **config))
    for j in range(i):
      assert not np.array_equal(out[i], out[j])
  # Within one member, examples draw independently: identical inputs get different crops.
  same = np.repeat(images[:1], B, axis=0)
  per_example = _run(keys[0], same, **config)
  assert len({o.tobytes() for o in per_example}) > 10


def test_bad_configs_raise():
  x = jnp.zeros((2, 4, 4, 1))
  with pytest.raises(ValueError, match="pad_mode.*known: reflect, constant"):
    data.augment(jax.random.key(0), x, crop_padding=1, pad_mode="wrap")
  with pytest.raises(ValueError, match="reflect padding 4"):
    data.augment(jax.random.key(0), x, crop_padding=4)
  with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
    data.augment(jax.random.key(0), jnp.zeros((4, 4, 1)), flip=True)


def test_normalize_uint8_matches_formula_under_jit():
  x = np.arange(2 * 3 * 2 * 3, dtype=np.uint8).reshape(2, 3, 2, 3) * 7
  mean = np.array([0.1, 0.2, 0.3], np.float32)
  std = np.array([0.5, 0.25, 2.0], np.float32)
  got = jax.jit(data.normalize)(x, mean, std)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), (x / 255.0 - mean) / std, rtol=1e-6, atol=1e-6)
  floats = np.array([[1.0, 2.0]], np.float32)
  np.testing.assert_allclose(data.normalize(floats, np.array([1.0, 1.0]), np.array([2.0, 4.0])),
                             [[0.0, 0.25]])


def test_channel_stats_and_normalized_training_set():
  rng = np.random.default_rng(1)
  x = np.stack([rng.integers(0, 100, (50, 4, 4)), rng.integers(100, 256, (50, 4, 4)),
                np.full((50, 4, 4), 9)], -1).astype(np.uint8)
  mean, std = data.channel_stats(x)
  units = x.reshape(-1, 3) / 255.0
  np.testing.assert_allclose(mean, units.mean(0), rtol=1e-6)
  np.testing.assert_allclose(std[:2], units.std(0)[:2], rtol=1e-5)
  assert std[2] == 1.0  # constant channel: std replaced by 1
  z = np.asarray(data.normalize(x, mean, std)).reshape(-1, 3)
  np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(z.std(0)[:2], 1.0, rtol=1e-4)
  toy = rng.normal(3.0, 2.0, (1000, 2)).astype(np.float32)
  mean, std = data.channel_stats(toy)
  np.testing.assert_allclose(mean, toy.mean(0), rtol=1e-5)
  np.testing.assert_allclose(std, toy.std(0), rtol=1e-4)
