"""Headless Chromium driven over the Chrome DevTools protocol, for the page tests.

Debian's ``chromium`` (``make system-deps`` installs it) runs with a fresh
profile, no network features and a DevTools port on loopback; a websocket to
its page target sends commands and collects the events (console calls, CSP
reports) the tests read. ``Browser.close`` ends the whole process group.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import websocket

CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = (
    "headless Chromium is needed at /usr/bin/chromium: run `make system-deps` "
    "(as root it runs `apt-get install -y chromium`), or install Debian's "
    "`chromium` package yourself"
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1400,1000",
)
# Bounds on waiting for the browser; never an assertion on how long anything took.
_START_POLLS = 300
_POLL_S = 0.1
_COMMAND_TIMEOUT_S = 60


def chromium_path() -> str:
    """The browser to drive; fails the test (never skips) when it is missing."""
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if not found:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


class Browser:
    """One headless Chromium with one page, spoken to over DevTools."""

    def __init__(self, executable: str) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="opslib-chromium-"))
        self.process = subprocess.Popen(
            [
                executable,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        try:
            port = self._port()
            self.socket = websocket.create_connection(
                self._page_socket(port),
                timeout=_COMMAND_TIMEOUT_S,
                suppress_origin=True,
            )
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.send(f"{domain}.enable")
        except BaseException:
            self.close()
            raise

    def _port(self) -> int:
        marker = self.profile / "DevToolsActivePort"
        for _ in range(_START_POLLS):
            if self.process.poll() is not None:
                pytest.fail(
                    f"chromium exited with code {self.process.returncode} at start; "
                    + INSTALL_HINT,
                    pytrace=False,
                )
            text = marker.read_text() if marker.is_file() else ""
            if text.strip():
                return int(text.split()[0])
            time.sleep(_POLL_S)
        pytest.fail("chromium did not open its DevTools port", pytrace=False)

    @staticmethod
    def _page_socket(port: int) -> str:
        for _ in range(_START_POLLS):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as reply:
                targets = json.load(reply)
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
            time.sleep(_POLL_S)
        pytest.fail("chromium opened no page", pytrace=False)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events meanwhile are kept."""
        self._next_id += 1
        self.socket.send(
            json.dumps({"id": self._next_id, "method": method, "params": params})
        )
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return dict(message.get("result") or {})
            self.events.append(message)

    def wait_for_event(self, method: str, since: int = 0) -> dict[str, Any]:
        """The first event ``method`` at or after ``self.events[since]``, read
        from the socket if it has not come yet (bounded by the socket timeout)."""
        for message in self.events[since:]:
            if message.get("method") == method:
                return message
        while True:
            message = json.loads(self.socket.recv())
            self.events.append(message)
            if message.get("method") == method:
                return message

    def open(self, path: Path) -> None:
        """Navigate to a local file and wait for its load event."""
        start = len(self.events)
        self.send("Page.navigate", url=path.as_uri())
        self.wait_for_event("Page.loadEventFired", since=start)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (returned by value)."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def type_text(self, selector: str, text: str) -> None:
        """Focus an input and type into it, as a person's keystrokes would."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        for char in text:
            self.send("Input.dispatchKeyEvent", type="keyDown", text=char)
            self.send("Input.dispatchKeyEvent", type="keyUp")

    def screenshot(self, *paths: Path) -> None:
        """Save a PNG of the whole page to each path."""
        data = base64.b64decode(
            self.send(
                "Page.captureScreenshot", format="png", captureBeyondViewport=True
            )["data"]
        )
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def console_texts(self) -> list[str]:
        """Every console call and log entry seen so far, as text."""
        texts = []
        for event in self.events:
            params = event.get("params") or {}
            if event.get("method") == "Runtime.consoleAPICalled":
                texts.append(" ".join(str(a.get("value")) for a in params["args"]))
            elif event.get("method") == "Log.entryAdded":
                texts.append(str(params["entry"].get("text")))
        return texts

    def requested_urls(self) -> list[str]:
        """Every URL the page asked for since the events were last cleared."""
        return [
            str(event["params"]["request"]["url"])
            for event in self.events
            if event.get("method") == "Network.requestWillBeSent"
        ]

    def close(self) -> None:
        """End the browser and every process it started, then drop its profile."""
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.close()
        # The group holds the renderers and helpers too, even after the main
        # process is gone.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(self.profile, ignore_errors=True)
