"""Datasets held whole in memory; nothing is ever downloaded.

A source is named by a short string, the CLI's ``--data``:

- ``digits``: scikit-learn's bundled 8x8 digits (1797 images, 10 classes), the default;
- ``fashion-mnist[:DIR]``: the four IDX ``.gz`` files, by default where Debian's ``dataset-fashion-mnist``
  puts them (``FASHION_MNIST_DIR``);
- ``imagefolder:DIR``: one sub-folder of images per class, read with Pillow;
- ``cifar10:DIR``: the CIFAR-10 binary batches.

The protocol (NAS-Bench-201's and NNI's): search and scaling choose on a **validation split carved from the
training data** (``load_splits``: stratified, fixed by ``split_seed``, ``validation_fraction`` of it); the
**test set is read only by final evaluation** (``load_test_set``). Fashion-MNIST and CIFAR-10 have an official
test set; the others have none, and a stratified, seeded ``test_fraction`` of them is held out as the test
set first, so the same images are test images whatever the validation fraction. ``split_record`` says which
is which, for the study to record.

An image folder too big to hold in memory streams instead (``nasscale.evaluate.streaming``): the same files
(``imagefolder_classes``, ``class_images``) and images per split, from the index functions here
(``training_pool_indices``, ``carve_validation``, ``held_out_test_indices``), decoded one at a time as here.

Light module: numpy only. scikit-learn and Pillow are imported by the loaders that need them, torch never.
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nasscale.errors import DataError
from nasscale.evaluate.settings import DEFAULT_TEST_FRACTION, DEFAULT_VALIDATION_FRACTION

KINDS = ("digits", "fashion-mnist", "imagefolder", "cifar10")
SOURCE_FORMS = "digits, fashion-mnist[:DIR], imagefolder:DIR, cifar10:DIR"
SPLITS = ("all", "train", "test")
OFFICIAL_SPLIT_KINDS = frozenset({"fashion-mnist", "cifar10"})

PROTOCOL = "validation carved from the training data; test read only by final evaluation"
SMALLEST_NATIVE_RESOLUTION = 16
UPSAMPLED_RESOLUTION = 32
# Independent random streams of one split seed: the held-out test set, then validation out of the rest.
TEST_STREAM, VALIDATION_STREAM = 1, 2

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {  # split -> (images, labels), without the .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension

CIFAR10_FILES = {
    "train": tuple(f"data_batch_{number}.bin" for number in range(1, 6)),
    "test": ("test_batch.bin",),
}
CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32  # label byte, then red, green and blue planes
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


@dataclass(frozen=True, slots=True)
class DataSource:
    """Which dataset to load; ``path`` is None for ``digits`` and for Fashion-MNIST's default folder."""

    kind: str
    path: str | None = None

    def __str__(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A whole dataset in memory.

    ``images`` is a float32 numpy array ``(N, C, H, W)`` with values in [0, 1]; ``labels`` an int64 numpy
    array ``(N,)`` with values in ``[0, num_classes)``. Compared and hashed by identity (arrays have no
    useful ``==``), which lets training cache one resized copy per dataset object.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    in_channels: int
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.images.dtype != np.float32 or self.images.ndim != 4 or self.images.shape[1] != self.in_channels:
            raise DataError(f"{self.name}: images must be float32 (N, {self.in_channels}, H, W), "
                            f"got {self.images.dtype} {self.images.shape}")
        if self.labels.dtype != np.int64 or self.labels.shape != (len(self.images),):
            raise DataError(f"{self.name}: labels must be int64 ({len(self.images)},), "
                            f"got {self.labels.dtype} {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.labels)


def parse_data_source(text: str) -> DataSource:
    """``"fashion-mnist:/data/fm"`` -> ``DataSource("fashion-mnist", "/data/fm")``."""
    kind, _, path = text.strip().partition(":")
    kind, path = kind.strip().lower(), path.strip()
    if kind not in KINDS:
        raise DataError(f"unknown data source {text!r}; choose one of {SOURCE_FORMS}")
    if kind == "digits" and path:
        raise DataError(f"digits is bundled with scikit-learn and takes no folder, got {text!r}; pass --data digits")
    if kind in ("imagefolder", "cifar10") and not path:
        raise DataError(f"{kind} needs a folder: pass --data {kind}:DIR")
    return DataSource(kind, os.path.expanduser(path) if path else None)


def load_dataset(source: DataSource | str, *, split: str = "all", max_samples: int | None = None, seed: int = 0,
                 image_size: int | None = None) -> Dataset:
    """Load one split of a source: ``"all"``, or ``"train"`` / ``"test"`` for sources with an official split.

    ``max_samples`` keeps a stratified sample chosen by ``seed``, taken before decoding so that proxy
    searches on subsets load fast. ``image_size`` (imagefolder only) resizes every image to a square of
    that side; without it the first image's size is used.
    """
    source = _as_source(source)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split != "all" and source.kind not in OFFICIAL_SPLIT_KINDS:
        raise DataError(f"{source.kind} has no official train/test split; load split='all' and use split_dataset")
    if max_samples is not None and max_samples < 1:
        raise DataError(f"max_samples must be a positive number of images, got {max_samples}")
    if image_size is not None and source.kind != "imagefolder":
        raise DataError(f"image_size applies to imagefolder only, {source.kind} images have a fixed size; "
                        f"resize them at training time instead")
    check_image_size(image_size)
    if source.kind == "digits":
        return subsample_dataset(_load_digits(), max_samples, seed=seed)
    if source.kind == "imagefolder":
        return _load_imagefolder(Path(source.path or ""), max_samples=max_samples, seed=seed, image_size=image_size)
    if source.kind in OFFICIAL_SPLIT_KINDS:
        images, labels, class_names = _official_arrays(source, split)
        return _from_bytes(source.kind, images, labels, class_names, max_samples, seed)
    raise DataError(f"unknown data source kind {source.kind!r}; choose one of {', '.join(KINDS)}")


def _official_arrays(source: DataSource, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """uint8 images, labels and class names of one split of a source with an official train/test split."""
    if source.kind == "fashion-mnist":
        images, labels = _fashion_mnist_arrays(Path(source.path or FASHION_MNIST_DIR), split)
        return images, labels, FASHION_MNIST_CLASSES
    images, labels = _cifar10_arrays(Path(source.path or ""), split)
    return images, labels, CIFAR10_CLASSES


def load_splits(source: DataSource | str, *, validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                test_fraction: float = DEFAULT_TEST_FRACTION, split_seed: int = 0,
                max_train_samples: int | None = None, max_validation_samples: int | None = None,
                image_size: int | None = None) -> tuple[Dataset, Dataset]:
    """(train, validation), both from the training data: what a search or the scaler may look at.

    ``max_train_samples`` and ``max_validation_samples`` keep stratified samples of each (fixed by
    ``split_seed``), taken after the split, so a smaller proxy never moves an image between the splits."""
    source = _as_source(source)
    check_fraction("validation_fraction", validation_fraction)
    check_fraction("test_fraction", test_fraction)
    pool = _training_pool(source, test_fraction=test_fraction, split_seed=split_seed, image_size=image_size)
    train, validation = carve_validation(pool.labels, pool.indices, validation_fraction=validation_fraction,
                                         split_seed=split_seed, name=str(source),
                                         max_train_samples=max_train_samples,
                                         max_validation_samples=max_validation_samples)
    return pool.take(train), pool.take(validation)


def load_test_set(source: DataSource | str, *, test_fraction: float = DEFAULT_TEST_FRACTION, split_seed: int = 0,
                  max_samples: int | None = None, image_size: int | None = None) -> Dataset:
    """The test set: the official one, or the ``test_fraction`` held out of a source that has none. Only final
    evaluation reads it (``nasscale train``, the scale ladder's final runs, benchmarks), once, labelled test."""
    source = _as_source(source)
    check_fraction("test_fraction", test_fraction)
    if source.kind in OFFICIAL_SPLIT_KINDS:
        return load_dataset(source, split="test", max_samples=max_samples, seed=split_seed)
    whole = load_dataset(source, image_size=image_size)
    return _take(whole, held_out_test_indices(whole.labels, test_fraction=test_fraction, split_seed=split_seed,
                                              name=str(source), max_samples=max_samples))


def carve_validation(labels: np.ndarray, indices: np.ndarray, *, validation_fraction: float, split_seed: int,
                     name: str, max_train_samples: int | None = None,
                     max_validation_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) indices carved out of ``indices``, the training pool of a source whose images
    have ``labels``: what ``load_splits`` keeps, computed from the labels alone (streaming reuses it)."""
    count = round(len(indices) * validation_fraction)
    if not 0 < count < len(indices):
        raise DataError(f"{name}: {len(indices)} training images are too few to hold out "
                        f"{validation_fraction:.0%} for validation; raise validation_fraction or use more data")
    order = indices[_stratified_order(labels[indices], (split_seed, VALIDATION_STREAM))]
    validation, train = order[:count], order[count:]
    train = train[_limit(labels[train], max_train_samples, split_seed)]
    validation = validation[_limit(labels[validation], max_validation_samples, split_seed)]
    return np.sort(train), np.sort(validation)


def held_out_test_indices(labels: np.ndarray, *, test_fraction: float, split_seed: int, name: str,
                          max_samples: int | None = None) -> np.ndarray:
    """Sorted indices of the test set held out of a source with no official one: what ``load_test_set`` keeps."""
    test = _held_out_test(labels, test_fraction, split_seed, name)
    return np.sort(test[_limit(labels[test], max_samples, split_seed)])


def training_pool_indices(labels: np.ndarray, *, test_fraction: float, split_seed: int, name: str) -> np.ndarray:
    """Indices of a source with no official test set that training may use: all but the held-out test set."""
    return np.setdiff1d(np.arange(len(labels)), _held_out_test(labels, test_fraction, split_seed, name))


def split_record(source: DataSource | str, train: Dataset, validation: Dataset, *, validation_fraction: float,
                 test_fraction: float, split_seed: int) -> dict[str, object]:
    """Where each number of a study comes from, for its record: accuracies chosen on are validation accuracies
    of a split carved from the training data; the test set is named but never loaded by a search."""
    source = _as_source(source)
    official = source.kind in OFFICIAL_SPLIT_KINDS
    return {"protocol": PROTOCOL, "data": str(source), "split_seed": split_seed,
            "validation": f"{validation_fraction:g} of the training data, stratified",
            "test": "the official test set" if official else f"{test_fraction:g} of the data held out, stratified",
            "validation_fraction": validation_fraction, "test_fraction": None if official else test_fraction,
            "train_images": len(train), "validation_images": len(validation)}


def native_resolution(dataset: Dataset) -> int:
    """The resolution a study on ``dataset`` deploys at by default: the images' own side, except that images
    smaller than ``SMALLEST_NATIVE_RESOLUTION`` (the 8x8 digits) are upsampled to ``UPSAMPLED_RESOLUTION``, since
    five stride-2 stages would leave nothing of them."""
    side = max(dataset.images.shape[-2:])
    return side if side >= SMALLEST_NATIVE_RESOLUTION else UPSAMPLED_RESOLUTION


def check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise DataError(f"{name} must lie strictly between 0 and 1, got {value!r}")


def check_image_size(image_size: int | None) -> None:
    if image_size is not None and image_size < 1:
        raise DataError(f"image_size must be a positive number of pixels, got {image_size}")


@dataclass(frozen=True, eq=False)
class _Pool:
    """The images a split is cut from: ``dataset`` when already decoded, else ``raw`` bytes of an official split
    (kept as uint8 until the split is chosen: a quarter of the memory); ``indices`` are those in play."""

    name: str
    labels: np.ndarray
    indices: np.ndarray
    dataset: Dataset | None = None
    raw: np.ndarray | None = None
    class_names: tuple[str, ...] = ()

    def take(self, indices: np.ndarray) -> Dataset:
        indices = np.sort(indices)
        if self.dataset is not None:
            return _take(self.dataset, indices)
        assert self.raw is not None  # a pool holds a dataset or raw bytes
        return _from_bytes(self.name, self.raw[indices], self.labels[indices], self.class_names, None, 0)


def _training_pool(source: DataSource, *, test_fraction: float, split_seed: int, image_size: int | None) -> _Pool:
    """The official training split, or a source's images less its held-out test set."""
    if source.kind in OFFICIAL_SPLIT_KINDS:
        raw, labels, class_names = _official_arrays(source, "train")
        return _Pool(source.kind, labels, np.arange(len(labels)), raw=raw, class_names=class_names)
    whole = load_dataset(source, image_size=image_size)
    indices = training_pool_indices(whole.labels, test_fraction=test_fraction, split_seed=split_seed, name=str(source))
    return _Pool(whole.name, whole.labels, indices, dataset=whole)


def _held_out_test(labels: np.ndarray, test_fraction: float, split_seed: int, name: str) -> np.ndarray:
    count = round(len(labels) * test_fraction)
    if not 0 < count < len(labels):
        raise DataError(f"{name}: {len(labels)} images are too few to hold out {test_fraction:.0%} as a test set")
    return np.sort(_stratified_order(labels, (split_seed, TEST_STREAM))[:count])


def split_dataset(dataset: Dataset, *, validation_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, validation), disjoint, stratified by class and fixed by ``seed``."""
    if not 0 < validation_fraction < 1:
        raise DataError(f"validation_fraction must lie strictly between 0 and 1, got {validation_fraction}")
    count = round(len(dataset) * validation_fraction)
    if not 0 < count < len(dataset):
        raise DataError(f"{dataset.name}: {len(dataset)} images are too few to hold out {validation_fraction:.0%}")
    order = _stratified_order(dataset.labels, seed)
    return _take(dataset, order[count:]), _take(dataset, order[:count])


def subsample_dataset(dataset: Dataset, max_samples: int | None, *, seed: int = 0) -> Dataset:
    """At most ``max_samples`` images, a stratified sample fixed by ``seed``; the dataset itself if it fits."""
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    return _take(dataset, stratified_indices(dataset.labels, max_samples, seed=seed))


def stratified_indices(labels: np.ndarray, count: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``count`` samples holding every class in proportion, chosen by ``seed``."""
    return np.sort(_stratified_order(labels, seed)[:count])


def _stratified_order(labels: np.ndarray, seed: int | tuple[int, int]) -> np.ndarray:
    # Spread each shuffled class evenly over [0, 1) and sort: every prefix then holds the classes in proportion.
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        keys[rng.permutation(members)] = (np.arange(len(members)) + rng.random()) / len(members)
    return np.argsort(keys, kind="stable")


def _take(dataset: Dataset, indices: np.ndarray) -> Dataset:
    indices = np.sort(indices)
    return replace(dataset, images=dataset.images[indices], labels=dataset.labels[indices])


def _as_source(source: DataSource | str) -> DataSource:
    return parse_data_source(source) if isinstance(source, str) else source


def _limit(labels: np.ndarray, max_samples: int | None, seed: int) -> np.ndarray:
    if max_samples is None or max_samples >= len(labels):
        return np.arange(len(labels))
    return stratified_indices(labels, max_samples, seed=seed)


def _from_bytes(name: str, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                max_samples: int | None, seed: int) -> Dataset:
    # Subsample while still uint8: a quarter of the memory of float32.
    keep = _limit(labels, max_samples, seed)
    scaled = images[keep].astype(np.float32)
    scaled /= 255
    return Dataset(name, scaled, labels[keep].astype(np.int64), len(class_names), images.shape[1], class_names)


# digits ---------------------------------------------------------------------------------------------------------


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits  # slow to import, and only this source needs it

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]  # pixel counts 0..16
    return Dataset("digits", images, bunch.target.astype(np.int64), 10, 1, tuple(str(digit) for digit in range(10)))


# Fashion-MNIST --------------------------------------------------------------------------------------------------


def _fashion_mnist_arrays(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    splits = ("train", "test") if split == "all" else (split,)
    stems = [stem for name in splits for stem in FASHION_MNIST_FILES[name]]
    paths = {stem: _idx_path(directory, stem) for stem in stems}
    missing = [f"{stem}.gz" for stem, path in paths.items() if path is None]
    if missing:
        raise DataError(f"fashion-mnist: no IDX files {', '.join(missing)} in {directory}; install them with "
                        f"'apt-get install dataset-fashion-mnist' or pass --data fashion-mnist:DIR")
    found = {stem: path for stem, path in paths.items() if path is not None}  # all of them, after the check above
    images, labels = [], []
    for name in splits:
        image_stem, label_stem = FASHION_MNIST_FILES[name]
        images.append(_read_idx(found[image_stem], IDX_IMAGES_MAGIC)[:, None])
        labels.append(_read_idx(found[label_stem], IDX_LABELS_MAGIC))
        if len(images[-1]) != len(labels[-1]):
            raise DataError(f"fashion-mnist: {found[image_stem]} holds {len(images[-1])} images but "
                            f"{found[label_stem]} {len(labels[-1])} labels")
    return _concatenate(images), _concatenate(labels)


def _idx_path(directory: Path, stem: str) -> Path | None:
    # Debian ships the files gzipped; accept them unpacked too.
    return next((directory / name for name in (f"{stem}.gz", stem) if (directory / name).is_file()), None)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file of unsigned bytes: big-endian magic, one big-endian int32 per dimension, then the data."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as file:
            raw = file.read()
    except (OSError, EOFError) as error:  # a corrupt or truncated .gz
        raise DataError(f"fashion-mnist: cannot read {path}: {error}") from None
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"fashion-mnist: {path} is not the IDX file expected "
                        f"(magic number {found:#010x}, expected {magic:#010x})")
    dimensions = magic & 0xFF
    header = 4 + 4 * dimensions
    shape = tuple(int.from_bytes(raw[start:start + 4], "big") for start in range(4, header, 4))
    size = math.prod(shape)
    if len(raw) - header != size:
        raise DataError(f"fashion-mnist: {path} holds {len(raw) - header} data bytes, its header announces {size}")
    return np.frombuffer(raw, np.uint8, size, header).reshape(shape)


# CIFAR-10 -------------------------------------------------------------------------------------------------------


def _cifar10_arrays(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    directory = path / CIFAR10_FOLDER if (path / CIFAR10_FOLDER).is_dir() else path
    names = [name for part in (("train", "test") if split == "all" else (split,)) for name in CIFAR10_FILES[part]]
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise DataError(f"cifar10: no binary batches {', '.join(missing)} in {directory}; download the CIFAR-10 "
                        f"binary version from {CIFAR10_URL}, unpack it and pass --data cifar10:DIR")
    batches = [_read_cifar10_batch(directory / name) for name in names]
    return _concatenate([images for images, _ in batches]), _concatenate([labels for _, labels in batches])


def _read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR10_RECORD_BYTES:
        raise DataError(f"cifar10: {path} is not a CIFAR-10 binary batch ({raw.size} bytes is not a whole "
                        f"number of {CIFAR10_RECORD_BYTES}-byte records); use the binary version from {CIFAR10_URL}")
    records = raw.reshape(-1, CIFAR10_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CIFAR10_CLASSES):
        raise DataError(f"cifar10: {path} holds label {labels.max()}, CIFAR-10 has {len(CIFAR10_CLASSES)} classes")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _concatenate(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


# image folder ---------------------------------------------------------------------------------------------------


def _load_imagefolder(root: Path, *, max_samples: int | None, seed: int, image_size: int | None) -> Dataset:
    files, labels, class_names = _list_imagefolder(root)
    keep = _limit(labels, max_samples, seed)
    files = [files[index] for index in keep]
    images = _read_images(files, image_size)
    return Dataset(f"imagefolder:{root.name}", images, labels[keep], len(class_names), images.shape[1], class_names)


def _list_imagefolder(root: Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    class_dirs = imagefolder_classes(root)
    files: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        members = class_images(class_dir)
        files += members
        labels += [label] * len(members)
    return files, np.array(labels, dtype=np.int64), tuple(path.name for path in class_dirs)


def imagefolder_classes(root: Path) -> list[Path]:
    """The class folders of an image folder, in label order."""
    if not root.is_dir():
        raise DataError(f"imagefolder: no folder {root}; pass --data imagefolder:DIR, DIR holding one sub-folder "
                        f"of images per class")
    class_dirs = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not class_dirs:
        raise DataError(f"imagefolder: {root} has no class sub-folders; put each class's images in DIR/CLASS_NAME/")
    return class_dirs


def class_images(class_dir: Path) -> list[Path]:
    """The images of one class folder, nested folders included, in the order they are labelled."""
    members = sorted(path for path in class_dir.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
    if not members:
        raise DataError(f"imagefolder: class folder {class_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return members


def _read_images(files: list[Path], image_size: int | None) -> np.ndarray:
    mode, (width, height) = image_format(files, image_size)
    images = np.empty((len(files), 1 if mode == "L" else 3, height, width), dtype=np.float32)
    for index, path in enumerate(files):
        images[index] = channels_first(decode_image(path, mode, (width, height)))
    return images


def image_format(files: Iterable[Path], image_size: int | None) -> tuple[str, tuple[int, int]]:
    """(Pillow mode, (width, height)) every image of a folder is decoded to, from the headers (cheap): ``"L"``, one
    grayscale channel, only if every image is grayscale, else ``"RGB"``; the first image's size unless
    ``image_size`` is given. ``files`` is read once, in order, so it may be a generator."""
    paths = iter(files)
    first_mode, first_size = _read_header(next(paths))
    grayscale = first_mode in GRAYSCALE_MODES and all(_read_header(path)[0] in GRAYSCALE_MODES for path in paths)
    return "L" if grayscale else "RGB", (image_size, image_size) if image_size else first_size


def channels_first(pixels: np.ndarray) -> np.ndarray:
    """A decoded image, (H, W) grayscale or (H, W, 3) colour, as (C, H, W)."""
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _read_header(path: Path) -> tuple[str, tuple[int, int]]:
    from PIL import Image  # only image folders need Pillow

    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except OSError as error:
        raise DataError(f"imagefolder: cannot read {path}: {error}") from None


def decode_image(path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            converted = image.convert(mode)
            if converted.size != size:
                converted = converted.resize(size, Image.Resampling.BILINEAR)
            return np.asarray(converted, dtype=np.float32) / 255
    except OSError as error:
        raise DataError(f"imagefolder: cannot read {path}: {error}") from None
