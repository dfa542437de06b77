"""Reader for the Kuzushiji .npz releases: Kuzushiji-49 (k49-*) and KMNIST (kmnist-*).

Each split is two files, `<prefix>-<split>-imgs.npz` (uint8 [N, 28, 28] under 'arr_0') and
`<prefix>-<split>-labels.npz` (int [N]). Kuzushiji-49 exists only in this form (tfds does not
carry it); KMNIST also ships as IDX, which `idx.py` reads.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from jaxnn.data.containers import RawData
from jaxnn.data.errors import DataFormatError

# Class order of k49_classmap.csv: the 48 hiragana in gojuon order and the iteration mark.
K49_CLASS_NAMES = tuple("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほ"
                        "まみむめもやゆよらりるれろわゐゑをんゝ")
KMNIST_CLASS_NAMES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")


def npz_files(prefix: str) -> dict[str, tuple[str, str]]:
  """The official file names per split for `prefix` ('k49' or 'kmnist')."""
  return {split: (f"{prefix}-{split}-imgs.npz", f"{prefix}-{split}-labels.npz")
          for split in ("train", "test")}


def has_npz_files(folder: Path, prefix: str) -> bool:
  """Whether all four files of `prefix` are in `folder`."""
  return all((folder / n).is_file() for pair in npz_files(prefix).values() for n in pair)


def _read_array(path: Path) -> np.ndarray:
  try:
    with np.load(path, allow_pickle=False) as z:
      keys = list(z.keys())
      if len(keys) != 1:
        raise DataFormatError(f"{path}: expected one array (arr_0), found {keys}")
      return z[keys[0]]
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    if isinstance(e, DataFormatError):
      raise
    raise DataFormatError(f"{path}: corrupt or truncated .npz ({e})") from None


def load_kuzushiji_npz(folder: Path, prefix: str, class_names: tuple[str, ...]) -> RawData:
  """Reads the four .npz files of `prefix` in `folder`.

  Args:
    folder: folder holding the files.
    prefix: 'k49' or 'kmnist'.
    class_names: names of the label values.

  Returns:
    RawData with uint8 [N, 28, 28, 1] images and int32 labels.
  """
  arrays = {}
  for split, (images_name, labels_name) in npz_files(prefix).items():
    images = _read_array(folder / images_name)
    labels = _read_array(folder / labels_name)
    if images.dtype != np.uint8 or images.ndim != 3:
      raise DataFormatError(f"{folder / images_name}: expected uint8 [N, H, W], got "
                            f"{images.dtype} {images.shape}")
    if labels.shape != (len(images),):
      raise DataFormatError(f"{folder / labels_name}: expected {len(images)} labels, got shape "
                            f"{labels.shape}")
    arrays[split] = (images[..., None], labels.astype(np.int32))
  return RawData(*arrays["train"], *arrays["test"], tuple(class_names),
                 source=f"{prefix} .npz files in {folder}")
