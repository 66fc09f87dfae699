"""The layers import one way: tools -> application -> integration -> client, and the client knows no Dagster.

Read from the source with ``ast`` (every import statement, including those inside functions), so a
violation fails here before it leaks into a release.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "influx_assets"
APPLICATION = ("influx_assets.telemetry", "influx_assets.automation", "influx_assets.observability",
               "influx_assets.definitions", "influx_assets.resources", "influx_assets.examples")
#: The only integration modules that may import Dagster.
DAGSTER_FACING = {"resource.py", "io_manager.py", "partition_slices.py", "type_handlers.py", "__init__.py"}


def imports_of(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; this package uses absolute imports"
            names.append(node.module or "")
    return names


def modules_under(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def starts(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("path", modules_under("influxdb/client"), ids=lambda p: p.name)
def test_the_client_layer_imports_neither_dagster_nor_anything_above_it(path: Path) -> None:
    for name in imports_of(path):
        assert not starts(name, "dagster"), f"{path.name} imports {name}"
        assert not starts(name, "influx_assets") or starts(name, "influx_assets.influxdb.client"), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", modules_under("influxdb"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_integration_never_imports_the_application_or_the_tools(path: Path) -> None:
    for name in imports_of(path):
        assert not starts(name, (*APPLICATION, "influx_assets.devtools")), f"{path} imports {name}"
        if path.parent.name == "influxdb" and path.name not in DAGSTER_FACING:
            assert not starts(name, "dagster"), f"{path.name} is not Dagster-facing but imports {name}"


@pytest.mark.parametrize(
    "folder", ["telemetry", "automation", "observability"], ids=str,
)
def test_the_application_uses_only_the_integrations_public_api_and_never_the_tools(folder: str) -> None:
    for path in modules_under(folder):
        for name in imports_of(path):
            assert not starts(name, "influx_assets.devtools"), f"{path} imports {name}"
            if starts(name, "influx_assets.influxdb"):
                assert name == "influx_assets.influxdb", f"{path} reaches into {name}; use influx_assets.influxdb"
        if folder == "telemetry":
            assert not any(starts(n, "influx_assets.automation") for n in imports_of(path)), path


def modules_loaded_by(*imported: str) -> set[str]:
    """Every module a fresh interpreter has loaded after importing ``imported``."""
    probe = f"import sys, {', '.join(imported)}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(done.stdout.split())


def test_loading_the_code_location_imports_no_developer_tool() -> None:
    assert not {m for m in modules_loaded_by("influx_assets.definitions") if starts(m, "influx_assets.devtools")}


def test_the_wheel_packages_the_library_and_not_its_tests() -> None:
    import tomllib

    from setuptools import find_packages

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(where=str(PACKAGE.parent), include=config["include"])
    assert "influx_assets.influxdb.client" in packages and "influx_assets.devtools" in packages
    assert not [p for p in packages if p.startswith("influx_assets_tests")]


def test_importing_the_client_layer_does_not_import_dagster() -> None:
    loaded = modules_loaded_by("influx_assets.influxdb.client.window_store", "influx_assets.influxdb.client.v2")
    assert "influx_assets.influxdb.client.window_store" in loaded and "dagster" not in loaded
