"""The floor environment CI builds (.ci/floor-constraints.txt) pins exactly the floors pyproject.toml admits."""

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _release(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in version.split(".")]
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def test_every_declared_floor_is_pinned_in_the_floor_constraints() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    floors = {}
    for requirement in declared:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9.]+).*", requirement)
        assert match, f"{requirement!r} declares no floor (>=): the floor environment could not test it"
        floors[match.group(1).lower()] = _release(match.group(2))
    pins = {}
    for line in (REPO / ".ci" / "floor-constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = _release(version.strip())
    assert pins == floors
