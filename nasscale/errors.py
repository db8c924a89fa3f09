"""Errors that reach the user as one line: where, what was received, how to fix; and the one reading of a user's
text file, so that a bad file is such an error too."""

import os
from pathlib import Path


class NasscaleError(Exception):
    """Base class; ``str(error)`` is a single line fit for a terminal."""


class SpecError(NasscaleError, ValueError):
    """An architecture or search-space field holds a bad value.

    ``path`` is the dotted field path (``stages[2].stride``); ``source`` the file it came from, if any.
    """

    def __init__(self, path: str, message: str, *, source: str | None = None):
        self.path = path
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: {message}" if path else f"{where}{message}")

    def with_source(self, source: str) -> "SpecError":
        return SpecError(self.path, self.message, source=source)


class UnknownNameError(NasscaleError, KeyError):
    """A preset, space, study or trial name that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataError(NasscaleError):
    """A dataset is missing or malformed."""


class TrainingDiverged(NasscaleError):
    """The loss became NaN or infinite; the trial fails, the study goes on."""


class ScalingError(NasscaleError, ValueError):
    """A scaling request no configuration can meet: an unreachable MAC budget, an empty feasible grid."""


class SpaceError(NasscaleError, ValueError):
    """A search space has problems. Unlike the other errors it may span several lines: ``problems`` holds one
    line per problem, each ``FILE: field.path: message``, so one run shows everything to fix."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class InterchangeError(NasscaleError, ValueError):
    """Another library's architecture format (timm's block strings) holds something the spec cannot express, or
    a stage holds something the format cannot; the message names the string or the stage and what it is."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none: for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_text_file(path: str | os.PathLike[str], *, what: str, hint: str = "check the path") -> str:
    """A user's text file (a config, space, architecture or table) as UTF-8 text. A missing, unreadable or binary
    file, or a folder, is one ``SpecError`` naming the file, what was expected and how to fix it."""
    source = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        problem = f"is not UTF-8 text (byte {error.start}); save the {what} as UTF-8"
    except (FileNotFoundError, NotADirectoryError):
        problem = f"no such {what}; {hint}"
    except IsADirectoryError:
        problem = f"is a folder where the {what} should be; {hint}"
    except OSError as error:  # permission denied, an I/O error
        problem = f"cannot read the {what}: {error.strerror or first_line(error)}"
    raise SpecError("", problem, source=source)
