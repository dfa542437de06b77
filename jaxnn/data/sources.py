"""Where each named data set is looked for, in order, before falling back to tfds.

Offline files win over tfds: they are what clusters without internet and this CI have, and they
need no TensorFlow. For each set the search is a fixed list of folders under the data folder;
the first complete set of official files is read. A folder holding only part of them is an
error (a half-copied download), not a reason to look elsewhere. When nothing is found, tfds is
tried; if that cannot work either, one DataNotFoundError names every folder searched and the
files expected there.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from jaxnn.data import cache, cifar_pickle, idx, image_folder, kuzushiji, tfds_source, toy
from jaxnn.data.containers import RawData
from jaxnn.data.errors import DataFormatError, DataNotFoundError

CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                       "ship", "truck")
MNIST_CLASS_NAMES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                             "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_JPEG = "cifar10-jpeg"  # this project's image-folder copy of CIFAR-10

_IDX_EXPECTED = ", ".join(f"{stem}.gz" for names in idx.IDX_FILES.values() for stem in names)


@dataclasses.dataclass(frozen=True)
class SourceContext:
  """What every source gets from `load`.

  Attributes:
    data_dir: the resolved data folder.
    cache_dir: the `cache_dir` option (None: default order; False: off).
    download: whether tfds may download.
  """
  data_dir: Path
  cache_dir: object = None
  download: bool = True

  def cache_folder(self, near: Path | None = None) -> Path | None:
    """The cache folder for a source that reads from `near` (default: the data folder)."""
    return cache.resolve_cache_dir(self.cache_dir, self.data_dir if near is None else near)


def default_data_dir() -> Path:
  """$JAXNN_DATA_DIR, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  for var in ("JAXNN_DATA_DIR", "TFDS_DATA_DIR"):
    if os.environ.get(var):
      return Path(os.environ[var]).expanduser()
  return Path("~/tensorflow_datasets").expanduser()


def _describe(folder: Path) -> str:
  return str(folder) if folder.is_dir() else f"{folder} (missing)"


def _not_found(name: str, searched: list[Path], expected: str) -> str:
  folders = ", ".join(_describe(f) for f in dict.fromkeys(searched))
  return f"{name}: data not found; searched {folders} for {expected}"


def _search_idx(ctx: SourceContext, name: str, subfolders: tuple[str, ...],
                class_names: tuple[str, ...], npz_prefix: str | None = None):
  """Returns RawData from the first folder with the official files, or the folders searched."""
  searched = [ctx.data_dir / sub for sub in subfolders] + [ctx.data_dir]
  for folder in searched:
    if not folder.is_dir():
      continue
    missing = idx.missing_idx_files(folder)
    if not missing:
      return idx.load_idx_folder(folder, class_names), searched
    if npz_prefix and kuzushiji.has_npz_files(folder, npz_prefix):
      return kuzushiji.load_kuzushiji_npz(folder, npz_prefix, class_names), searched
    if len(missing) < 4 and folder != ctx.data_dir:
      raise DataFormatError(f"{folder}: incomplete {name} IDX files, missing "
                            + ", ".join(f"{m}[.gz]" for m in missing))
  return None, searched


def _idx_or_tfds(ctx: SourceContext, name: str, subfolders: tuple[str, ...],
                 class_names: tuple[str, ...], npz_prefix: str | None = None) -> RawData:
  raw, searched = _search_idx(ctx, name, subfolders, class_names, npz_prefix)
  if raw is not None:
    return raw
  expected = _IDX_EXPECTED + (f" (or {npz_prefix}-{{train,test}}-{{imgs,labels}}.npz)"
                              if npz_prefix else "")
  not_found = (_not_found(name, searched, expected)
               + f"; tfds '{name}' not prepared in {ctx.data_dir / name}")
  return tfds_source.load_tfds(name, ctx.data_dir, cache_dir=ctx.cache_folder(),
                               download=ctx.download, not_found=not_found,
                               needs_tensorflow=True, class_names=class_names)


def load_mnist(ctx: SourceContext) -> RawData:
  """MNIST: IDX files in <data_dir>/mnist, <data_dir>/MNIST/raw or <data_dir>; else tfds."""
  return _idx_or_tfds(ctx, "mnist", ("mnist", "MNIST/raw"), MNIST_CLASS_NAMES)


def load_fashion_mnist(ctx: SourceContext) -> RawData:
  """Fashion-MNIST: IDX files in <data_dir>/fashion-mnist (or fashion_mnist, FashionMNIST/raw)
  or <data_dir>; else tfds."""
  return _idx_or_tfds(ctx, "fashion_mnist", ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
                      FASHION_MNIST_CLASS_NAMES)


def load_kmnist(ctx: SourceContext) -> RawData:
  """KMNIST: IDX or kmnist-*.npz files in <data_dir>/kmnist (or KMNIST/raw) or <data_dir>; else
  tfds."""
  return _idx_or_tfds(ctx, "kmnist", ("kmnist", "KMNIST/raw"), kuzushiji.KMNIST_CLASS_NAMES,
                      npz_prefix="kmnist")


def load_kuzushiji49(ctx: SourceContext) -> RawData:
  """Kuzushiji-49: k49-*.npz in <data_dir>/kuzushiji49 (or k49, kuzushiji, kmnist) or <data_dir>.

  tfds does not carry this set, so there is no download fallback.
  """
  searched = [ctx.data_dir / sub for sub in ("kuzushiji49", "k49", "kuzushiji", "kmnist")]
  searched.append(ctx.data_dir)
  for folder in searched:
    if folder.is_dir() and kuzushiji.has_npz_files(folder, "k49"):
      return kuzushiji.load_kuzushiji_npz(folder, "k49", kuzushiji.K49_CLASS_NAMES)
  expected = ", ".join(n for pair in kuzushiji.npz_files("k49").values() for n in pair)
  raise DataNotFoundError(_not_found("kuzushiji49", searched, expected)
                          + " (tfds has no Kuzushiji-49: fetch the .npz release); pass data_dir= "
                          "or set JAXNN_DATA_DIR")


def load_cifar10(ctx: SourceContext) -> RawData:
  """CIFAR-10: cifar-10-batches-py/, cifar-10-python.tar.gz, or the image-folder copy
  cifar10-jpeg/ or cifar10-jpeg.tar.gz, in <data_dir>; else tfds."""
  d = ctx.data_dir
  for path in (d / cifar_pickle.CIFAR10_DIR, d / cifar_pickle.CIFAR10_TAR):
    if path.exists():
      return cifar_pickle.load_cifar10(path)
  for path in (d / CIFAR10_JPEG, d / f"{CIFAR10_JPEG}.tar.gz"):
    if path.exists():
      raw = _cached_folder(ctx, path, "cifar10")
      if raw.class_names != CIFAR10_CLASS_NAMES:
        raise DataFormatError(f"{path}: classes {', '.join(raw.class_names)} are not CIFAR-10's "
                              f"{', '.join(CIFAR10_CLASS_NAMES)}")
      return dataclasses.replace(raw, source=f"CIFAR-10 (JPEG copy), {raw.source}")
  expected = (f"{cifar_pickle.CIFAR10_DIR}/ (data_batch_1..5, test_batch, batches.meta), "
              f"{cifar_pickle.CIFAR10_TAR}, {CIFAR10_JPEG}.tar.gz or "
              f"{CIFAR10_JPEG}/{{train,test}}/<class>/*.jpg")
  not_found = (_not_found("cifar10", [d], expected)
               + f"; tfds 'cifar10' not prepared in {d / 'cifar10'}")
  return tfds_source.load_tfds("cifar10", d, cache_dir=ctx.cache_folder(), download=ctx.download,
                               not_found=not_found, needs_tensorflow=True,
                               class_names=CIFAR10_CLASS_NAMES)


def load_cifar100(ctx: SourceContext, label_mode: str = "fine") -> RawData:
  """CIFAR-100: cifar-100-python/ or cifar-100-python.tar.gz in <data_dir>; else tfds.

  Args:
    ctx: source context.
    label_mode: 'fine' (100 classes) or 'coarse' (20 superclasses).
  """
  if label_mode not in cifar_pickle.LABEL_MODES:
    raise ValueError(f"cifar100: unknown label_mode={label_mode!r}; known: "
                     f"{', '.join(cifar_pickle.LABEL_MODES)}")
  d = ctx.data_dir
  for path in (d / cifar_pickle.CIFAR100_DIR, d / cifar_pickle.CIFAR100_TAR):
    if path.exists():
      return cifar_pickle.load_cifar100(path, label_mode)
  expected = (f"{cifar_pickle.CIFAR100_DIR}/ (train, test, meta) or {cifar_pickle.CIFAR100_TAR}")
  not_found = (_not_found("cifar100", [d], expected)
               + f"; tfds 'cifar100' not prepared in {d / 'cifar100'}")
  return tfds_source.load_tfds("cifar100", d, cache_dir=ctx.cache_folder(), download=ctx.download,
                               not_found=not_found, needs_tensorflow=True,
                               label_key="label" if label_mode == "fine" else "coarse_label")


def _cached_folder(ctx: SourceContext, path: Path, name: str) -> RawData:
  return cache.cached(ctx.cache_folder(near=path.parent), name,
                      "folder\n" + cache.file_identity(path),
                      lambda: image_folder.load_image_folder(path))


def load_folder(ctx: SourceContext, path: str) -> RawData:
  """An image folder or archive (`folder:<path>`), decoded once and cached."""
  path = Path(path).expanduser()
  if not path.exists():
    raise DataNotFoundError(f"folder:{path}: does not exist (expected a folder or .tar.gz holding "
                            "train/<class>/*.jpg and test/<class>/*.jpg)")
  return _cached_folder(ctx, path.resolve(), f"folder_{path.name}")


def load_generic_tfds(ctx: SourceContext, name: str, image_key: str | None = None,
                      label_key: str | None = None, train_split: str = "train",
                      test_split: str = "test") -> RawData:
  """Any other tfds image-classification set with fixed-size images."""
  return tfds_source.load_tfds(name, ctx.data_dir, cache_dir=ctx.cache_folder(),
                               download=ctx.download, image_key=image_key, label_key=label_key,
                               train_split=train_split, test_split=test_split)


def load_toy(ctx: SourceContext, name: str, n: int = 1000, noise: float = 0.1,
             n_test: int | None = None, data_seed: int = 0) -> RawData:
  """A TensorFlow-playground toy set (the data folder is not used)."""
  del ctx
  return toy.load_toy(name, n=n, noise=noise, n_test=n_test, data_seed=data_seed)
