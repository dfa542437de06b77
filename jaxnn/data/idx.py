"""Reader for the IDX format of MNIST, Fashion-MNIST and KMNIST (gzipped or not).

IDX: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions, one big-endian
uint32 per dimension, then the values row-major, big-endian. Every check names the file, so a
truncated download reads as "this file is short", not as a reshape error deep in numpy.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from jaxnn.data.containers import RawData
from jaxnn.data.errors import DataFormatError

# Type code -> big-endian numpy dtype, from the format's definition.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# The official file names, per split; `.gz` optional.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path) -> bytes:
  """Contents of `path`, gunzipped when it starts with the gzip magic.

  Raises:
    DataFormatError: the gzip stream is corrupt or truncated.
  """
  data = Path(path).read_bytes()
  if data[:2] != GZIP_MAGIC:
    return data
  try:
    return gzip.decompress(data)
  except (OSError, EOFError, zlib.error) as e:
    raise DataFormatError(f"{path}: corrupt or truncated gzip file ({e})") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
  """Decodes IDX bytes into an array in native byte order.

  Args:
    data: the (uncompressed) file contents.
    name: file name for error messages.

  Returns:
    The array with the dimensions the header declares.

  Raises:
    DataFormatError: bad magic, unknown type code, or a size that disagrees with the header.
  """
  if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_DTYPES:
    raise DataFormatError(f"{name}: not an IDX file (magic {data[:4].hex() or 'empty'}; "
                          "expected 0000 08..0e then the number of dimensions)")
  dtype = np.dtype(IDX_DTYPES[data[2]])
  ndim = data[3]
  header = 4 + 4 * ndim
  if len(data) < header:
    raise DataFormatError(f"{name}: truncated IDX header ({len(data)} bytes, need {header})")
  dims = struct.unpack(f">{ndim}I", data[4:header])
  expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
  got = len(data) - header
  if got != expected:
    raise DataFormatError(f"{name}: IDX header promises shape {dims} ({expected} bytes of data) "
                          f"but the file holds {got} bytes")
  return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: Path) -> np.ndarray:
  """Reads one IDX file (gzipped or not). See `parse_idx`."""
  return parse_idx(read_bytes(path), str(path))


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
  """Reads an images file and its labels file.

  Returns:
    (images uint8 [N, H, W, 1], labels int32 [N]).

  Raises:
    DataFormatError: wrong ranks, dtype or counts that disagree; the message names the file.
  """
  images = read_idx(images_path)
  labels = read_idx(labels_path)
  if images.ndim != 3 or images.dtype != np.uint8:
    raise DataFormatError(f"{images_path}: expected uint8 images [N, H, W], got "
                          f"{images.dtype} {images.shape}")
  if labels.ndim != 1:
    raise DataFormatError(f"{labels_path}: expected labels [N], got shape {labels.shape}")
  if len(labels) != len(images):
    raise DataFormatError(f"{labels_path}: {len(labels)} labels for {len(images)} images in "
                          f"{images_path}")
  return images[..., None], labels.astype(np.int32)


def missing_idx_files(folder: Path) -> list[str]:
  """Official file names (without .gz) absent from `folder`, gzipped or not."""
  return [stem for names in IDX_FILES.values() for stem in names
          if not ((folder / f"{stem}.gz").is_file() or (folder / stem).is_file())]


def find_idx_files(folder: Path) -> dict[str, tuple[Path, Path]] | None:
  """The four official files in `folder` (each `name.gz` or `name`); None if any is missing."""
  found = {}
  for split, names in IDX_FILES.items():
    paths = []
    for stem in names:
      for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
          paths.append(candidate)
          break
      else:
        return None
    found[split] = tuple(paths)
  return found


def load_idx_folder(folder: Path, class_names: tuple[str, ...]) -> RawData:
  """Reads an MNIST-style folder (the four official files).

  Args:
    folder: folder holding the files.
    class_names: names of the label values.

  Returns:
    RawData with uint8 [N, 28, 28, 1] images.
  """
  files = find_idx_files(folder)
  if files is None:
    raise DataFormatError(f"{folder}: missing IDX files; expected "
                          + ", ".join(f"{s}[.gz]" for names in IDX_FILES.values() for s in names))
  train_x, train_y = read_idx_pair(*files["train"])
  test_x, test_y = read_idx_pair(*files["test"])
  if train_x.shape[1:] != test_x.shape[1:]:
    raise DataFormatError(f"{files['test'][0]}: images {test_x.shape[1:]} differ from the "
                          f"training images {train_x.shape[1:]}")
  return RawData(train_x, train_y, test_x, test_y, tuple(class_names),
                 source=f"IDX files in {folder}")
