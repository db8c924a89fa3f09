"""Property-based fuzz of the space and config loaders: YAML trees of the right shape with wrong leaves (text for
numbers, lists for names, NaN, null, mappings where a value belongs) load or fail as a nasscale error whose every
line names the file and a field path, never as another exception."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nasscale.errors import NasscaleError
from nasscale.search.config import CONFIG_FIELDS, SearchConfig, load_config_file, make_config
from nasscale.space.parsing import load_space

SPACE = yaml.safe_load((Path(__file__).parents[2] / "search_spaces" / "tiny.yaml").read_text())
CONFIG = {name: value for name, value in SearchConfig(space="tiny", reward="mnas", target_macs=1_000_000,
                                                      max_macs=2_000_000, max_latency=15.0).to_dict().items()
          if name in CONFIG_FIELDS and value is not None}
# "FILE: path.to[0].field: message": the path is a dotted run of names and indices before the message.
FIELD_LINE = re.compile(r"^\S*fuzz\.yaml: [\w\-.\[\]]+: \S")

WRONG_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.one_of(st.integers(-3, 300), st.text(max_size=6)), max_size=3),
    st.dictionaries(st.sampled_from(["low", "high", "base", "block", "x"]), st.integers(-3, 64), max_size=2))


def node_paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every node below the root, containers too (a mapping where a number belongs is a wrong leaf as well)."""
    children = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else []
    found = []
    for key, child in children:
        found.append((*prefix, key))
        found.extend(node_paths(child, (*prefix, key)))
    return found


def replaced(tree: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    copy[path[0]] = replaced(tree[path[0]], path[1:], value)
    return copy


@st.composite
def mutated(draw: Any, base: dict) -> dict:
    tree, paths = base, node_paths(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        try:
            tree = replaced(tree, path, draw(WRONG_LEAVES))
        except (KeyError, IndexError, TypeError):  # an earlier replacement removed the path
            continue
    return tree


def assert_nasscale_error_with_field(error: BaseException) -> None:
    assert isinstance(error, NasscaleError), f"{type(error).__name__}: {error}"
    for line in str(error).splitlines():
        assert FIELD_LINE.match(line), line


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "fuzz.yaml"


@FUZZ
@given(tree=mutated(SPACE))
def test_space_loader_fails_only_with_field_paths(fuzz_file, tree):
    fuzz_file.write_text(yaml.safe_dump(tree))
    try:
        load_space(fuzz_file)
    except Exception as error:  # noqa: BLE001  every failure must be a nasscale error with a field path
        assert_nasscale_error_with_field(error)


@FUZZ
@given(tree=mutated(CONFIG))
def test_config_loader_fails_only_with_field_paths(fuzz_file, tree):
    fuzz_file.write_text(yaml.safe_dump(tree))
    try:
        make_config(load_config_file(str(fuzz_file)), source=str(fuzz_file))
    except Exception as error:  # noqa: BLE001
        assert_nasscale_error_with_field(error)
