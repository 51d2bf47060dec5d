"""Fixtures for end-to-end tests: real headless Blender and the manager binary."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import HEADLESS, Manager, Process, manager_binary  # noqa: E402


@pytest.fixture(scope="session")
def blender() -> Iterator[tuple[str, int]]:
    """A real headless Blender with the project's addon on a free port."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready"
        p = Process([sys.executable, str(HEADLESS), "--host", "127.0.0.1", "--port", "0", "--ready-file", str(ready)])
        try:
            deadline = time.monotonic() + 120
            while not ready.exists():
                if p.proc.poll() is not None:
                    raise AssertionError("headless Blender exited:\n" + "\n".join(p.lines))
                if time.monotonic() > deadline:
                    raise AssertionError("headless Blender never became ready:\n" + "\n".join(p.lines))
                time.sleep(0.05)
            host, port = ready.read_text().strip().rsplit(":", 1)
            yield host, int(port)
        finally:
            p.stop()


@pytest.fixture()
def manager(blender: tuple[str, int]) -> Iterator[Manager]:
    host, port = blender
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_MANAGER_", "BLENDER_"))}
    p = Process(
        [str(manager_binary()), "serve", "--listen", "127.0.0.1:0", "--compat-listen", "127.0.0.1:0",
         "--blender", f"{host}:{port}"],
        env=env,
    )
    m = p.wait_line(r"session manager started .*jsonrpc=(\S+) compat=(\S+)")
    rh, rp = m.group(1).rsplit(":", 1)
    ch, cp = m.group(2).rsplit(":", 1)
    mgr = Manager(p, (rh, int(rp)), (ch, int(cp)))
    try:
        yield mgr
    finally:
        mgr.close()
        assert p.stop() == 0, "the manager exits 0 on SIGTERM:\n" + "\n".join(p.lines)
