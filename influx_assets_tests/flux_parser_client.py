"""Run Flux programs through the real Flux parser (see ``flux_parser/README.md``).

``flux_parser/parse.mjs`` loads the Rust Flux parser compiled to WebAssembly (npm package
``@influxdata/flux-lsp-browser``) under Node.js. One ``node`` process parses a whole batch.
Install its dependency with ``npm ci --prefix influx_assets_tests/flux_parser``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PARSER_DIR = Path(__file__).resolve().with_name("flux_parser")
INSTALL_COMMAND = "npm ci --prefix influx_assets_tests/flux_parser"
_SCRIPT = PARSER_DIR / "parse.mjs"
_WASM = PARSER_DIR / "node_modules" / "@influxdata" / "flux-lsp-browser" / "flux-lsp-browser_bg.wasm"
_TIMEOUT_S = 60


@dataclass(frozen=True)
class FluxParse:
    """What the Flux parser found in one program.

    Attributes:
        errors: Every parse error message, from each AST node's ``errors`` field plus one
            ``"BadStatement: ..."`` / ``"BadExpression: ..."`` entry per such node. Empty means it parsed.
        strings: The decoded value of every string literal (no interpolation), in source order.
        interpolations: How many ``${...}`` parts were parsed inside strings.
    """

    errors: list[str]
    strings: list[str]
    interpolations: int


def flux_parser_available() -> str | None:
    """``None`` if :func:`parse_flux` can run, else the reason it cannot (for ``pytest.skip``)."""
    if shutil.which("node") is None:
        return "node (Node.js) is not on PATH"
    if not _WASM.is_file():
        return f"the Flux parser is not installed: run `{INSTALL_COMMAND}`"
    return None


def parse_flux(programs: list[str]) -> list[FluxParse]:
    """Parse each Flux program with the real parser; one result per program, in order.

    Raises:
        RuntimeError: if the parser is not available or ``parse.mjs`` fails.
        subprocess.TimeoutExpired: if the batch takes longer than 60 s.
    """
    if not programs:
        return []
    reason = flux_parser_available()
    if reason is not None:
        raise RuntimeError(reason)
    proc = subprocess.run(
        [shutil.which("node") or "node", str(_SCRIPT)],
        input=json.dumps(list(programs)),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"parse.mjs exited {proc.returncode}: {proc.stderr.strip()}")
    results = json.loads(proc.stdout)
    if len(results) != len(programs):
        raise RuntimeError(f"parse.mjs returned {len(results)} results for {len(programs)} programs")
    return [FluxParse(r["errors"], r["strings"], r["interpolations"]) for r in results]
