"""Decoded arrays cached as .npz, so slow decodes (60000 JPEGs, tfds records) happen once.

Where: the `cache_dir` argument, else $JAXNN_CACHE_DIR, else `<data_dir>/.jaxnn_cache` when the
data folder is writable, else ~/.cache/jaxnn; `cache_dir=False` turns caching off. The file name
carries a hash of the source's identity (paths, sizes, modification times, reader version), so a
changed source is decoded afresh rather than served stale. Writes go to a temporary file in the
same folder and are renamed into place, so a crash or a concurrent writer never leaves a
half-written cache that a later run would trust.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from jaxnn.data.containers import RawData

# Bump when a reader's output changes, so older caches are ignored.
CACHE_FORMAT_VERSION = 1

_log = logging.getLogger(__name__)


def _writable_dir(path: Path) -> bool:
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError:
    return False
  return os.access(path, os.W_OK | os.X_OK)


def resolve_cache_dir(cache_dir, data_dir: Path | None) -> Path | None:
  """Picks the cache folder (see the module docstring for the order).

  Args:
    cache_dir: explicit folder, None for the default order, or False to disable caching.
    data_dir: the data folder the source reads from (its .jaxnn_cache is a candidate).

  Returns:
    A writable folder, or None when caching is off or nothing is writable.
  """
  if cache_dir is False:
    return None
  if cache_dir:
    path = Path(cache_dir).expanduser()
    if not _writable_dir(path):
      raise ValueError(f"cache_dir={str(path)!r} is not a writable folder")
    return path
  candidates = []
  if os.environ.get("JAXNN_CACHE_DIR"):
    candidates.append(Path(os.environ["JAXNN_CACHE_DIR"]).expanduser())
  if data_dir is not None and Path(data_dir).is_dir() and os.access(data_dir, os.W_OK):
    candidates.append(Path(data_dir) / ".jaxnn_cache")
  candidates.append(Path("~/.cache/jaxnn").expanduser())
  for path in candidates:
    if _writable_dir(path):
      return path
  return None


def file_identity(path: Path) -> str:
  """Identity of a file or folder for cache keys: absolute path, size and mtime of each file."""
  path = Path(path).resolve()
  if path.is_file():
    st = path.stat()
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"
  parts = [str(path)]
  for root, dirs, files in os.walk(path):
    dirs.sort()
    dirs[:] = [d for d in dirs if d != ".jaxnn_cache"]
    for name in sorted(files):
      st = os.stat(os.path.join(root, name))
      parts.append(f"{os.path.relpath(os.path.join(root, name), path)}:{st.st_size}:"
                   f"{st.st_mtime_ns}")
  return "\n".join(parts)


def cache_path(cache_dir: Path, name: str, identity: str) -> Path:
  """The .npz path for data set `name` whose source has identity `identity`."""
  digest = hashlib.sha256(f"v{CACHE_FORMAT_VERSION}\n{identity}".encode()).hexdigest()[:16]
  slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[-60:] or "data"
  return cache_dir / f"{slug}-{digest}.npz"


def save_raw(path: Path, raw: RawData) -> None:
  """Writes `raw` to `path` atomically (temporary file in the same folder, then rename)."""
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, train_x=raw.train_x, train_y=raw.train_y, test_x=raw.test_x,
               test_y=raw.test_y, class_names=np.array(raw.class_names, dtype=str),
               source=np.array(raw.source))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a cache may be shared
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def load_raw(path: Path) -> RawData:
  """Reads a cache file written by `save_raw`."""
  with np.load(path, allow_pickle=False) as z:
    return RawData(train_x=z["train_x"], train_y=z["train_y"], test_x=z["test_x"],
                   test_y=z["test_y"], class_names=tuple(str(c) for c in z["class_names"]),
                   source=str(z["source"]))


def cached(cache_dir: Path | None, name: str, identity: str,
           build: Callable[[], RawData]) -> RawData:
  """Returns the cached arrays for (`name`, `identity`), building and caching them on a miss.

  Args:
    cache_dir: folder from `resolve_cache_dir`; None means build without caching.
    name: data set name (readable part of the file name).
    identity: the source's identity string (see `file_identity`).
    build: decodes the source.

  Returns:
    The RawData, from the cache when present and readable.
  """
  if cache_dir is None:
    return build()
  path = cache_path(cache_dir, name, identity)
  if path.exists():
    try:
      return load_raw(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
      _log.warning("ignoring unreadable cache %s (%s); decoding again", path, e)
  raw = build()
  try:
    save_raw(path, raw)
  except OSError as e:
    _log.warning("could not write cache %s: %s", path, e)
  return raw
