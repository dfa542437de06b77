"""Data: named sources -> seeded train / validation / test arrays, and on-device transforms.

    from jaxnn import data
    ds = data.load("cifar10", "/data", train_subset=3200, val_subset=800, test_subset=1000)
    x = data.normalize(batch_uint8, ds.mean, ds.std)           # inside the jitted step
    x = data.augment(key, x, crop_padding=4, flip=True)         # per member, per example

Sources: official archives in a data folder (CIFAR pickles, MNIST-style IDX, Kuzushiji .npz),
image folders (`folder:<path>`, also this project's CIFAR-10 JPEG copy), tensorflow-datasets
(read without TensorFlow where possible), and the TensorFlow-playground toy sets.
"""

from jaxnn.data.augment import PAD_MODES, augment, random_crop, random_cutout, random_flip
from jaxnn.data.containers import Dataset, RawData, Split
from jaxnn.data.dataset import dataset_from_raw, load
from jaxnn.data.errors import DataFormatError, DataNotFoundError
from jaxnn.data.normalization import channel_stats, normalize
from jaxnn.data.registry import DATASETS, DatasetSpec, list_datasets
from jaxnn.data.synthetic import random_images

__all__ = [
    "DATASETS", "DataFormatError", "DataNotFoundError", "Dataset", "DatasetSpec", "PAD_MODES",
    "RawData", "Split", "augment", "channel_stats", "dataset_from_raw", "list_datasets", "load",
    "normalize", "random_crop", "random_cutout", "random_flip", "random_images",
]
