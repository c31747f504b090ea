"""A sandbox started tied to its process (as the test session starts it) shuts down,
localstripe included, once that process is killed; an untied one stays up."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from opslib.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
# The child starts the sandbox exactly as the session fixture does (conftest.py),
# or untied as `runbook sandbox start` does, prints its state folder, then waits.
CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
if {tied!r}:
    import conftest
    sandbox = conftest.start_session_sandbox()
else:
    from opslib import load_environment
    from opslib.sandbox import Sandbox
    sandbox = Sandbox(Path({folder!r}), load_environment("sandbox"), ephemeral_ports=True)
    sandbox.start()
print(sandbox.state_dir, flush=True)
time.sleep(600)
"""
DEADLINE_S = 60.0


def alive(pid):
    """True for a process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid):
    """The pids whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def start_child(tmp_path, tied):
    code = CHILD.format(root=str(ROOT), tied=tied, folder=str(tmp_path / "sb"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True
    )
    line = child.stdout.readline().strip()
    assert line, "the child did not start a sandbox"
    status = json.loads((Path(line) / "sandbox.json").read_text())
    return child, Path(line), status["pid"]


def wait_gone(pids):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if alive(p)]


def test_a_tied_sandbox_exits_when_its_starter_is_killed(tmp_path):
    child, state_dir, server = start_child(tmp_path, tied=True)
    stand_ins = children(server)
    assert alive(server) and stand_ins, "the sandbox and its localstripe run"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert wait_gone([server, *stand_ins]) == []
    assert not (state_dir / "sandbox.json").exists()
    shutil.rmtree(state_dir, ignore_errors=True)


def test_an_untied_sandbox_outlives_its_starter(tmp_path):
    child, state_dir, server = start_child(tmp_path, tied=False)
    try:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        # The tied one notices within a fraction of a second; give this one longer.
        time.sleep(2)
        assert alive(server)
    finally:
        assert Sandbox(state_dir, None).stop()
