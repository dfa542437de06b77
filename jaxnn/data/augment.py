"""On-device augmentation: random crop with padding, horizontal flip, cutout.

Runs inside the compiled training step on float32 batches, so no host work and no extra copy of
the data per member. The configuration (padding, mode, flags, cutout size) changes shapes or the
program, so it is static Python; only the key is traced. Each transform draws its random numbers
for the whole batch at once, one draw per example (an offset pair, a coin, a centre), from its
own subkey of `key`: vectorized draws compile and run much faster than a key split per example,
and under `vmap` over member keys every member still sees its own augmentations. With every
option off, `augment` returns its input unchanged.

Padding happens on whatever the caller passes: on normalized images 'constant' pads with 0, the
training-set mean colour; on [0, 1] images, with black.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PAD_MODES = ("reflect", "constant")


def _check_config(images, crop_padding: int, pad_mode: str, cutout: int) -> None:
  if images.ndim != 4:
    raise ValueError(f"augment: images must be [B, H, W, C], got shape {images.shape}")
  if pad_mode not in PAD_MODES:
    raise ValueError(f"augment: unknown pad_mode={pad_mode!r}; known: {', '.join(PAD_MODES)}")
  height, width = images.shape[1:3]
  if crop_padding < 0:
    raise ValueError(f"augment: crop_padding={crop_padding} must be >= 0")
  if pad_mode == "reflect" and crop_padding >= min(height, width):
    raise ValueError(f"augment: reflect padding {crop_padding} needs images larger than "
                     f"{crop_padding}, got {height}x{width}")
  if cutout < 0:
    raise ValueError(f"augment: cutout={cutout} must be >= 0")


def random_crop(key, images, padding: int, pad_mode: str = "reflect"):
  """Pads each [H, W, C] image by `padding` per side and crops an H x W window at a random offset.

  Args:
    key: PRNG key; one offset pair per example is drawn from it.
    images: [B, H, W, C].
    padding: pixels added on each side (static).
    pad_mode: 'reflect' or 'constant' (zeros).

  Returns:
    [B, H, W, C].
  """
  batch, height, width, channels = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
                   mode=pad_mode)
  offsets = jax.random.randint(key, (batch, 2), 0, 2 * padding + 1)
  crop = lambda image, o: jax.lax.dynamic_slice(image, (o[0], o[1], 0),  # noqa: E731
                                                (height, width, channels))
  return jax.vmap(crop)(padded, offsets)


def random_flip(key, images):
  """Mirrors each [H, W, C] image left-right with probability 1/2 (one coin per example)."""
  coins = jax.random.bernoulli(key, 0.5, (images.shape[0],))
  return jnp.where(coins[:, None, None, None], images[:, :, ::-1, :], images)


def random_cutout(key, images, size: int):
  """Zeroes a size x size square centred uniformly in each image (clipped at the edges).

  As in DeVries & Taylor (2017): the centre may lie anywhere, so near the border only part of the
  square falls inside the image.
  """
  batch, height, width, _ = images.shape
  centres = jax.random.randint(key, (batch, 2), 0, jnp.array([height, width]))
  top = (centres[:, 0] - size // 2)[:, None, None]
  left = (centres[:, 1] - size // 2)[:, None, None]
  rows = jnp.arange(height)[None, :, None]
  cols = jnp.arange(width)[None, None, :]
  inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
  return jnp.where(inside[..., None], jnp.zeros((), images.dtype), images)


def augment(key, images, *, crop_padding: int = 0, pad_mode: str = "reflect",
            flip: bool = False, cutout: int = 0):
  """Augments a batch, one independent random draw per example and transform.

  Args:
    key: a PRNG key (per member when vmapped over members).
    images: float [B, H, W, C].
    crop_padding: pad each side by this many pixels, then crop back to H x W at a random
      offset (0: no crop).
    pad_mode: 'reflect' (mirror without repeating the edge) or 'constant' (zeros).
    flip: mirror left-right with probability 1/2.
    cutout: side of the zeroed square (0: no cutout).

  Returns:
    An array of the same shape and dtype.
  """
  images = jnp.asarray(images)
  _check_config(images, crop_padding, pad_mode, cutout)
  if crop_padding == 0 and not flip and cutout == 0:
    return images
  crop_key, flip_key, cutout_key = jax.random.split(key, 3)
  if crop_padding:
    images = random_crop(crop_key, images, crop_padding, pad_mode)
  if flip:
    images = random_flip(flip_key, images)
  if cutout:
    images = random_cutout(cutout_key, images, cutout)
  return images
