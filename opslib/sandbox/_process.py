"""Process and file helpers behind ``Sandbox``: ports, pids, status, control calls."""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opslib._errors import ConfigError

from ._http import LOOPBACK


def call_control(control_url: str, method: str, path: str, body: Any = None) -> Any:
    """Call the sandbox's control server and return the decoded JSON answer.

    Raises:
        ConfigError: when the control server answers with an error.
    """
    split = urlsplit(control_url)
    connection = http.client.HTTPConnection(
        split.hostname or LOOPBACK, split.port, timeout=30
    )
    try:
        payload = None if body is None else json.dumps(body).encode("utf-8")
        connection.request(
            method, path, body=payload, headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        data = json.loads(response.read().decode("utf-8") or "null")
    finally:
        connection.close()
    if response.status != 200:
        error = data.get("error") if isinstance(data, dict) else data
        raise ConfigError(f"sandbox control {method} {path} failed: {error}")
    return data


def is_port_busy(port: int) -> bool:
    """True when something listens on ``port`` of 127.0.0.1.

    The probe sets SO_REUSEADDR like the servers do, so a port left in TIME_WAIT
    by a stopped sandbox counts as free.
    """
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((LOOPBACK, port))
    except OSError:
        return True
    finally:
        probe.close()
    return False


def is_sandbox_process(pid: int) -> bool:
    """True when ``pid`` is a live (not zombie) sandbox process.

    Where /proc exists the command line must mention ``opslib.sandbox``, so a
    stale pid file whose number was reused by another program is not mistaken
    for a running sandbox.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        command = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return state != "Z" and b"opslib.sandbox" in command


def read_json(path: Path) -> Any:
    """Decode a JSON file; None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
