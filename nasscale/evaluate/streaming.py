"""Image folders too big to hold in memory, streamed: file paths and labels only, each image decoded when a batch
asks for it, in DataLoader worker processes.

The in-memory path (``nasscale.evaluate.data``) stays for the small sets; this one keeps memory flat as a folder
grows. It picks exactly the images the in-memory path picks for each split (``streaming_splits`` is
``load_splits("imagefolder:DIR")`` less the decoding, ``streaming_test_set`` is ``load_test_set``), from the same
index functions, and decodes each image as ``data.decode_image`` does: same mode, size and values.

``epoch_loader`` makes one epoch's ``DataLoader``. Its order is one ``torch.randperm`` drawn from the caller's
generator, the draw the in-memory loop makes per epoch, so a seeded run (and a resumed one) replays its batches
whatever the number of workers, and a lone trailing image is dropped (batch norm cannot train on one).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate
from torch.utils.data import Dataset as TorchDataset

from nasscale.errors import DataError
from nasscale.evaluate.data import (
    DataSource,
    carve_validation,
    channels_first,
    check_fraction,
    check_image_size,
    class_images,
    decode_image,
    held_out_test_indices,
    image_format,
    imagefolder_classes,
    parse_data_source,
    training_pool_indices,
)

Sample = tuple[torch.Tensor, int]
Batch = tuple[torch.Tensor, torch.Tensor]  # images float32 (N, C, H, W) in [0, 1], labels int64 (N,)

# How worker processes start. Not fork: the training process already runs torch's intra-op (OpenMP) threads, and
# in a search Optuna's heartbeat or Ray's threads; a child forked while another thread holds a lock (malloc's,
# OpenMP's, a logging handler's) can hang for good, and Python 3.12 warns on forking a threaded process. Spawn
# starts a clean interpreter, and its workers are this process's children (their peak memory shows in
# RUSAGE_CHILDREN). forkserver is as safe, but its server is one per process and what it preloads is global
# state. The price: each worker imports torch afresh, once per epoch (workers are not kept between epochs).
WORKER_START = "spawn"
# Seeds the workers' own random generators. Nothing in decoding is random; a generator of its own keeps
# DataLoader from drawing this seed out of the caller's generator or torch's global one, and so from shifting
# the order of later epochs or the model's randomness.
WORKER_SEED = 0


class StreamingImageFolder(TorchDataset[Sample]):
    """An image folder (one sub-folder of images per class) read one image at a time.

    Holds the root, the class names, each file relative to its class folder (one bytes array: compact, and cheap
    to send to each worker) and ``labels`` (int64), listed as ``load_dataset`` lists them; ``dataset[i]`` decodes
    image i with Pillow to float32 ``(C, H, W)`` in [0, 1] and returns it with its label. One grayscale channel
    only if every image of the folder is grayscale, else RGB; squares of ``image_size`` if given, else the first
    image's size: the format ``load_dataset("imagefolder:DIR")`` decodes to.
    """

    def __init__(self, root: str | os.PathLike[str], *, image_size: int | None = None) -> None:
        check_image_size(image_size)
        self.root = Path(root)
        class_dirs = imagefolder_classes(self.root)
        self.name = f"imagefolder:{self.root.name}"
        self.class_names: tuple[str, ...] = tuple(path.name for path in class_dirs)
        self.num_classes = len(class_dirs)
        names, labels = [], []
        for label, class_dir in enumerate(class_dirs):
            # One class's Path objects at a time (a few hundred bytes each), kept as bytes relative to the class.
            start = len(str(class_dir)) + 1
            names.append(np.array([os.fsencode(str(path)[start:]) for path in class_images(class_dir)]))
            labels.append(np.full(len(names[-1]), label, dtype=np.int64))
        self._files: np.ndarray = np.concatenate(names)
        self.labels: np.ndarray = np.concatenate(labels)
        self.mode, self.size = image_format(map(self.path, range(len(self.labels))), image_size)  # (width, height)
        self.in_channels = 1 if self.mode == "L" else 3

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image this dataset yields."""
        width, height = self.size
        return self.in_channels, height, width

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, index: int) -> Path:
        return self.root / self.class_names[self.labels[index]] / os.fsdecode(self._files[index])

    def __getitem__(self, index: int) -> Sample:
        pixels = channels_first(decode_image(self.path(index), self.mode, self.size))
        return torch.from_numpy(np.ascontiguousarray(pixels)), int(self.labels[index])

    def subset(self, indices: np.ndarray | Sequence[int]) -> StreamingImageFolder:
        """The images at ``indices``, in folder order (as the in-memory splits keep them), in the same format."""
        keep = np.sort(np.asarray(indices, dtype=np.int64))
        subset = copy.copy(self)
        subset._files, subset.labels = self._files[keep], self.labels[keep]
        return subset


def streaming_splits(root: str | os.PathLike[str] | DataSource, *, validation_fraction: float,
                     test_fraction: float, split_seed: int, image_size: int | None = None,
                     max_train_samples: int | None = None,
                     max_validation_samples: int | None = None) -> tuple[StreamingImageFolder, StreamingImageFolder]:
    """(train, validation) of an image folder, streamed: the images ``load_splits`` keeps, with the same arguments,
    in the same order, none of them decoded yet."""
    source = _imagefolder_source(root)
    check_fraction("validation_fraction", validation_fraction)
    check_fraction("test_fraction", test_fraction)
    whole = StreamingImageFolder(source.path or "", image_size=image_size)
    pool = training_pool_indices(whole.labels, test_fraction=test_fraction, split_seed=split_seed, name=str(source))
    train, validation = carve_validation(whole.labels, pool, validation_fraction=validation_fraction,
                                         split_seed=split_seed, name=str(source), max_train_samples=max_train_samples,
                                         max_validation_samples=max_validation_samples)
    return whole.subset(train), whole.subset(validation)


def streaming_test_set(root: str | os.PathLike[str] | DataSource, *, test_fraction: float, split_seed: int,
                       image_size: int | None = None, max_samples: int | None = None) -> StreamingImageFolder:
    """The test set held out of an image folder, streamed: the images ``load_test_set`` keeps. For final
    evaluation only, as there."""
    source = _imagefolder_source(root)
    check_fraction("test_fraction", test_fraction)
    whole = StreamingImageFolder(source.path or "", image_size=image_size)
    return whole.subset(held_out_test_indices(whole.labels, test_fraction=test_fraction, split_seed=split_seed,
                                              name=str(source), max_samples=max_samples))


def _imagefolder_source(root: str | os.PathLike[str] | DataSource) -> DataSource:
    # "imagefolder:DIR" as --data names it, or the folder itself.
    if isinstance(root, DataSource):
        source = root
    elif isinstance(root, str) and root.strip().lower().startswith("imagefolder:"):
        source = parse_data_source(root)
    else:
        source = DataSource("imagefolder", os.path.expanduser(os.fspath(root)))
    if source.kind != "imagefolder":
        raise DataError(f"only image folders stream, not {source}; pass imagefolder:DIR, or load {source.kind} "
                        f"into memory with load_splits")
    return source


# one epoch ------------------------------------------------------------------------------------------------------


def batch_count(count: int, batch_size: int) -> int:
    """Training batches of an epoch over ``count`` images: a lone trailing image is dropped, as batch norm cannot
    train on one (the rule of ``nasscale.evaluate.training``'s loop)."""
    full, rest = divmod(count, batch_size)
    return full + (rest > 1 or full == 0)


def epoch_loader(dataset: StreamingImageFolder, *, batch_size: int, generator: torch.Generator, workers: int = 0,
                 shuffle: bool = True, device: str | torch.device = "cpu") -> DataLoader[Sample]:
    """One epoch of ``dataset`` in batches (images float32 ``(N, C, H, W)``, labels int64 ``(N,)``), decoded by
    ``workers`` processes (0: in this one). Make one per epoch.

    ``shuffle`` (training): the order is ``torch.randperm(len(dataset), generator=generator)``, drawn here, once,
    the in-memory loop's draw, so the caller's seeded generator decides it; a lone trailing image is dropped.
    Without it (evaluation) every image comes, in order, and the generator is not drawn from. Workers take one
    torch thread each and are not kept after the epoch; memory is pinned only for a CUDA ``device``. An
    unreadable image raises ``DataError`` with its one-line message, from a worker as from this process.
    """
    if isinstance(batch_size, bool) or batch_size < 1:
        raise DataError(f"batch_size must be a positive number of images, got {batch_size!r}")
    if isinstance(workers, bool) or workers < 0:
        raise DataError(f"workers must be 0 (decode in this process) or more, got {workers!r}")
    count = len(dataset)
    if count == 0:
        raise DataError(f"{dataset.name}: no images to load")
    if shuffle:
        batches = _Batches(torch.randperm(count, generator=generator), batch_size, batch_count(count, batch_size))
    else:
        batches = _Batches(torch.arange(count), batch_size, -(-count // batch_size))
    spawned = workers > 0
    return _EpochLoader(_Guarded(dataset), batch_sampler=batches, num_workers=workers, collate_fn=_collate,
                        pin_memory=torch.device(device).type == "cuda", worker_init_fn=_one_thread if spawned else None,
                        multiprocessing_context=WORKER_START if spawned else None, persistent_workers=False,
                        generator=torch.Generator().manual_seed(WORKER_SEED))


class _Batches:
    """An epoch's batches of indices, cut from one order as the loader asks for them (no list of N ints)."""

    def __init__(self, order: torch.Tensor, batch_size: int, batches: int) -> None:
        self.order, self.batch_size, self.batches = order, batch_size, batches

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, self.batches * self.batch_size, self.batch_size):
            yield self.order[start:start + self.batch_size].tolist()


class _Failed:
    """A batch with an unreadable image, carried out of the worker as data: DataLoader would re-raise the
    exception itself wrapped in the worker's traceback, several lines, rather than the one-line message."""

    def __init__(self, message: str) -> None:
        self.message = message


class _Guarded(TorchDataset[Sample]):
    def __init__(self, dataset: StreamingImageFolder) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> list[Sample] | _Failed:  # DataLoader fetches a batch with this
        try:
            return [self.dataset[index] for index in indices]
        except DataError as error:
            return _Failed(str(error))


def _collate(samples: list[Sample] | _Failed) -> Batch | _Failed:
    if isinstance(samples, _Failed):
        return samples
    images, labels = default_collate(samples)
    return images, labels


def _one_thread(worker_id: int) -> None:
    torch.set_num_threads(1)  # DataLoader sets one thread per worker too; said here so that it stays so


class _EpochLoader(DataLoader[Sample]):
    """A DataLoader that raises a batch's ``DataError`` in one line, after shutting its workers down."""

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        return _checked(super().__iter__())


def _checked(batches: Iterator[Batch | _Failed]) -> Iterator[Batch]:
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        if isinstance(batch, _Failed):
            del batches  # the last reference to the loader's iterator: its workers stop now, not when collected
            raise DataError(batch.message)
        yield batch
