"""Drive the real Dagster UI: a ``dagster-webserver`` subprocess and headless Chromium over CDP.

Chromium is Debian's ``/usr/bin/chromium``, spoken to through the Chrome DevTools Protocol over its
websocket (``websockets``), so no chromedriver is needed. The webserver gets its own ``DAGSTER_HOME``
holding the repository's ``dagster.yaml`` plus ``run_coordinator: DefaultRunCoordinator``: the repo's
instance queues runs for ``dagster-daemon``, and without a daemon a launched run would stay queued.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from websockets.sync.client import ClientConnection, connect

from influx_assets.devtools.local_server import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
)
#: Replaces the repo's run coordinator: the webserver launches runs itself, no daemon needed.
RUN_IN_WEBSERVER = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}


def chromium_binary() -> str | None:
    """Path of the Chromium to drive (``CHROMIUM`` overrides), or None when none is installed."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    """Call ``predicate`` until it returns something truthy; raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class DagsterWebserver:
    """``dagster-webserver -m <module>`` on a free loopback port with a throwaway ``DAGSTER_HOME``."""

    def __init__(self, module: str, env: Mapping[str, str], home: Path) -> None:
        self.module = module
        self.env = dict(env)
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "webserver.log"

    def start(self, timeout: float = 90.0) -> DagsterWebserver:
        """Write the instance config, start the server, wait until ``/server_info`` answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text()) | {"run_coordinator": RUN_IN_WEBSERVER}
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        env = {**self.env, "DAGSTER_HOME": str(self.home)}
        command = [
            str(Path(sys.executable).with_name("dagster-webserver")),
            "-m", self.module, "-h", "127.0.0.1", "-p", str(self.port),
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_until(self._answers, timeout, f"dagster-webserver on {self.url} (log: {self.log_path})")
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {self.process.returncode}: {self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's output, for failure messages."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST one GraphQL operation to ``/graphql``; raise on transport or GraphQL errors."""
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.load(response)
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def stop(self) -> None:
        """Terminate the server and everything it started (code server, run workers)."""
        stop_process_group(self.process)


def stop_process_group(process: subprocess.Popen[bytes] | None) -> None:
    """End a process started with ``start_new_session`` and everything in its group: TERM, then KILL."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


class DagsterDaemon:
    """``dagster-daemon run -m <module>`` on a webserver's ``DAGSTER_HOME`` (backfills, sensors, schedules)."""

    def __init__(self, webserver: DagsterWebserver) -> None:
        self.webserver = webserver
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = webserver.home / "daemon.log"

    def start(self) -> DagsterDaemon:
        """Start the daemon (its first ticks follow within seconds)."""
        env = {**self.webserver.env, "DAGSTER_HOME": str(self.webserver.home)}
        command = [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-m", self.webserver.module]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the daemon's output, for failure messages."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """Terminate the daemon and the runs it launched."""
        stop_process_group(self.process)


class Chromium:
    """Headless Chromium with one page, driven through the DevTools Protocol."""

    def __init__(self, binary: str, profile: Path, width: int = 1600, height: int = 1000) -> None:
        self.binary = binary
        self.profile = profile
        self.size = (width, height)
        self.process: subprocess.Popen[bytes] | None = None
        self._page: ClientConnection | None = None
        self._ids = itertools.count(1)

    def start(self, timeout: float = 30.0) -> Chromium:
        """Start the browser and attach to its first page."""
        self.profile.mkdir(parents=True, exist_ok=True)
        port_file = self.profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        command = [
            self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
            f"--window-size={self.size[0]},{self.size[1]}", "about:blank",
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        port = wait_until(lambda: self._read_port(port_file), timeout, "Chromium's DevTools port")
        targets = wait_until(lambda: self._pages(port), timeout, "a Chromium page target")
        self._page = connect(targets[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
        self.send("Page.enable")
        self.send("Runtime.enable")
        width, height = self.size
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return self

    def _read_port(self, port_file: Path) -> int | None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"chromium exited with {self.process.returncode}")
        lines = port_file.read_text().splitlines() if port_file.exists() else []
        return int(lines[0]) if lines and lines[0].strip() else None

    @staticmethod
    def _pages(port: int) -> list[dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as response:
                return [t for t in json.load(response) if t.get("type") == "page"]
        except (urllib.error.URLError, ConnectionError):
            return []

    def send(
        self, method: str, params: Mapping[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Send one CDP command to the page and return its result (events in between are dropped)."""
        assert self._page is not None, "start() first"
        message_id = next(self._ids)
        self._page.send(json.dumps({"id": message_id, "method": method, "params": dict(params or {})}))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self._page.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"CDP {method} failed: {reply['error']}")
                return reply.get("result", {})

    def navigate(self, url: str) -> None:
        """Load ``url`` in the page."""
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its (JSON) value."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def text(self) -> str:
        """The rendered text of the page (``document.body.innerText``)."""
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def click_button(self, label: str, prefix: bool = False) -> bool:
        """Click the first visible, enabled button whose text is ``label`` (or starts with it)."""
        test = "startsWith" if prefix else "localeCompare"
        match = f"e.innerText.trim().{test}({json.dumps(label)})" + ("" if prefix else " === 0")
        script = (
            "(() => { const b = Array.from(document.querySelectorAll('button')).find(e =>"
            f" {match} && e.offsetParent !== null && !e.disabled);"
            " if (!b) return false; b.click(); return true; })()"
        )
        return bool(self.evaluate(script))

    def press(self, key: str, code: str, key_code: int, modifiers: int = 0) -> None:
        """Press and release one key (``modifiers``: 1 Alt, 2 Ctrl, 4 Meta, 8 Shift)."""
        for kind in ("rawKeyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {
                "type": kind, "modifiers": modifiers, "key": key, "code": code,
                "windowsVirtualKeyCode": key_code,
            })

    def click_last_text(self, label: str) -> bool:
        """Click the last visible element whose own text is exactly ``label`` (e.g. an inner tab)."""
        script = (
            "(() => { const t = Array.from(document.querySelectorAll('*')).filter(e =>"
            f" e.children.length === 0 && e.offsetParent !== null && e.innerText && e.innerText.trim() === {json.dumps(label)});"
            " if (!t.length) return false; t[t.length - 1].click(); return true; })()"
        )
        return bool(self.evaluate(script))

    def graph_node_labels(self) -> list[str]:
        """First line of every asset-graph node (the graph draws nodes as SVG ``foreignObject``)."""
        return self.evaluate(
            "Array.from(document.querySelectorAll('svg foreignObject'))"
            ".map(e => (e.firstElementChild ? e.firstElementChild.innerText : '').split('\\n')[0].trim())"
            ".filter(t => t)"
        ) or []

    def expand_asset_groups(self, timeout: float = 30.0) -> None:
        """Open every collapsed group of the asset graph (the UI collapses them when there are several).

        Uses the graph's own shortcut, Alt+E, which expands all groups when none is open and
        collapses all otherwise; so it may take two presses.
        """
        collapsed = "document.querySelectorAll('[class*=collapsedGroupNodeBox]').length"
        for _ in range(3):
            if not self.evaluate(collapsed):
                return
            before = self.graph_node_labels()
            self.press("e", "KeyE", 69, modifiers=1)
            wait_until(
                lambda labels=before: self.graph_node_labels() != labels, timeout, "the graph to re-layout"
            )
        raise AssertionError("asset groups stayed collapsed after Alt+E")

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport to ``path``."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def stop(self) -> None:
        """Close the connection and end the browser."""
        if self._page is not None:
            self._page.close()
            self._page = None
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
