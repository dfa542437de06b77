"""Reader for the official CIFAR-10 / CIFAR-100 "python version" archives.

Each batch file is a pickled dict: b'data' uint8 [N, 3072], each row the red, then green, then
blue 32x32 plane (row-major), and b'labels' (CIFAR-10) or b'fine_labels' / b'coarse_labels'
(CIFAR-100). Label names are in batches.meta / meta. The archives are read from the extracted
folder or straight from the .tar.gz. Unpickling is restricted to numpy arrays and plain
containers, so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from jaxnn.data.containers import RawData
from jaxnn.data.errors import DataFormatError

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TAR = "cifar-10-python.tar.gz"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR10_META = "batches.meta"

CIFAR100_DIR = "cifar-100-python"
CIFAR100_TAR = "cifar-100-python.tar.gz"
CIFAR100_TRAIN = ("train",)
CIFAR100_TEST = ("test",)
CIFAR100_META = "meta"

LABEL_MODES = ("fine", "coarse")

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):

  def find_class(self, module, name):
    if (module, name) in _ALLOWED_GLOBALS:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def unpickle(data: bytes, name: str) -> dict:
  """Loads one CIFAR pickle (Python 2 or 3 protocol) into a dict with bytes keys.

  Raises:
    DataFormatError: not a pickle of a dict, or truncated; the message names the file.
  """
  try:
    obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
  except Exception as e:  # pickle raises many types on garbage input
    raise DataFormatError(f"{name}: not a readable CIFAR pickle "
                          f"({type(e).__name__}: {e})") from None
  if not isinstance(obj, dict):
    raise DataFormatError(f"{name}: expected a pickled dict, got {type(obj).__name__}")
  return obj


def decode_batch(batch: dict, label_key: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
  """Turns one batch dict into (uint8 [N, 32, 32, 3], int32 [N]).

  Raises:
    DataFormatError: keys missing, wrong row length, or label count mismatch.
  """
  if b"data" not in batch or label_key not in batch:
    raise DataFormatError(f"{name}: missing key b'data' or {label_key!r} "
                          f"(has {sorted(batch)})")
  data = np.asarray(batch[b"data"])
  labels = np.asarray(batch[label_key])
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
    raise DataFormatError(f"{name}: b'data' must be uint8 [N, 3072], got {data.dtype} "
                          f"{data.shape}")
  if labels.shape != (len(data),):
    raise DataFormatError(f"{name}: {labels.size} labels for {len(data)} images")
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels.astype(np.int32)


class _Archive:
  """Uniform access to batch files in a folder or inside a .tar.gz."""

  def __init__(self, path: Path, folder_name: str):
    self.path = Path(path)
    self.folder_name = folder_name
    self._members = None
    if self.path.is_file():
      try:
        with tarfile.open(self.path, "r:*") as tar:
          self._members = {Path(m.name).name: tar.extractfile(m).read()
                           for m in tar.getmembers()
                           if m.isfile() and Path(m.name).parent.name == folder_name}
      except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataFormatError(f"{self.path}: corrupt or truncated archive ({e})") from None

  def read(self, member: str) -> tuple[bytes, str]:
    if self._members is not None:
      name = f"{self.path}:{self.folder_name}/{member}"
      if member not in self._members:
        raise DataFormatError(f"{self.path}: archive has no {self.folder_name}/{member}")
      return self._members[member], name
    path = self.path / member
    if not path.is_file():
      raise DataFormatError(f"{path}: missing (expected in a CIFAR '{self.folder_name}' folder)")
    return path.read_bytes(), str(path)


def _read_batches(archive: _Archive, members, label_key: bytes):
  xs, ys = [], []
  for member in members:
    data, name = archive.read(member)
    x, y = decode_batch(unpickle(data, name), label_key, name)
    xs.append(x)
    ys.append(y)
  return np.concatenate(xs), np.concatenate(ys)


def _label_names(archive: _Archive, member: str, key: bytes) -> tuple[str, ...]:
  data, name = archive.read(member)
  meta = unpickle(data, name)
  if key not in meta:
    raise DataFormatError(f"{name}: missing key {key!r}")
  return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[key])


def load_cifar10(path: Path) -> RawData:
  """Reads CIFAR-10 from `cifar-10-batches-py/` or `cifar-10-python.tar.gz`.

  Args:
    path: the folder itself, or the .tar.gz.

  Returns:
    RawData: 50000 + 10000 uint8 [32, 32, 3] images for the official files.
  """
  archive = _Archive(path, CIFAR10_DIR)
  train_x, train_y = _read_batches(archive, CIFAR10_TRAIN, b"labels")
  test_x, test_y = _read_batches(archive, CIFAR10_TEST, b"labels")
  names = _label_names(archive, CIFAR10_META, b"label_names")
  return RawData(train_x, train_y, test_x, test_y, names, source=f"CIFAR-10 pickles in {path}")


def load_cifar100(path: Path, label_mode: str = "fine") -> RawData:
  """Reads CIFAR-100 from `cifar-100-python/` or `cifar-100-python.tar.gz`.

  Args:
    path: the folder itself, or the .tar.gz.
    label_mode: 'fine' (100 classes) or 'coarse' (20 superclasses).

  Returns:
    RawData: 50000 + 10000 uint8 [32, 32, 3] images for the official files.
  """
  if label_mode not in LABEL_MODES:
    raise ValueError(f"cifar100: unknown label_mode={label_mode!r}; known: "
                     f"{', '.join(LABEL_MODES)}")
  archive = _Archive(path, CIFAR100_DIR)
  key = f"{label_mode}_labels".encode()
  train_x, train_y = _read_batches(archive, CIFAR100_TRAIN, key)
  test_x, test_y = _read_batches(archive, CIFAR100_TEST, key)
  names = _label_names(archive, CIFAR100_META, f"{label_mode}_label_names".encode())
  return RawData(train_x, train_y, test_x, test_y, names,
                 source=f"CIFAR-100 pickles ({label_mode} labels) in {path}")
