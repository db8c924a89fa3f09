import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from nasscale.errors import DataError
from nasscale.evaluate.data import load_dataset, load_splits, load_test_set, parse_data_source
from nasscale.evaluate.final import train_and_save
from nasscale.evaluate.settings import TrainSettings
from nasscale.evaluate.streaming import (
    StreamingImageFolder,
    batch_count,
    epoch_loader,
    streaming_splits,
    streaming_test_set,
)
from nasscale.evaluate.training import train_model


def image_folder(root: Path, count: int = 40, *, color: bool = False) -> Path:
    """``count`` PNGs in 2 classes (one in a nested folder, one of another size): image i's pixels start at i, so
    any two images differ."""
    for index in range(count):
        folder = root / ("cat" if index % 3 else "dog") / ("nested" if index == 4 else "")
        folder.mkdir(parents=True, exist_ok=True)
        side = 10 if index == 7 else 8
        pixels = (np.arange(side * side).reshape(side, side) * 2 + index).astype(np.uint8)
        image = Image.fromarray(pixels)
        (image.convert("RGB") if color and index == 5 else image).save(folder / f"{index:03d}.png")
    return root


def decoded(dataset: StreamingImageFolder) -> np.ndarray:
    return np.stack([dataset[index][0].numpy() for index in range(len(dataset))])


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("validation_fraction", "test_fraction", "split_seed", "color"),
                         [(0.2, 0.25, 0, False), (0.5, 0.1, 3, True)])
def test_splits_are_the_in_memory_splits(tmp_path: Path, validation_fraction: float, test_fraction: float,
                                         split_seed: int, color: bool) -> None:
    root = image_folder(tmp_path, color=color)
    fractions = {"validation_fraction": validation_fraction, "test_fraction": test_fraction, "split_seed": split_seed}
    for image_size in (None, 6):
        in_memory = load_splits(f"imagefolder:{root}", image_size=image_size, **fractions)
        streamed = streaming_splits(root, image_size=image_size, **fractions)
        for memory, stream in zip(in_memory, streamed, strict=True):
            np.testing.assert_array_equal(stream.labels, memory.labels)
            np.testing.assert_array_equal(decoded(stream), memory.images)  # the same files, decoded alike
            assert (stream.name, stream.num_classes, stream.in_channels, stream.class_names) == \
                   (memory.name, memory.num_classes, memory.in_channels, memory.class_names)
            assert stream.image_shape == memory.images.shape[1:]
    test = load_test_set(f"imagefolder:{root}", test_fraction=test_fraction, split_seed=split_seed)
    streamed_test = streaming_test_set(f"imagefolder:{root}", test_fraction=test_fraction, split_seed=split_seed)
    np.testing.assert_array_equal(streamed_test.labels, test.labels)
    np.testing.assert_array_equal(decoded(streamed_test), test.images)


def test_sample_limits_are_the_in_memory_ones(tmp_path: Path) -> None:
    root = image_folder(tmp_path)
    settings = {"validation_fraction": 0.3, "test_fraction": 0.2, "split_seed": 1}
    in_memory = load_splits(f"imagefolder:{root}", max_train_samples=9, max_validation_samples=4, **settings)
    streamed = streaming_splits(root, max_train_samples=9, max_validation_samples=4, **settings)
    for memory, stream in zip(in_memory, streamed, strict=True):
        np.testing.assert_array_equal(decoded(stream), memory.images)
    test = load_test_set(f"imagefolder:{root}", test_fraction=0.2, split_seed=1, max_samples=3)
    np.testing.assert_array_equal(decoded(streaming_test_set(root, test_fraction=0.2, split_seed=1, max_samples=3)),
                                  test.images)


def test_loader_batches_are_the_in_memory_images(tmp_path: Path) -> None:
    root = image_folder(tmp_path, 41)
    memory = load_dataset(f"imagefolder:{root}")
    dataset = StreamingImageFolder(root)
    loader = epoch_loader(dataset, batch_size=8, generator=torch.Generator().manual_seed(5))
    order = torch.randperm(len(memory), generator=torch.Generator().manual_seed(5))  # the in-memory loop's draw
    expected = order.split(8)[:batch_count(len(memory), 8)]
    batches = list(loader)
    assert len(loader) == len(batches) == len(expected) == 5  # 41 = 5 x 8 + a lone image, dropped
    for (images, labels), indices in zip(batches, expected, strict=True):
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        np.testing.assert_array_equal(images.numpy(), memory.images[indices.numpy()])
        np.testing.assert_array_equal(labels.numpy(), memory.labels[indices.numpy()])
    in_order = list(epoch_loader(dataset, batch_size=8, generator=torch.Generator(), shuffle=False))
    assert [len(labels) for _, labels in in_order] == [8, 8, 8, 8, 8, 1]  # evaluation: every image
    np.testing.assert_array_equal(torch.cat([images for images, _ in in_order]).numpy(), memory.images)


def test_the_order_follows_the_generator(tmp_path: Path) -> None:
    dataset = StreamingImageFolder(image_folder(tmp_path, 24))

    def order(generator: torch.Generator) -> list[int]:
        batches = epoch_loader(dataset, batch_size=5, generator=generator)
        return [int(image[0, 0, 0] * 255) for images, _ in batches for image in images]  # pixel 0 is the index

    assert order(torch.Generator().manual_seed(1)) == order(torch.Generator().manual_seed(1))
    assert order(torch.Generator().manual_seed(1)) != order(torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(3)
    first, second = order(generator), order(generator)  # a run's epochs, then a resumed run's
    assert first != second
    resumed = torch.Generator().manual_seed(3)
    torch.randperm(24, generator=resumed)  # one draw per epoch, as the in-memory loop makes
    assert order(resumed) == second
    state = torch.get_rng_state()
    order(torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)  # torch's global generator is not drawn from


def test_two_workers_give_the_same_batches(tmp_path: Path) -> None:
    dataset = StreamingImageFolder(image_folder(tmp_path, 30, color=True))
    single, spawned = (list(epoch_loader(dataset, batch_size=7, generator=torch.Generator().manual_seed(0),
                                         workers=workers)) for workers in (0, 2))
    assert len(single) == len(spawned) == 5  # 30 = 4 x 7 + 2: a batch of two is kept
    for (images, labels), (worker_images, worker_labels) in zip(single, spawned, strict=True):
        assert images.shape[1] == 3
        assert torch.equal(images, worker_images) and torch.equal(labels, worker_labels)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_image_is_a_one_line_data_error(tmp_path: Path, workers: int) -> None:
    dataset = StreamingImageFolder(image_folder(tmp_path, 12))
    broken = dataset.path(5)
    broken.write_bytes(b"not a png")  # after the listing: only decoding finds it
    with pytest.raises(DataError) as excinfo:
        list(epoch_loader(dataset, batch_size=4, generator=torch.Generator(), workers=workers))
    message = one_line(excinfo)
    assert "cannot read" in message and str(broken) in message
    assert not multiprocessing.active_children()  # the workers were shut down, not left to the collector


def test_bad_arguments(tmp_path: Path) -> None:
    dataset = StreamingImageFolder(image_folder(tmp_path, 6))
    with pytest.raises(DataError, match="batch_size"):
        epoch_loader(dataset, batch_size=0, generator=torch.Generator())
    with pytest.raises(DataError, match="workers"):
        epoch_loader(dataset, batch_size=2, generator=torch.Generator(), workers=-1)
    with pytest.raises(DataError, match="only image folders"):
        streaming_splits(parse_data_source("digits"), validation_fraction=0.2, test_fraction=0.2, split_seed=0)
    with pytest.raises(DataError, match="no folder"):
        streaming_splits(tmp_path / "nowhere", validation_fraction=0.2, test_fraction=0.2, split_seed=0)


def test_streamed_training_is_in_memory_training(tmp_path: Path) -> None:
    """The same folder trained streamed (two worker processes) and from memory: the same batches, the same run."""
    root = image_folder(tmp_path, 60)
    memory = load_splits(f"imagefolder:{root}", validation_fraction=0.25, test_fraction=0.2, split_seed=0)
    streamed = streaming_splits(root, validation_fraction=0.25, test_fraction=0.2, split_seed=0)
    settings = TrainSettings(epochs=2, batch_size=8, resolution=12)

    def run(train, validation, workers: int) -> list[tuple[float, float]]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(memory[0].in_channels, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, memory[0].num_classes))
        result = train_model(model, train, validation, settings, workers=workers)
        return [(record.train_loss, record.validation_accuracy) for record in result.history]

    expected = run(*memory, workers=0)
    for streamed_epoch, memory_epoch in zip(run(*streamed, workers=2), expected, strict=True):
        assert streamed_epoch == pytest.approx(memory_epoch, rel=1e-6)


def test_nasscale_train_streams_a_folder_to_the_in_memory_result(tmp_path: Path, tiny_arch) -> None:
    root = image_folder(tmp_path / "folder", 60)
    arch = tiny_arch.replace(resolution=12)
    settings = TrainSettings(epochs=2, batch_size=8, resolution=12)
    data = f"imagefolder:{root}"
    memory = train_and_save(arch, data, tmp_path / "memory", settings=settings, validation_fraction=0.25)
    streamed = train_and_save(arch, data, tmp_path / "streamed", settings=settings, validation_fraction=0.25,
                              stream=True, workers=1)
    assert streamed["test_images"] == memory["test_images"] > 0
    for streamed_epoch, memory_epoch in zip(streamed["history"], memory["history"], strict=True):
        assert streamed_epoch == pytest.approx(memory_epoch, rel=1e-6)
    assert streamed["test_accuracy"] == pytest.approx(memory["test_accuracy"])
