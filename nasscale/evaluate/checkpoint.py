"""Resumable training: everything a run's next epoch depends on, written after each epoch.

The model, the EMA, the optimizer, the schedule, torch's global random state (dropout, stochastic depth,
augmentation), the data order's generator, the epoch and the history. Written to a temporary file and renamed,
so a ``kill -9`` leaves the previous checkpoint whole. A checkpoint belongs to one run: resuming with other
settings, another architecture or other data is refused in one line rather than mixing two runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasscale.errors import DataError

CHECKPOINT_FILE = "checkpoint.pt"
# Settings that may change between the interrupted run and its resumption: the result does not depend on the
# thread count, and a run may move to another GPU (or to the CPU, where it is no longer bit-exact).
RESUMABLE_CHANGES = frozenset({"threads", "device"})


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a run keeps its checkpoint, and what identifies the run (``identity``: arch, data, settings)."""

    path: Path
    identity: dict[str, Any]

    @classmethod
    def for_run(cls, out_dir: str | Path, *, arch_id: str, data: str, settings: Any, split_seed: int) -> Checkpoint:
        fields = {key: value for key, value in dataclasses.asdict(settings).items() if key not in RESUMABLE_CHANGES}
        identity = {"arch_id": arch_id, "data": data, "split_seed": split_seed,
                    "settings": json.loads(json.dumps(fields, default=str))}
        return cls(Path(out_dir) / CHECKPOINT_FILE, identity)

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        torch.save({"identity": self.identity, **state}, partial)
        os.replace(partial, self.path)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none; one ``DataError`` when it is another run's or unreadable."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception as error:  # torch raises pickle, zip and runtime errors for a damaged file
            raise DataError(f"{self.path}: not a readable checkpoint ({type(error).__name__}); delete it to train "
                            f"from scratch") from None
        saved = state.get("identity", {})
        if saved != self.identity:
            raise DataError(f"{self.path} is from another run ({_first_difference(saved, self.identity)}); use "
                            f"another --out folder, or delete the checkpoint to train from scratch")
        return state


def _first_difference(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    for key in ("arch_id", "data", "split_seed"):
        if saved.get(key) != wanted.get(key):
            return f"{key} {saved.get(key)!r}, this run {wanted.get(key)!r}"
    saved_settings, settings = saved.get("settings", {}), wanted.get("settings", {})
    for key in sorted(set(saved_settings) | set(settings)):
        if saved_settings.get(key) != settings.get(key):
            return f"{key} {saved_settings.get(key)!r}, this run {settings.get(key)!r}"
    return "a different format"


def random_states(generator: torch.Generator) -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "data_order": generator.get_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    generator.set_state(states["data_order"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
