"""Human-readable counts: "385.81M" for people, and the parser for budgets such as "--max-macs 400M"."""

from __future__ import annotations

from nasscale.errors import SpecError

SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def format_count(value: float, digits: int = 2) -> str:
    for suffix in ("T", "G", "M", "K"):
        if abs(value) >= SUFFIXES[suffix]:
            return f"{value / SUFFIXES[suffix]:.{digits}f}{suffix}"
    return f"{value:g}"


def parse_count(text: str | int | float, *, name: str = "value") -> int:
    """Parse "400M", "1.8G", "5e6" or a plain integer into an integer count."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return int(text)
    cleaned = str(text).strip().upper().removesuffix("MACS").removesuffix("FLOPS").strip()
    suffix = cleaned[-1:] if cleaned[-1:] in SUFFIXES and cleaned[-1:] else ""
    number = cleaned[: len(cleaned) - len(suffix)] if suffix else cleaned
    try:
        value = float(number) * SUFFIXES[suffix]
    except ValueError:
        raise SpecError(name, f"must be a count such as 400M, 1.8G or 5000000, got {text!r}") from None
    if value <= 0:
        raise SpecError(name, f"must be positive, got {text!r}")
    return int(value)
