"""JupyterLab as ``runbook lab`` (``make lab``) starts it: on loopback with a token,
the runbook notebooks listed, the widgets extension served, and the gate widget
driven from outside, through the server's kernel websocket, as the browser does.

The timeouts below only bound a failure; nothing here is timed."""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket
from test_widgets import SQL, user

from opslib import load_environment, plan_d1_write
from opslib._lab import LabSettings, lab_command, lab_environment
from opslib._records import load_record
from opslib.sandbox import Sandbox

BIN = Path(sys.executable).parent
NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
START_BOUND_S = 300
STOP_BOUND_S = 120
REPLY_BOUND_S = 180
# What an engineer's cell would hold: a plan with nothing to do, then a write.
CELL = f"""
import opslib
env = opslib.load_environment("sandbox")
noop = opslib.ActionPlan("none", env.name, env.worker_name, "nothing to do")
display(opslib.gate_widget(noop, environment=env))
plan = opslib.plan_d1_write(env, {SQL!r})
display(opslib.gate_widget(plan, environment=env, incident_id="CHG-LAB"))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_open(port: int) -> bool:
    """Whether the port opens within the bound (a kernel binds after it starts)."""
    deadline = time.monotonic() + START_BOUND_S
    while not port_open(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


@dataclass
class Lab:
    """A ``runbook lab`` process and how to talk to its server."""

    process: subprocess.Popen[bytes]
    port: int
    token: str
    folder: Path
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
        )

    @property
    def records(self) -> Path:
        return self.folder / "records"

    def log(self) -> str:
        return (self.folder / "lab.log").read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_BOUND_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"runbook lab exited:\n{self.log()}"
            try:
                if self.http.get("/api/status").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"JupyterLab did not answer:\n{self.log()}")

    def start_kernel(self, notebook: str) -> dict[str, Any]:
        body = {
            "path": notebook,
            "name": Path(notebook).name,
            "type": "notebook",
            "kernel": {"name": "python3"},
        }
        answer = self.http.post("/api/sessions", json=body)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def stop(self) -> int:
        """Ctrl-C, as in a terminal; the process group is killed if that fails."""
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_BOUND_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                for server in (self.folder / "runtime").glob("jpserver-*.json"):
                    os.kill(json.loads(server.read_text())["pid"], signal.SIGKILL)
                raise
        return self.process.returncode


def start_lab(folder: Path, *args: str) -> Lab:
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_TOKEN": token,
        "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
        "JUPYTER_CONFIG_DIR": str(folder / "config"),
        "JUPYTERLAB_WORKSPACES_DIR": str(folder / "workspaces"),
    }
    command = [str(BIN / "runbook"), "lab", "--port", str(port), "--no-browser"]
    command += ["--records", str(folder / "records"), *args]
    if os.geteuid() == 0:
        command.append("--allow-root")
    with (folder / "lab.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    lab = Lab(process, port, token, folder)
    try:
        lab.wait_ready()
    except BaseException:
        lab.stop()
        raise
    return lab


@pytest.fixture(scope="module")
def lab(sandbox, tmp_path_factory):
    """JupyterLab on the session's sandbox, which was running before and must
    still run after."""
    lab = start_lab(
        tmp_path_factory.mktemp("lab"), "--state-dir", str(sandbox.state_dir)
    )
    try:
        yield lab
    finally:
        code = lab.stop()
        assert code == 0, lab.log()
        assert sandbox.status() is not None, "runbook lab stopped a sandbox it reused"


class KernelSocket:
    """A kernel's channels through the server's websocket, as JupyterLab uses them.

    Widget models are kept by comm id, with the state the kernel opened them with
    and every update it sent since, as the browser's widget manager keeps them.
    """

    def __init__(self, lab: Lab, kernel_id: str) -> None:
        self.session = uuid.uuid4().hex
        self.socket = websocket.create_connection(
            f"ws://127.0.0.1:{lab.port}/api/kernels/{kernel_id}/channels"
            f"?session_id={self.session}",
            header=[f"Authorization: token {lab.token}"],
            timeout=REPLY_BOUND_S,
        )
        self.models: dict[str, dict[str, Any]] = {}

    def close(self) -> None:
        self.socket.close()

    def send(self, msg_type: str, content: dict[str, Any]) -> list[dict[str, Any]]:
        """Send on the shell channel; return what the kernel published for it."""
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "username": "engineer",
            "session": self.session,
            "date": datetime.datetime.now(datetime.UTC).isoformat(),
            "version": "5.3",
        }
        message = {
            "header": header,
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": "shell",
            "buffers": [],
        }
        self.socket.send(json.dumps(message))
        return self._until_idle(msg_id)

    def _until_idle(self, msg_id: str) -> list[dict[str, Any]]:
        published = []
        while True:
            message = json.loads(self.socket.recv())
            self._track_widgets(message)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["channel"] == "iopub":
                published.append(message)
            state = message["content"].get("execution_state")
            if message["msg_type"] == "status" and state == "idle":
                return published

    def _track_widgets(self, message: dict[str, Any]) -> None:
        content = message.get("content", {})
        data = content.get("data") or {}
        if message.get("msg_type") == "comm_open":
            self.models[content["comm_id"]] = dict(data.get("state") or {})
        elif message.get("msg_type") == "comm_msg" and data.get("method") == "update":
            self.models.setdefault(content["comm_id"], {}).update(data["state"])

    def execute(self, code: str) -> list[dict[str, Any]]:
        published = self.send(
            "execute_request",
            {"code": code, "silent": False, "store_history": True},
        )
        errors = [m["content"] for m in published if m["msg_type"] == "error"]
        assert not errors, errors
        return published

    def type_into(self, model_id: str, text: str) -> None:
        update = {"method": "update", "state": {"value": text}, "buffer_paths": []}
        self.send("comm_msg", {"comm_id": model_id, "data": update})

    def click(self, model_id: str) -> None:
        click = {"method": "custom", "content": {"event": "click"}}
        self.send("comm_msg", {"comm_id": model_id, "data": click})

    def children(self, model_id: str) -> list[str]:
        return [c.removeprefix("IPY_MODEL_") for c in self.models[model_id]["children"]]


def shown_record(kernel: KernelSocket, line_id: str, lab: Lab) -> dict[str, Any]:
    """The record whose id the widget's record line shows, read from the archive."""
    match = re.search(r"record (\S+) \(", kernel.models[line_id]["value"])
    assert match, kernel.models[line_id]
    return load_record(lab.records, match.group(1))


def gate_outcome(sidecar: dict[str, Any]) -> str:
    return [a for a in sidecar["actions"] if a["kind"] == "result"][-1]["outcome"]


def test_the_lab_command_stays_on_loopback_and_calls_no_outside_host(tmp_path):
    from jupyterlab.handlers.announcements import NeverCheckForUpdate
    from jupyterlab.labapp import LabApp

    settings = LabSettings(tmp_path, tmp_path / "records", port=9, open_browser=False)
    command = lab_command(settings)
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert "--ServerApp.ip=127.0.0.1" in command
    assert "--ServerApp.port=9" in command and "--no-browser" in command
    app = LabApp()
    app.parse_command_line([a for a in command[3:] if a.startswith("--LabApp.")])
    assert app.news_url is None
    assert app.check_for_updates_class is NeverCheckForUpdate
    assert app.extension_manager == "readonly"


def test_lab_kernels_get_the_sandbox_and_the_archive_but_no_named_environment(
    tmp_path,
):
    settings = LabSettings(tmp_path / "environments", Path("records"))
    shell = {"RUNBOOK_NAMED_ENVIRONMENT": "production", "PATH": "/usr/bin"}
    env = lab_environment(settings, shell)
    assert env["RUNBOOK_ENVIRONMENTS"] == str(tmp_path / "environments")
    assert Path(env["RUNBOOK_RECORDS"]).is_absolute()
    assert "RUNBOOK_NAMED_ENVIRONMENT" not in env and env["PATH"] == "/usr/bin"


def test_every_runbook_notebook_is_listed(lab):
    for folder in ("incidents", "procedures"):
        answer = lab.http.get(f"/api/contents/{folder}")
        assert answer.status_code == 200, answer.text
        listed = {
            item["name"]
            for item in answer.json()["content"]
            if item["type"] == "notebook"
        }
        on_disk = {path.name for path in (NOTEBOOKS / folder).glob("*.ipynb")}
        assert on_disk and listed == on_disk


def test_the_widgets_extension_is_served_to_the_browser(lab):
    page = lab.http.get("/lab")
    assert page.status_code == 200
    config = re.search(
        r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
        page.text,
        re.DOTALL,
    )
    assert config, page.text[:500]
    data = json.loads(config.group(1))
    extensions = {e["name"]: e for e in data["federated_extensions"]}
    assert WIDGETS_EXTENSION in extensions, sorted(extensions)
    entry = extensions[WIDGETS_EXTENSION]["load"]
    script = lab.http.get(f"/lab/extensions/{WIDGETS_EXTENSION}/{entry}")
    assert script.status_code == 200 and "jupyter-widgets" in script.text


def test_the_gate_widget_through_its_states_in_a_lab_kernel(lab, sandbox):
    sandbox.reset("healthy")
    env = load_environment("sandbox")
    session = lab.start_kernel("procedures/database.ipynb")
    kernel = KernelSocket(lab, session["kernel"]["id"])
    try:
        published = kernel.execute(CELL)
        views = [
            m["content"]["data"][WIDGET_VIEW]["model_id"]
            for m in published
            if m["msg_type"] == "display_data" and WIDGET_VIEW in m["content"]["data"]
        ]
        assert len(views) == 2, published
        noop_button = kernel.children(views[0])[2]
        _, phrase, button, _, line = kernel.children(views[1])
        assert kernel.models[noop_button]["disabled"] is True
        assert kernel.models[button]["disabled"] is False

        before = user(env)
        kernel.type_into(phrase, "update them all")
        kernel.click(button)
        refused = shown_record(kernel, line, lab)
        assert gate_outcome(refused) == "refused"
        assert refused["runbook"] == "database"
        assert refused["source"] == "jupyterlab-gate"
        assert refused["incident_id"] == "CHG-LAB"
        assert user(env) == before

        kernel.type_into(phrase, plan_d1_write(env, SQL).confirm_phrase)
        kernel.click(button)
        applied = shown_record(kernel, line, lab)
        assert applied["id"] != refused["id"]
        assert gate_outcome(applied) == "applied"
        assert user(env)["role"] == "publisher" != before["role"]
        assert list((lab.records / "before-images").iterdir())
    finally:
        kernel.close()
        lab.http.delete(f"/api/sessions/{session['id']}")
        sandbox.reset("healthy")
    assert lab.http.get("/api/kernels").json() == []


def test_ctrl_c_stops_lab_its_kernels_and_the_sandbox_it_started(tmp_path):
    state = tmp_path / "sandbox"
    lab = start_lab(tmp_path, "--state-dir", str(state), "--any-ports")
    try:
        assert Sandbox(state, None).status() is not None
        session = lab.start_kernel("incidents/01-api-down.ipynb")
        connection = tmp_path / "runtime" / f"kernel-{session['kernel']['id']}.json"
        shell_port = json.loads(connection.read_text())["shell_port"]
        assert wait_open(shell_port) and port_open(lab.port)
    finally:
        code = lab.stop()
    assert code == 0, lab.log()
    assert "stopping JupyterLab" in lab.log()
    assert not port_open(lab.port)
    assert not port_open(shell_port)
    assert Sandbox(state, None).status() is None
