"""Helpers for end-to-end tests: a real headless Blender (the `bpy` wheel running our
addon) and the manager binary in front of it. Both are started on free loopback ports
and waited for through their readiness signals: the addon's ready file and the
manager's start-up log line."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
HEADLESS = REPO / "blender_addon" / "headless.py"


def manager_binary() -> Path:
    path = Path(os.environ.get("SESSION_MANAGER_BIN", REPO / "target" / "debug" / "blender-session-manager"))
    if not path.exists():
        pytest.fail(f"manager binary not found at {path}: run `cargo build` (scripts/test.sh does)")
    return path


class Process:
    """A child process whose stderr lines are collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and seen == len(self.lines):
                    raise AssertionError(f"no line matching {pattern!r}; got:\n" + "\n".join(self.lines))
                self._cond.wait(min(left, 0.5))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_headless(port: int, ready: Path, timeout: float = 120.0) -> tuple[Process, tuple[str, int]]:
    """A real headless Blender with the project's addon listening on `port` (0: a free one),
    waited for through its ready file `ready` (removed first: a killed Blender leaves it)."""
    ready.unlink(missing_ok=True)
    p = Process([sys.executable, str(HEADLESS), "--host", "127.0.0.1", "--port", str(port),
                 "--ready-file", str(ready)])
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if p.proc.poll() is not None:
            raise AssertionError("headless Blender exited:\n" + "\n".join(p.lines))
        if time.monotonic() > deadline:
            p.stop()
            raise AssertionError("headless Blender never became ready:\n" + "\n".join(p.lines))
        time.sleep(0.05)
    host, bound = ready.read_text().strip().rsplit(":", 1)
    return p, (host, int(bound))


class Manager:
    def __init__(self, process: Process, rpc: tuple[str, int], compat: tuple[str, int]) -> None:
        self.process = process
        self.rpc_addr = rpc
        self.compat_addr = compat
        self._sock = socket.create_connection(rpc, timeout=120)
        self._file = self._sock.makefile("rb")
        self._id = 0

    def call(self, method: str, **params):
        self._id += 1
        req = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        self._sock.sendall(json.dumps(req).encode() + b"\n")
        reply = json.loads(self._file.readline())
        assert reply["id"] == self._id
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["result"]

    def close(self) -> None:
        self._sock.close()

    def stop(self) -> None:
        self.close()
        code = self.process.stop()
        assert code == 0, "the manager exits 0 on SIGTERM:\n" + "\n".join(self.process.lines)


def start_manager(blender: tuple[str, int], db: Path) -> Manager:
    """The manager binary in front of `blender`, with its database at `db`."""
    host, port = blender
    return start_manager_with([f"{host}:{port}"], db)


def start_manager_with(backends: list[str], db: Path, extra: Sequence[str] = ()) -> Manager:
    """The manager binary with one `--blender` flag per entry of `backends`
    (`[NAME=]HOST:PORT[/WEIGHT]`), its database at `db` and the flags in `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_MANAGER_", "BLENDER_"))}
    flags = [f for b in backends for f in ("--blender", b)]
    p = Process(
        [str(manager_binary()), "serve", "--listen", "127.0.0.1:0", "--compat-listen", "127.0.0.1:0",
         "--http-listen", "127.0.0.1:0", *flags, "--db", str(db), *extra],
        env=env,
    )
    m = p.wait_line(r"session manager started .*jsonrpc=(\S+) compat=(\S+)")
    rh, rp = m.group(1).rsplit(":", 1)
    ch, cp = m.group(2).rsplit(":", 1)
    return Manager(p, (rh, int(rp)), (ch, int(cp)))
