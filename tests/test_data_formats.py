"""Readers on tiny files written here in the official formats, and their errors.

IDX (MNIST family), CIFAR-10/100 python pickles (folder and .tar.gz), Kuzushiji .npz, image
folders (folder and .tar.gz) and the decode cache. Every error must be one line naming the file.
"""

import gzip
import io
import os
import pickle
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxnn import data
from jaxnn.data import cache, cifar_pickle, idx, image_folder


# ---------------------------------------------------------------- IDX


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
  dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
  header = b"\0\0" + bytes([code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
  return header + array.astype(dtype).tobytes()


def write_idx_folder(folder: Path, n_train=20, n_test=10, gz=True, seed=0):
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  arrays = {}
  for split, (images_name, labels_name) in idx.IDX_FILES.items():
    n = n_train if split == "train" else n_test
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.uint8)
    for name, a in ((images_name, x), (labels_name, y)):
      raw = idx_bytes(a)
      if gz:
        (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
      else:
        (folder / name).write_bytes(raw)
    arrays[split] = (x, y)
  return arrays


@pytest.mark.parametrize("code,dtype", [(0x08, np.uint8), (0x0B, np.int16), (0x0D, np.float32)])
def test_parse_idx_round_trips_each_type(code, dtype):
  a = (np.arange(24).reshape(2, 3, 4) * 3 - 5).astype(dtype)
  if dtype == np.uint8:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
  got = idx.parse_idx(idx_bytes(a, code))
  assert got.shape == (2, 3, 4) and got.dtype == np.dtype(dtype).newbyteorder("=")
  np.testing.assert_array_equal(got, a)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_loads_gzipped_or_plain(tmp_path, gz):
  arrays = write_idx_folder(tmp_path / "mnist", gz=gz)
  ds = data.load("mnist", tmp_path, val_fraction=0.0)
  assert ds.train.x.shape == (20, 28, 28, 1) and ds.test.x.shape == (10, 28, 28, 1)
  np.testing.assert_array_equal(ds.train.x[..., 0], arrays["train"][0])
  np.testing.assert_array_equal(ds.test.y, arrays["test"][1].astype(np.int32))
  assert ds.train.y.dtype == np.int32


def test_idx_directly_in_data_dir_and_fashion_folder_names(tmp_path):
  write_idx_folder(tmp_path / "fashion-mnist", seed=1)
  ds = data.load("fashion-mnist", tmp_path, val_fraction=0.0)
  assert ds.name == "fashion_mnist" and ds.num_classes == 10
  write_idx_folder(tmp_path / "direct", seed=2)
  assert data.load("kmnist", tmp_path / "direct").class_names[0] == "o"


def _expect_format_error(match_file, fn):
  with pytest.raises(data.DataFormatError) as info:
    fn()
  message = str(info.value)
  assert "\n" not in message and str(match_file) in message, message
  return message


def test_idx_errors_name_the_file(tmp_path):
  good = idx_bytes(np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8))
  bad_gzip = tmp_path / "bad.gz"
  bad_gzip.write_bytes(b"\x1f\x8b" + b"not a gzip stream at all")
  assert "gzip" in _expect_format_error(bad_gzip, lambda: idx.read_idx(bad_gzip))
  truncated = tmp_path / "truncated.gz"
  truncated.write_bytes(gzip.compress(good)[:3000])
  _expect_format_error(truncated, lambda: idx.read_idx(truncated))
  wrong_magic = tmp_path / "wrong_magic"
  wrong_magic.write_bytes(b"\x12\x34\x08\x03" + good[4:])
  assert "not an IDX file" in _expect_format_error(wrong_magic, lambda: idx.read_idx(wrong_magic))
  short = tmp_path / "short"
  short.write_bytes(good[:-28 * 28])  # one image missing
  assert "(10, 28, 28)" in _expect_format_error(short, lambda: idx.read_idx(short))
  images = tmp_path / "images"
  images.write_bytes(good)
  labels = tmp_path / "labels"
  labels.write_bytes(idx_bytes(np.zeros(9, np.uint8)))
  assert "9 labels for 10 images" in _expect_format_error(
      labels, lambda: idx.read_idx_pair(images, labels))


def test_corrupt_file_in_data_dir_fails_loudly(tmp_path):
  write_idx_folder(tmp_path / "mnist")
  target = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
  target.write_bytes(target.read_bytes()[:15])
  _expect_format_error(target, lambda: data.load("mnist", tmp_path))


def test_incomplete_idx_folder_names_the_missing_files(tmp_path):
  write_idx_folder(tmp_path / "mnist")
  (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
  message = _expect_format_error(tmp_path / "mnist", lambda: data.load("mnist", tmp_path))
  assert "t10k-images-idx3-ubyte" in message


# ---------------------------------------------------------------- CIFAR pickles


def cifar_images(n, seed):
  return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def official_rows(images):
  """The official layout: per image the R plane, then G, then B, each row-major."""
  return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def dump(path, obj):
  with open(path, "wb") as f:
    pickle.dump(obj, f, protocol=2)


def write_cifar10(folder: Path, per_batch=4):
  folder.mkdir(parents=True)
  train, train_labels = [], []
  for i in range(1, 6):
    images = cifar_images(per_batch, i)
    labels = [(i + j) % 10 for j in range(per_batch)]
    dump(folder / f"data_batch_{i}", {b"batch_label": b"training batch", b"labels": labels,
                                      b"data": official_rows(images),
                                      b"filenames": [b"f.png"] * per_batch})
    train.append(images)
    train_labels += labels
  test = cifar_images(per_batch, 99)
  dump(folder / "test_batch", {b"labels": list(range(per_batch)), b"data": official_rows(test)})
  names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
           b"ship", b"truck"]
  dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
  return np.concatenate(train), np.array(train_labels), test


def test_cifar_rows_are_channel_planes():
  image = np.zeros((1, 32, 32, 3), np.uint8)
  image[0, 1, 2] = (200, 100, 50)  # row 1, column 2
  row = official_rows(image)[0]
  assert row[0 * 1024 + 1 * 32 + 2] == 200 and row[1024 + 34] == 100 and row[2048 + 34] == 50
  x, _ = cifar_pickle.decode_batch({b"data": row[None], b"labels": [3]}, b"labels", "t")
  assert tuple(x[0, 1, 2]) == (200, 100, 50) and x[0].sum() == 350


def test_cifar10_pickle_folder(tmp_path):
  train, labels, test = write_cifar10(tmp_path / "cifar-10-batches-py")
  ds = data.load("cifar10", tmp_path, val_fraction=0.0)
  np.testing.assert_array_equal(ds.train.x, train)
  np.testing.assert_array_equal(ds.train.y, labels)
  np.testing.assert_array_equal(ds.test.x, test)
  assert ds.class_names[0] == "airplane" and ds.train.x.shape == (20, 32, 32, 3)
  assert "pickles" in ds.source


def test_cifar10_pickle_tarball_equals_folder(tmp_path):
  train, _, test = write_cifar10(tmp_path / "src" / "cifar-10-batches-py")
  (tmp_path / "dd").mkdir()
  with tarfile.open(tmp_path / "dd" / "cifar-10-python.tar.gz", "w:gz") as tar:
    tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
  ds = data.load("cifar10", tmp_path / "dd", val_fraction=0.0)
  np.testing.assert_array_equal(ds.train.x, train)
  np.testing.assert_array_equal(ds.test.x, test)


@pytest.mark.parametrize("label_mode,classes", [("fine", 100), ("coarse", 20)])
def test_cifar100_label_modes(tmp_path, label_mode, classes):
  folder = tmp_path / "cifar-100-python"
  folder.mkdir()
  train, test = cifar_images(30, 1), cifar_images(10, 2)
  for name, images in (("train", train), ("test", test)):
    n = len(images)
    dump(folder / name, {b"data": official_rows(images), b"fine_labels": list(range(n)),
                         b"coarse_labels": [i % 20 for i in range(n)]})
  dump(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                         b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
  ds = data.load("cifar100", tmp_path, val_fraction=0.0, label_mode=label_mode)
  assert ds.num_classes == classes and ds.class_names[1] == ("f1" if classes == 100 else "c1")
  np.testing.assert_array_equal(ds.train.x, train)
  expected = np.arange(30) if label_mode == "fine" else np.arange(30) % 20
  np.testing.assert_array_equal(ds.train.y, expected)


class _Evil:

  def __reduce__(self):
    return (os.getcwd, ())


def test_cifar_errors_name_the_file(tmp_path):
  write_cifar10(tmp_path / "cifar-10-batches-py")
  batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
  batch.write_bytes(b"garbage, not a pickle")
  _expect_format_error(batch, lambda: data.load("cifar10", tmp_path))
  dump(batch, {b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4})
  assert "[N, 3072]" in _expect_format_error(batch, lambda: data.load("cifar10", tmp_path))
  dump(batch, {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3})
  assert "3 labels for 4" in _expect_format_error(batch, lambda: data.load("cifar10", tmp_path))
  dump(batch, {b"data": _Evil(), b"labels": [0]})
  assert "refusing" in _expect_format_error(batch, lambda: data.load("cifar10", tmp_path))


def test_truncated_cifar_tarball(tmp_path):
  write_cifar10(tmp_path / "src" / "cifar-10-batches-py")
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
    tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
  (tmp_path / "dd").mkdir()
  target = tmp_path / "dd" / "cifar-10-python.tar.gz"
  target.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
  _expect_format_error(target, lambda: data.load("cifar10", tmp_path / "dd"))


# ---------------------------------------------------------------- Kuzushiji .npz


@pytest.mark.parametrize("name,prefix,classes",
                         [("kuzushiji49", "k49", 49), ("kmnist", "kmnist", 10)])
def test_kuzushiji_npz(tmp_path, name, prefix, classes):
  folder = tmp_path / ("k49" if prefix == "k49" else "kmnist")
  folder.mkdir()
  rng = np.random.default_rng(0)
  for split, n in (("train", 2 * classes), ("test", classes)):
    np.savez_compressed(folder / f"{prefix}-{split}-imgs.npz",
                        arr_0=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    np.savez_compressed(folder / f"{prefix}-{split}-labels.npz", arr_0=np.arange(n) % classes)
  ds = data.load("k49" if prefix == "k49" else name, tmp_path, val_fraction=0.5)
  assert ds.num_classes == classes and len(ds.class_names) == classes
  assert ds.sizes() == {"train": classes, "val": classes, "test": classes}
  assert np.bincount(ds.train.y).tolist() == [1] * classes  # stratified: one of two per class
  assert ds.train.x.shape[1:] == (28, 28, 1)


def test_missing_data_is_one_clear_error_within_a_second(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXNN_OFFLINE", "1")
  for name, expected in (("mnist", "train-images-idx3-ubyte.gz"),
                         ("cifar10", "cifar-10-batches-py"), ("kuzushiji49", "k49-train-imgs.npz")):
    start = time.perf_counter()
    with pytest.raises(data.DataNotFoundError) as info:
      data.load(name, tmp_path)
    assert time.perf_counter() - start < 1.0
    message = str(info.value)
    assert message.startswith(name) and str(tmp_path) in message and expected in message
    assert "\n" not in message


def test_unknown_names_and_options(tmp_path):
  with pytest.raises(ValueError, match="known: cifar10, cifar100, circle"):
    data.load("no_such_dataset_anywhere")
  with pytest.raises(ValueError, match="unknown option.*colour.*known: cache_dir, download"):
    data.load("circle", colour="red")
  with pytest.raises(data.DataNotFoundError, match="does not exist"):
    data.load(f"folder:{tmp_path / 'nope'}")


# ---------------------------------------------------------------- image folders


def write_png_tree(root: Path, shape=(4, 5, 3), per_class=(3, 2), classes=("cat", "dog"),
                   test_dir="test"):
  rng = np.random.default_rng(0)
  arrays = {}
  for split, n in (("train", per_class[0]), (test_dir, per_class[1])):
    for c in classes:
      (root / split / c).mkdir(parents=True)
      for i in range(n):
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(a[..., 0] if shape[-1] == 1 else a).save(root / split / c / f"{i:03d}.png")
        arrays[(split, c, i)] = a
  return arrays


def test_image_folder_from_png_tree(tmp_path):
  arrays = write_png_tree(tmp_path / "pets")
  ds = data.load(f"folder:{tmp_path / 'pets'}", val_fraction=0.0, cache_dir=False)
  assert ds.class_names == ("cat", "dog") and ds.num_classes == 2
  assert ds.train.x.shape == (6, 4, 5, 3) and ds.test.x.shape == (4, 4, 5, 3)
  assert ds.train.y.tolist() == [0, 0, 0, 1, 1, 1]
  np.testing.assert_array_equal(ds.train.x[4], arrays[("train", "dog", 1)])
  np.testing.assert_array_equal(ds.test.x[1], arrays[("test", "cat", 1)])


def test_image_folder_grayscale_and_val_as_test(tmp_path):
  arrays = write_png_tree(tmp_path / "g", shape=(6, 6, 1), test_dir="val")
  ds = data.load(f"folder:{tmp_path / 'g'}", val_fraction=0.0, cache_dir=False)
  assert ds.train.x.shape == (6, 6, 6, 1) and ds.test.x.shape == (4, 6, 6, 1)
  np.testing.assert_array_equal(ds.test.x[3], arrays[("val", "dog", 1)])


def test_image_folder_tarball_equals_folder_and_is_cached(tmp_path, monkeypatch):
  write_png_tree(tmp_path / "src" / "pets")
  archive = tmp_path / "pets.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(tmp_path / "src" / "pets", arcname="pets")  # wrapped in a top folder
  cache_dir = tmp_path / "cache"
  from_dir = data.load(f"folder:{tmp_path / 'src' / 'pets'}", val_fraction=0.0, cache_dir=False)
  from_tar = data.load(f"folder:{archive}", val_fraction=0.0, cache_dir=cache_dir)
  np.testing.assert_array_equal(from_tar.train.x, from_dir.train.x)
  np.testing.assert_array_equal(from_tar.test.y, from_dir.test.y)
  files = sorted(p.name for p in cache_dir.iterdir())
  assert len(files) == 1 and files[0].endswith(".npz"), files  # no temporary left behind

  def no_decoding(items):
    raise AssertionError("decoded although cached")

  monkeypatch.setattr(image_folder, "decode_images", no_decoding)
  again = data.load(f"folder:{archive}", val_fraction=0.0, cache_dir=cache_dir)
  np.testing.assert_array_equal(again.train.x, from_dir.train.x)
  assert again.class_names == ("cat", "dog")


def test_image_folder_errors_name_the_file(tmp_path):
  write_png_tree(tmp_path / "a")
  odd = tmp_path / "a" / "train" / "dog" / "001.png"
  Image.fromarray(np.zeros((7, 5, 3), np.uint8)).save(odd)
  message = _expect_format_error(odd, lambda: image_folder.load_image_folder(tmp_path / "a"))
  assert "(7, 5, 3)" in message and "(4, 5, 3)" in message
  write_png_tree(tmp_path / "b")
  broken = tmp_path / "b" / "test" / "cat" / "000.png"
  broken.write_bytes(b"\x89PNG not really")
  _expect_format_error(broken, lambda: image_folder.load_image_folder(tmp_path / "b"))
  write_png_tree(tmp_path / "c")
  (tmp_path / "c" / "test" / "cow").mkdir()
  Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "c" / "test" / "cow" / "0.png")
  assert "cow" in _expect_format_error(tmp_path / "c",
                                       lambda: image_folder.load_image_folder(tmp_path / "c"))
  (tmp_path / "d").mkdir()
  _expect_format_error(tmp_path / "d", lambda: image_folder.load_image_folder(tmp_path / "d"))
  archive = tmp_path / "e.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(tmp_path / "a", arcname="e")
  archive.write_bytes(archive.read_bytes()[:-100])
  _expect_format_error(archive, lambda: image_folder.load_image_folder(archive))


def test_cache_key_changes_with_the_source(tmp_path):
  f = tmp_path / "f.bin"
  f.write_bytes(b"abc")
  first = cache.cache_path(tmp_path, "x", cache.file_identity(f))
  f.write_bytes(b"abcd")
  assert cache.cache_path(tmp_path, "x", cache.file_identity(f)) != first
