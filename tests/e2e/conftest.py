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

from harness import HEADLESS, Manager, Process, start_manager  # noqa: E402


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
def manager(blender: tuple[str, int], tmp_path: Path) -> Iterator[Manager]:
    mgr = start_manager(blender, tmp_path / "manager.db")
    try:
        yield mgr
    finally:
        mgr.stop()
