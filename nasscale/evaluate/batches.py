"""Where the training loop's batches come from: an in-memory dataset (resized once per size and kept) or a streamed
image folder (decoded by worker processes, resized per batch), behind one interface.

An epoch's order is one ``torch.randperm`` drawn from the run's data-order generator, whichever the source, so a
seeded run and a resumed one replay the same batches. Under data parallelism each process trains its slice of
every global batch (``rank`` of ``world``): the processes together see exactly one process's batches.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from nasscale.evaluate.data import Dataset, stratified_indices
from nasscale.evaluate.streaming import StreamingImageFolder, batch_count, epoch_loader

RECALIBRATION_BATCHES = 8  # batches of the epoch that re-estimate batch-norm statistics before scoring
RESIZED_COPIES_PER_DATASET = 2  # one copy of Fashion-MNIST at 32 px is ~250 MB

Batch = tuple[torch.Tensor, torch.Tensor]  # images float32 (N, C, H, W) in [0, 1] on the device, labels int64 (N,)
AnyDataset = Dataset | StreamingImageFolder


class TrainingBatches:
    """The training split as batches. ``resolution`` is the deployment size (None: the images' own), at which
    batch norm is recalibrated; ``epoch(size=...)`` trains at another (progressive learning)."""

    def __init__(self, dataset: AnyDataset, *, resolution: int | None, max_train_samples: int | None, seed: int,
                 device: torch.device, workers: int = 0, rank: int = 0, world: int = 1) -> None:
        self.dataset, self.resolution, self.device, self.workers = dataset, resolution, device, workers
        self.rank, self.world = rank, world
        self.keep: torch.Tensor | None = None  # a stratified sample of the split, chosen by the seed
        if max_train_samples is not None and max_train_samples < len(dataset):
            chosen = stratified_indices(dataset.labels, max_train_samples, seed=seed)
            if isinstance(dataset, StreamingImageFolder):
                self.dataset = dataset.subset(chosen)
            else:
                self.keep = torch.from_numpy(chosen)
        self.labels = torch.from_numpy(self.dataset.labels if self.keep is None else self.dataset.labels[self.keep])
        self._recalibration: list[torch.Tensor] = []
        self._on_device: dict[int | None, torch.Tensor] = {}  # the sizes in use, sampled and moved once

    @property
    def count(self) -> int:
        return len(self.labels)

    @property
    def native_size(self) -> int:
        if isinstance(self.dataset, StreamingImageFolder):
            return self.dataset.image_shape[-1]
        return int(self.dataset.images.shape[-1])

    def steps_per_epoch(self, batch_size: int) -> int:
        return batch_count(self.count, batch_size)

    def first_image(self) -> torch.Tensor:
        if isinstance(self.dataset, StreamingImageFolder):
            return resize(self.dataset[0][0][None], self.resolution).to(self.device)
        return self._images(self.resolution)[:1]

    def epoch(self, generator: torch.Generator, batch_size: int, *, size: int | None) -> Iterator[Batch]:
        """One epoch's batches at ``size``, in the order the generator draws; this process's slice of each."""
        self._recalibration = []
        if isinstance(self.dataset, StreamingImageFolder):
            loader = epoch_loader(self.dataset, batch_size=batch_size, generator=generator, workers=self.workers,
                                  device=self.device)
            for images, labels in loader:
                images, labels = self._slice(images), self._slice(labels)
                if len(self._recalibration) < RECALIBRATION_BATCHES:
                    self._recalibration.append(images)
                yield resize(images.to(self.device), size), labels.to(self.device)
            return
        images, labels = self._images(size), self.labels.to(self.device)
        order = torch.randperm(self.count, generator=generator)
        batches = order.split(batch_size)[:batch_count(self.count, batch_size)]
        for batch in batches:
            batch = self._slice(batch)
            if len(self._recalibration) < RECALIBRATION_BATCHES:
                self._recalibration.append(batch)
            yield images[batch], labels[batch]

    def recalibration(self) -> list[torch.Tensor]:
        """The last epoch's first batches at the deployment resolution, to re-estimate batch-norm statistics."""
        if isinstance(self.dataset, StreamingImageFolder):
            return [resize(images, self.resolution).to(self.device) for images in self._recalibration]
        images = self._images(self.resolution)
        return [images[batch] for batch in self._recalibration]

    def _images(self, size: int | None) -> torch.Tensor:
        if not isinstance(self.dataset, Dataset):  # a streamed folder is never held whole
            raise TypeError(f"{self.dataset.name} is streamed: it has no in-memory images")
        if size not in self._on_device:
            if len(self._on_device) >= RESIZED_COPIES_PER_DATASET:  # progressive learning moved on a stage
                self._on_device.pop(next(iter(k for k in self._on_device if k != self.resolution)))
            images = images_at(self.dataset, size)
            self._on_device[size] = (images if self.keep is None else images[self.keep]).to(self.device)
        return self._on_device[size]

    def _slice(self, batch: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return batch
        share = len(batch) // self.world
        return batch[self.rank * share:(self.rank + 1) * share]


def evaluation_batches(dataset: AnyDataset, *, resolution: int | None, batch_size: int, device: torch.device,
                       workers: int = 0) -> Iterator[Batch]:
    """Every image of ``dataset`` once, in order, at ``resolution``: validation and the test set."""
    if isinstance(dataset, StreamingImageFolder):
        loader = epoch_loader(dataset, batch_size=batch_size, generator=torch.Generator(), workers=workers,
                              shuffle=False, device=device)
        for images, labels in loader:
            yield resize(images.to(device), resolution), labels.to(device)
        return
    images, labels = images_at(dataset, resolution).to(device), torch.from_numpy(dataset.labels).to(device)
    for start in range(0, len(labels), batch_size):
        yield images[start:start + batch_size], labels[start:start + batch_size]


# Resized images per dataset object, so that a study resizes once per resolution rather than once per trial.
_RESIZED: weakref.WeakKeyDictionary[Dataset, dict[int | None, torch.Tensor]] = weakref.WeakKeyDictionary()


def images_at(dataset: Dataset, resolution: int | None) -> torch.Tensor:
    copies = _RESIZED.setdefault(dataset, {})
    if resolution not in copies:
        if len(copies) >= RESIZED_COPIES_PER_DATASET:
            copies.pop(next(iter(copies)))
        images = dataset.images if dataset.images.flags.writeable else dataset.images.copy()
        copies[resolution] = resize(torch.from_numpy(np.ascontiguousarray(images)), resolution)
    return copies[resolution]


def resize(images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    if resolution is None or tuple(images.shape[-2:]) == (resolution, resolution):
        return images
    shrinking = resolution < max(images.shape[-2:])
    with torch.no_grad():  # not inference_mode: its tensors could not be saved for backward later
        return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False,
                             antialias=shrinking)
