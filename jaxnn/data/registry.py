"""Data set names -> loaders.

Registered names have a fixed search order (see `sources`); beyond them, `folder:<path>` reads an
image folder or archive, and any other name is tried as a tfds image-classification builder.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Callable

from jaxnn.data import sources, toy
from jaxnn.data.containers import RawData

FOLDER_PREFIX = "folder:"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """One registered data set.

  Attributes:
    name: canonical name.
    description: one line for listings.
    loader: (SourceContext, **options) -> RawData.
    uses_data_dir: False for generated sets.
  """
  name: str
  description: str
  loader: Callable[..., RawData]
  uses_data_dir: bool = True


def _toy_spec(name: str, what: str) -> DatasetSpec:
  return DatasetSpec(name, f"TensorFlow-playground 2-D toy set: {what}",
                     functools.partial(sources.load_toy, name=name), uses_data_dir=False)


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec("cifar10", "CIFAR-10, 32x32x3, 10 classes (pickles, JPEG folder copy "
                           "or tfds)", sources.load_cifar10),
    "cifar100": DatasetSpec("cifar100", "CIFAR-100, 32x32x3, 100 fine / 20 coarse classes "
                            "(pickles or tfds)", sources.load_cifar100),
    "mnist": DatasetSpec("mnist", "MNIST digits, 28x28x1, 10 classes (IDX or tfds)",
                         sources.load_mnist),
    "fashion_mnist": DatasetSpec("fashion_mnist", "Fashion-MNIST, 28x28x1, 10 classes (IDX or "
                                 "tfds)", sources.load_fashion_mnist),
    "kmnist": DatasetSpec("kmnist", "Kuzushiji-MNIST, 28x28x1, 10 classes (IDX, npz or tfds)",
                          sources.load_kmnist),
    "kuzushiji49": DatasetSpec("kuzushiji49", "Kuzushiji-49, 28x28x1, 49 classes (npz)",
                               sources.load_kuzushiji49),
    "circle": _toy_spec("circle", "a disc inside a ring"),
    "xor": _toy_spec("xor", "the four quadrants, same-sign vs opposite-sign"),
    "gauss": _toy_spec("gauss", "two Gaussian blobs"),
    "spiral": _toy_spec("spiral", "two interleaved spirals"),
}
assert set(toy.GENERATORS) <= set(DATASETS)

ALIASES = {
    "fashion-mnist": "fashion_mnist", "fashionmnist": "fashion_mnist",
    "k49": "kuzushiji49", "kuzushiji-49": "kuzushiji49", "kuzushiji_49": "kuzushiji49",
    "cifar-10": "cifar10", "cifar-100": "cifar100", "gaussian": "gauss",
}


def list_datasets() -> list[str]:
  """The registered names, sorted. `folder:<path>` and other tfds names work too."""
  return sorted(DATASETS)


def resolve(name: str, data_dir: Path | None = None) -> tuple[str, DatasetSpec]:
  """Maps a user's name to (canonical name, spec).

  Args:
    name: a registered name or alias, `folder:<path>`, or a tfds builder name (one tfds has
      code for, or one prepared in `data_dir`).
    data_dir: the data folder, where a prepared tfds set without builder code may be.

  Returns:
    (canonical name, spec); for folders and tfds names the spec's loader has the path or name
    bound.

  Raises:
    ValueError: the name is none of these; the message lists the registered names.
  """
  if not isinstance(name, str) or not name.strip():
    raise ValueError(f"dataset: name must be a non-empty string, got {name!r}")
  name = name.strip()
  if name.startswith(FOLDER_PREFIX):
    path = name[len(FOLDER_PREFIX):]
    if not path:
      raise ValueError("dataset: 'folder:' needs a path, e.g. folder:/data/flowers.tar.gz")
    return name, DatasetSpec(name, f"image folder {path}",
                             functools.partial(sources.load_folder, path=path))
  key = ALIASES.get(name.lower(), name.lower())
  if key in DATASETS:
    return key, DATASETS[key]
  from jaxnn.data import tfds_source  # pylint: disable=g-import-not-at-top
  prepared = data_dir is not None and (Path(data_dir) / tfds_source.base_name(name)).is_dir()
  if prepared or tfds_source.known_builder(name):
    return name, DatasetSpec(name, f"tfds {name}",
                             functools.partial(sources.load_generic_tfds, name=name))
  raise ValueError(f"dataset: unknown name {name!r}; known: {', '.join(list_datasets())}, "
                   "folder:<path>, or a tfds image-classification name")
