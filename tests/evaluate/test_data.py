import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nasscale.errors import DataError
from nasscale.evaluate.data import (
    CIFAR10_FILES,
    CIFAR10_RECORD_BYTES,
    FASHION_MNIST_DIR,
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    Dataset,
    DataSource,
    load_dataset,
    load_splits,
    load_test_set,
    parse_data_source,
    split_dataset,
    split_record,
    stratified_indices,
    subsample_dataset,
)

FASHION_MNIST_PRESENT = Path(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz").is_file()


def numbered_dataset(count: int = 100, classes: int = 4) -> Dataset:
    """Image i holds the value i, so subsets can be told apart."""
    images = np.arange(count, dtype=np.float32).reshape(count, 1, 1, 1)
    labels = np.arange(count, dtype=np.int64) % classes
    return Dataset("numbered", images, labels, classes, 1)


def ids(dataset: Dataset) -> set[int]:
    return {int(value) for value in dataset.images.ravel()}


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# sources --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("digits", DataSource("digits", None)),
    ("fashion-mnist", DataSource("fashion-mnist", None)),
    ("fashion-mnist:/data/fm", DataSource("fashion-mnist", "/data/fm")),
    (" Imagefolder:/data/pets ", DataSource("imagefolder", "/data/pets")),
    ("cifar10:/data/cifar", DataSource("cifar10", "/data/cifar")),
])
def test_parse_data_source(text: str, expected: DataSource) -> None:
    assert parse_data_source(text) == expected
    assert parse_data_source(str(expected)) == expected


@pytest.mark.parametrize("text", ["mnist", "", "imagefolder", "imagefolder:", "cifar10", "digits:/somewhere"])
def test_bad_source_raises_data_error_naming_the_choices(text: str) -> None:
    with pytest.raises(DataError) as excinfo:
        parse_data_source(text)
    message = one_line_error(excinfo)
    assert "DIR" in message or "digits" in message


def test_light_import() -> None:
    code = ("import sys, nasscale.evaluate.data, nasscale.evaluate; "
            "heavy = {'torch', 'sklearn', 'PIL'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent.parent)


# digits and splits ----------------------------------------------------------------------------------------------


def test_digits_loads() -> None:
    digits = load_dataset("digits")
    assert digits.images.shape == (1797, 1, 8, 8)
    assert digits.images.dtype == np.float32 and digits.labels.dtype == np.int64
    assert digits.images.min() == 0.0 and digits.images.max() == 1.0
    assert set(digits.labels.tolist()) == set(range(10))
    assert (digits.num_classes, digits.in_channels) == (10, 1)


def test_split_sizes_and_stratification() -> None:
    train, validation = split_dataset(load_dataset("digits"), validation_fraction=0.2, seed=0)
    assert (len(train), len(validation)) == (1438, 359)
    assert np.bincount(validation.labels, minlength=10).min() >= 34  # about 36 of each digit


def test_split_is_deterministic_disjoint_and_seeded() -> None:
    dataset = numbered_dataset()
    train, validation = split_dataset(dataset, validation_fraction=0.25, seed=3)
    again_train, again_validation = split_dataset(dataset, validation_fraction=0.25, seed=3)
    _, other_validation = split_dataset(dataset, validation_fraction=0.25, seed=4)
    assert (len(train), len(validation)) == (75, 25)
    assert ids(train).isdisjoint(ids(validation)) and ids(train) | ids(validation) == set(range(100))
    assert ids(again_train) == ids(train) and ids(again_validation) == ids(validation)
    assert ids(other_validation) != ids(validation)


def test_split_rejects_bad_fraction() -> None:
    with pytest.raises(DataError):
        split_dataset(numbered_dataset(), validation_fraction=1.0)


def test_subsample_is_stratified_and_seeded() -> None:
    dataset = numbered_dataset(count=400, classes=4)
    sample = subsample_dataset(dataset, 40, seed=1)
    assert np.bincount(sample.labels).tolist() == [10, 10, 10, 10]
    assert ids(subsample_dataset(dataset, 40, seed=1)) == ids(sample) != ids(subsample_dataset(dataset, 40, seed=2))
    assert subsample_dataset(dataset, None) is dataset
    assert stratified_indices(dataset.labels, 8, seed=0).tolist() == sorted(stratified_indices(dataset.labels, 8))


def test_digits_splits_and_limits() -> None:
    train, validation = load_splits("digits", max_train_samples=200)
    # 1797 digits: 359 (20%) held out as the test set, 144 (10% of the 1438 left) for validation.
    assert (len(train), len(validation), len(load_test_set("digits"))) == (200, 144, 359)
    with pytest.raises(DataError, match="no official"):
        load_dataset("digits", split="test")


def image_keys(dataset: Dataset) -> set[bytes]:
    return {image.tobytes() for image in dataset.images}


def test_train_validation_and_test_are_disjoint_and_cover_the_data() -> None:
    whole = load_dataset("digits")
    train, validation = load_splits("digits", split_seed=3)
    test = load_test_set("digits", split_seed=3)
    assert len(train) + len(validation) + len(test) == len(whole)
    keys = [image_keys(part) for part in (train, validation, test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    for part in (train, validation, test):  # stratified: every class in proportion, within one image
        shares = np.bincount(part.labels, minlength=10) / len(part)
        assert np.abs(shares - np.bincount(whole.labels) / len(whole)).max() < 1.5 / len(part) + 0.01


def test_the_test_set_depends_on_the_split_seed_only() -> None:
    test = image_keys(load_test_set("digits", split_seed=0))
    for fraction in (0.05, 0.1, 0.3):
        _, validation = load_splits("digits", validation_fraction=fraction)
        assert not (image_keys(validation) & test)
    assert image_keys(load_test_set("digits", split_seed=1)) != test
    train, _ = load_splits("digits", max_train_samples=100)
    again, _ = load_splits("digits", max_train_samples=100)
    assert image_keys(train) == image_keys(again)


def test_split_record_names_where_each_number_comes_from() -> None:
    train, validation = load_splits("digits")
    record = split_record("digits", train, validation, validation_fraction=0.1, test_fraction=0.2, split_seed=0)
    assert record["validation"].startswith("0.1 of the training data") and record["test_fraction"] == 0.2
    assert (record["train_images"], record["validation_images"]) == (1294, 144)


def test_bad_fractions_are_refused() -> None:
    for fraction in (0, 1, 1.5, -0.1):
        with pytest.raises(DataError, match="validation_fraction"):
            load_splits("digits", validation_fraction=fraction)
        with pytest.raises(DataError, match="test_fraction"):
            load_test_set("digits", test_fraction=fraction)


# Fashion-MNIST --------------------------------------------------------------------------------------------------


def write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist(directory: Path, train_count: int = 20, test_count: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, count in (("train", train_count), ("t10k", test_count)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = np.arange(count, dtype=np.uint8) % 10
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", IDX_IMAGES_MAGIC, images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", IDX_LABELS_MAGIC, labels)
        arrays[prefix] = images
    return arrays


def test_synthetic_idx_files_parse(tmp_path: Path) -> None:
    arrays = write_fashion_mnist(tmp_path, train_count=100)
    train, validation = load_splits(f"fashion-mnist:{tmp_path}")
    # Validation is carved out of the official training set; the official test set is final evaluation's.
    assert train.images.shape == (90, 1, 28, 28) and validation.images.shape == (10, 1, 28, 28)
    official_train = {image.tobytes() for image in (arrays["train"] / np.float32(255)).astype(np.float32)}
    assert image_keys(train) | image_keys(validation) == official_train
    assert np.bincount(validation.labels).tolist() == [1] * 10
    test = load_test_set(f"fashion-mnist:{tmp_path}")
    np.testing.assert_array_equal(test.images[:, 0], arrays["t10k"] / np.float32(255))
    assert len(load_dataset(f"fashion-mnist:{tmp_path}")) == 110
    assert len(load_dataset(f"fashion-mnist:{tmp_path}", split="train", max_samples=10)) == 10


def test_idx_with_wrong_magic_number(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", IDX_IMAGES_MAGIC, np.zeros((20, 1, 1)))
    with pytest.raises(DataError, match="magic number"):
        load_dataset(f"fashion-mnist:{tmp_path}", split="train")


def test_truncated_idx(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match="t10k-images"):
        load_dataset(f"fashion-mnist:{tmp_path}", split="test")


def test_missing_fashion_mnist_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"fashion-mnist:{tmp_path / 'nowhere'}")
    message = one_line_error(excinfo)
    assert "apt-get install dataset-fashion-mnist" in message and "--data fashion-mnist:DIR" in message


@pytest.mark.skipif(not FASHION_MNIST_PRESENT, reason=f"Fashion-MNIST not installed in {FASHION_MNIST_DIR} "
                                                      f"(apt-get install dataset-fashion-mnist)")
def test_installed_fashion_mnist() -> None:
    train, validation = load_splits("fashion-mnist", max_train_samples=500, max_validation_samples=100)
    assert len(load_test_set("fashion-mnist")) == 10_000
    assert train.images.shape == (500, 1, 28, 28) and validation.images.shape == (100, 1, 28, 28)
    assert train.num_classes == 10 and np.bincount(train.labels).tolist() == [50] * 10
    assert train.images.min() >= 0.0 and train.images.max() <= 1.0


# CIFAR-10 -------------------------------------------------------------------------------------------------------


def write_cifar10(directory: Path, records_per_batch: int = 3) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for number, name in enumerate(CIFAR10_FILES["train"] + CIFAR10_FILES["test"]):
        records = np.full((records_per_batch, CIFAR10_RECORD_BYTES), number * 10, dtype=np.uint8)
        records[:, 0] = np.arange(records_per_batch) + number  # labels
        records[:, 1:1025] = 255  # red plane
        (directory / name).write_bytes(records.tobytes())


def test_synthetic_cifar10(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "cifar-10-batches-bin")
    for directory in (tmp_path, tmp_path / "cifar-10-batches-bin"):
        train, validation = load_splits(f"cifar10:{directory}", validation_fraction=0.2)
        assert train.images.shape == (12, 3, 32, 32) and validation.images.shape == (3, 3, 32, 32)
    assert (train.num_classes, train.in_channels) == (10, 3)
    assert sorted(train.labels.tolist() + validation.labels.tolist()) == sorted(
        index + batch for batch in range(5) for index in range(3))
    test = load_test_set(f"cifar10:{directory}")
    assert test.labels.tolist() == [5, 6, 7]
    assert np.all(train.images[:, 0] == 1.0)
    np.testing.assert_allclose(test.images[:, 1:], 50 / 255)


def test_bad_cifar10_batch(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "test_batch.bin").write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match="binary version"):
        load_dataset(f"cifar10:{tmp_path}", split="test")


def test_missing_cifar10_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"cifar10:{tmp_path}")
    message = one_line_error(excinfo)
    assert "data_batch_1.bin" in message and "--data cifar10:DIR" in message


# image folder ---------------------------------------------------------------------------------------------------


def write_image(path: Path, mode: str, size: tuple[int, int], value: int | tuple[int, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def test_grayscale_imagefolder(tmp_path: Path) -> None:
    write_image(tmp_path / "zebra" / "a.png", "L", (6, 4), 255)
    write_image(tmp_path / "ant" / "a.png", "L", (6, 4), 0)
    write_image(tmp_path / "ant" / "nested" / "b.png", "L", (12, 8), 51)
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    dataset = load_dataset(f"imagefolder:{tmp_path}")
    assert dataset.images.shape == (3, 1, 4, 6)  # the first image's size, height before width
    assert dataset.class_names == ("ant", "zebra") and dataset.labels.tolist() == [0, 0, 1]
    np.testing.assert_allclose(dataset.images[:, 0, 0, 0], [0.0, 0.2, 1.0])


def test_color_imagefolder_with_size(tmp_path: Path) -> None:
    write_image(tmp_path / "cat" / "a.png", "L", (5, 5), 0)
    write_image(tmp_path / "dog" / "b.jpg", "RGB", (9, 7), (255, 0, 0))
    dataset = load_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert dataset.images.shape == (2, 3, 8, 8) and dataset.in_channels == 3
    assert dataset.images[1, 0].mean() > 0.9 and dataset.images[1, 2].mean() < 0.1


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}")
    assert "--data imagefolder:DIR" in one_line_error(excinfo)
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(f"imagefolder:{tmp_path}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(f"imagefolder:{tmp_path}")
    (tmp_path / "empty" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_image_size_is_for_image_folders_only() -> None:
    with pytest.raises(DataError, match="imagefolder only"):
        load_splits("digits", image_size=16)
