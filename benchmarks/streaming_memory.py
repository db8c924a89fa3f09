"""Peak memory of streaming an image folder, at two folder sizes: it should stay flat as the folder grows.

Generates, once, an ImageFolder of 28x28 grayscale PNGs from Fashion-MNIST's training images (one sub-folder per
class, the 60,000 images repeated in turn when more are asked for), for each size (``--sizes``, by default 10,000
and 100,000 images; kept in ``--folder`` and reused when complete). Then, for each size, a fresh Python process
lists the folder (``StreamingImageFolder``: paths, labels and the images' format from their headers) and trains a
tiny conv net for one epoch on it with ``train_model`` (nasscale's loop, fast-proxy settings), 2 spawned workers
decoding the PNGs (batch 64, one torch thread in the training process), then scores its first 256 images. Measured:

- the training process's peak RSS (VmHWM of /proc/self/status at the end), and its RSS after the imports and
  its peak after the listing, which separate what torch costs from what the folder costs;
- the workers' peak RSS (their VmHWM, polled every 50 ms while they run: the largest of them);
- the in-memory alternative's image array, N x C x H x W x 4 bytes (float32, what ``load_dataset`` would hold;
  ``load_splits`` holds the whole folder and then the split copies, more at its peak).

``getrusage``'s ``ru_maxrss`` is recorded beside them but not used: Linux carries the high-water mark of the
process image an ``exec`` replaces into the new one, so a process started by this script (which holds
Fashion-MNIST while generating) or a spawned worker reports its parent's peak, not its own.

The JSON (written after each size) records the command; the table ends with peak(largest) / peak(smallest) for
the training process, the workers and the in-memory array. Reproduce with

    nice python benchmarks/streaming_memory.py

(generating 100,000 PNGs takes a few minutes the first time; ``--sizes 2000,20000`` runs in about a minute).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

import nasscale
from nasscale.evaluate.data import load_dataset
from nasscale.evaluate.settings import TrainSettings
from nasscale.evaluate.streaming import StreamingImageFolder, batch_count
from nasscale.evaluate.training import train_model

RESULTS = Path(__file__).parent / "results" / "streaming_memory.json"
FOLDER = Path(tempfile.gettempdir()) / "nasscale-streaming-memory"
COMPLETE = ".complete"  # written last: the folder holds that many images (a dot file is no class folder)
MEGABYTE = 2**20


# the folders ----------------------------------------------------------------------------------------------------

VALIDATION_IMAGES = 256  # scored after the epoch, as train_model does: streamed as well


def generate(folder: Path, size: int) -> float | None:
    """Write ``size`` PNGs into ``folder`` unless it already holds them; the seconds it took, None if reused."""
    marker = folder / COMPLETE
    if marker.is_file() and marker.read_text().strip() == str(size):
        return None
    from PIL import Image  # only generation writes images

    started = time.perf_counter()
    if folder.exists():
        shutil.rmtree(folder)
    source = load_dataset("fashion-mnist", split="train")
    images = np.rint(source.images[:, 0] * 255).astype(np.uint8)  # back to the stored bytes, exactly
    class_folders = [folder / f"{label}-{name}".replace("/", "-").replace(" ", "-")
                     for label, name in enumerate(source.class_names)]
    for class_folder in class_folders:
        class_folder.mkdir(parents=True)
    for index in range(size):
        image = index % len(images)
        Image.fromarray(images[image]).save(class_folders[source.labels[image]] / f"{index:06d}.png")
    marker.write_text(str(size))
    return time.perf_counter() - started


def folder_bytes(folder: Path) -> int:
    return sum(entry.stat().st_size for entry in folder.rglob("*.png"))


# one epoch, in a fresh process ----------------------------------------------------------------------------------


def tiny_net(in_channels: int, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))


def status_megabytes(field: str, pid: int | str = "self") -> float | None:
    """A memory line of /proc/PID/status (VmRSS: now, VmHWM: the peak of this program image), None once gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((line for line in status.splitlines() if line.startswith(f"{field}:")), None)
    return None if line is None else int(line.split()[1]) / 1024


def maxrss_megabytes(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


class ChildPeaks(threading.Thread):
    """Polls the peak RSS (VmHWM) of this process's children, the DataLoader workers, while they run."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval, self.peaks, self.done = interval, {}, threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            for pid in children():
                if pid not in self.peaks and not is_spawned_worker(pid):
                    continue  # multiprocessing's resource tracker, say
                peak = status_megabytes("VmHWM", pid)
                if peak is not None:
                    self.peaks[pid] = max(peak, self.peaks.get(pid, 0.0))

    def stop(self) -> dict[int, float]:
        self.done.set()
        self.join()
        return self.peaks


def is_spawned_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def children() -> list[int]:
    pids = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:  # a thread that has just ended
            continue
    return pids


def measure(folder: Path, *, batch_size: int, workers: int, threads: int) -> dict:
    """One epoch of training on ``folder``, streamed; run in a process of its own (``--measure``)."""
    started = time.perf_counter()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    after_imports = status_megabytes("VmRSS")
    dataset = StreamingImageFolder(folder)
    listing_seconds = time.perf_counter() - started
    peak_after_listing = status_megabytes("VmHWM")
    model = tiny_net(dataset.in_channels, dataset.num_classes)
    # nasscale's own training loop on the streamed folder (fast-proxy settings), scored on its first images.
    validation = dataset.subset(np.arange(min(VALIDATION_IMAGES, len(dataset))))
    settings = TrainSettings(epochs=1, batch_size=batch_size, threads=threads)
    epoch_started = time.perf_counter()
    watcher = ChildPeaks()
    watcher.start()
    result = train_model(model, dataset, validation, settings, workers=workers)
    epoch_seconds = time.perf_counter() - epoch_started
    full, rest = divmod(len(dataset), batch_size)
    images = full * batch_size + (rest if rest > 1 or full == 0 else 0)  # a lone trailing image is dropped
    gc.collect()
    child_peaks = watcher.stop()
    spawned = list(child_peaks.values())
    channels, height, width = dataset.image_shape
    return {
        "images": len(dataset), "images_trained": images, "batches": batch_count(len(dataset), batch_size),
        "image_shape": [channels, height, width], "mean_train_loss": result.history[0].train_loss,
        "listing_seconds": listing_seconds, "epoch_seconds": epoch_seconds,
        "images_per_second": result.train_images_per_second,
        "process_seconds": time.perf_counter() - started,
        "main_rss_after_imports_mb": after_imports, "main_peak_rss_after_listing_mb": peak_after_listing,
        "main_peak_rss_mb": status_megabytes("VmHWM"),
        "worker_peak_rss_mb": max(spawned) if spawned else None, "workers_seen": len(spawned),
        "main_ru_maxrss_mb": maxrss_megabytes(resource.RUSAGE_SELF),
        "children_ru_maxrss_mb": maxrss_megabytes(resource.RUSAGE_CHILDREN),
        "in_memory_array_mb": len(dataset) * channels * height * width * 4 / MEGABYTE,
    }


def measure_in_fresh_process(folder: Path, options: argparse.Namespace) -> dict:
    # The same nasscale as this process's, whatever is installed.
    package_root = str(Path(nasscale.__file__).resolve().parent.parent)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [package_root, os.environ.get("PYTHONPATH")])), "OMP_NUM_THREADS": str(options.threads)}
    command = [sys.executable, __file__, "--measure", str(folder), "--batch-size", str(options.batch_size),
               "--workers", str(options.workers), "--threads", str(options.threads)]
    started = time.perf_counter()
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"measuring {folder} failed:\n{result.stderr[-4000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "wall_seconds": time.perf_counter() - started}


# the report -----------------------------------------------------------------------------------------------------


TABLE = (  # heading, row key, format; memory in MB
    ("images", "images", ","), ("listing s", "listing_seconds", ".1f"), ("epoch s", "epoch_seconds", ".1f"),
    ("images/s", "images_per_second", ".0f"), ("main after imports", "main_rss_after_imports_mb", ".0f"),
    ("main peak", "main_peak_rss_mb", ".0f"), ("worker peak", "worker_peak_rss_mb", ".0f"),
    ("in-memory array", "in_memory_array_mb", ".0f"))


def print_table(rows: list[dict]) -> None:
    widths = [max(len(heading), 9) for heading, _, _ in TABLE]
    print("\n" + " ".join(heading.rjust(width) for (heading, _, _), width in zip(TABLE, widths, strict=True))
          + "   (memory in MB)")
    for row in rows:
        print(" ".join(format(row[key] or 0, form).rjust(width)
                       for (_, key, form), width in zip(TABLE, widths, strict=True)))


def ratios(rows: list[dict]) -> dict[str, float]:
    small, large = rows[0], rows[-1]
    return {"images": large["images"] / small["images"],
            "main_peak_rss": large["main_peak_rss_mb"] / small["main_peak_rss_mb"],
            "worker_peak_rss": (large["worker_peak_rss_mb"] or 0) / (small["worker_peak_rss_mb"] or 1),
            "in_memory_array": large["in_memory_array_mb"] / small["in_memory_array_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="images per folder, comma-separated")
    parser.add_argument("--folder", type=Path, default=FOLDER, help="where the folders are generated and kept")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the fresh process's part
    options = parser.parse_args()
    if options.measure:
        print(json.dumps(measure(options.measure, batch_size=options.batch_size, workers=options.workers,
                                 threads=options.threads)))
        return
    sizes = sorted(int(size) for size in options.sizes.split(","))
    settings = {
        "command": " ".join(["nice python benchmarks/streaming_memory.py", *sys.argv[1:]]),
        "sizes": sizes, "batch_size": options.batch_size, "workers": options.workers,
        "training_threads": options.threads, "source": "fashion-mnist train images as 28x28 grayscale PNGs",
        "folder": str(options.folder), "python": platform.python_version(), "torch": torch.__version__,
        "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg(),
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    notes = [
        "main = the training process; worker = the largest DataLoader worker (spawned, one torch thread each). "
        "Peaks are VmHWM from /proc; ru_maxrss figures are kept for reference only: after exec Linux keeps the "
        "replaced image's high-water mark, so they show the parent's peak.",
        "main_rss_after_imports_mb is torch and nasscale loaded; the folder's own cost is the rest of the peak "
        "(paths, labels and the listing's transient Path objects, plus batches in flight).",
        "in_memory_array_mb = N x C x H x W x 4 bytes: the float32 array the in-memory path holds per copy.",
        "listing_seconds: listing the folder and reading every image's header (the format); epoch_seconds "
        "includes starting the 2 workers (spawn: each imports torch).",
    ]
    rows: list[dict] = []
    for size in sizes:
        folder = options.folder / f"fashion-mnist-{size}"
        print(f"{size:,} images in {folder}: ", end="", flush=True)
        generated = generate(folder, size)
        print("reused, " if generated is None else f"generated in {generated:.0f} s, ", end="", flush=True)
        row = {**measure_in_fresh_process(folder, options), "generation_seconds": generated,
               "folder_png_bytes": folder_bytes(folder)}
        rows.append(row)
        print(f"epoch {row['epoch_seconds']:.0f} s, main peak {row['main_peak_rss_mb']:.0f} MB, "
              f"worker peak {row['worker_peak_rss_mb'] or 0:.0f} MB")
        summary = {"ratios_largest_to_smallest": ratios(rows)} if len(rows) > 1 else {}
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text(json.dumps({"settings": settings, "summary": summary, "notes": notes,
                                              "rows": rows}, indent=2))
    print_table(rows)
    if len(rows) > 1:
        figures = ratios(rows)
        print(f"\n{figures['images']:.0f}x the images: main peak RSS x{figures['main_peak_rss']:.2f}, worker peak "
              f"RSS x{figures['worker_peak_rss']:.2f}, in-memory array x{figures['in_memory_array']:.1f}")
    print(f"saved {options.output}")


if __name__ == "__main__":
    main()
