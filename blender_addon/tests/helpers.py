"""Test helpers: a raw-socket client and a headless Blender started as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

ADDON_DIR = Path(__file__).resolve().parent.parent
HEADLESS = ADDON_DIR / "headless.py"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "wire"

# Generous bounds: they only decide when a broken build fails, never how fast a good one passes.
STARTUP_TIMEOUT = 120.0
REPLY_TIMEOUT = 60.0


class Client:
    """A raw TCP client: sends bytes or JSON, reads one reply per line."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = REPLY_TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, command_type: str, params: Optional[dict[str, Any]] = None, **top: Any) -> None:
        """Send like a stock client: json.dumps defaults, no delimiter."""
        request: dict[str, Any] = {"type": command_type, "params": params or {}}
        request.update(top)
        self.send_raw(json.dumps(request).encode("utf-8"))

    def read_line(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; unanswered bytes: {self._buffer[:200]!r}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line + b"\n"

    def read_reply(self) -> dict[str, Any]:
        return json.loads(self.read_line())

    def call(self, command_type: str, params: Optional[dict[str, Any]] = None, **top: Any) -> dict[str, Any]:
        self.send(command_type, params, **top)
        return self.read_reply()

    def result(self, command_type: str, params: Optional[dict[str, Any]] = None, **top: Any) -> Any:
        reply = self.call(command_type, params, **top)
        assert reply.get("status") == "success", reply
        return reply["result"]

    def run(self, code: str, **top: Any) -> str:
        """execute_code; returns captured stdout (asserts success)."""
        return self.result("execute_code", {"code": code}, **top)["result"]

    def wait_closed(self, timeout: float) -> bool:
        """Block until the server closes the connection (True) or `timeout` passes (False)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self._buffer += chunk
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


class HeadlessBlender:
    """`python blender_addon/headless.py --port 0 ...` with its readiness signal awaited."""

    def __init__(self, tmp_dir: Path, *extra_args: str) -> None:
        self.ready_file = tmp_dir / f"ready-{os.getpid()}-{time.monotonic_ns()}"
        self.stdout_lines: list[str] = []
        self._ready = threading.Event()
        self._stderr_done = threading.Event()
        self._address: Optional[str] = None
        command = [
            sys.executable,
            str(HEADLESS),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ready-file",
            str(self.ready_file),
            *extra_args,
        ]
        self.process = subprocess.Popen(
            command,
            env=dict(os.environ, PYTHONFAULTHANDLER="1"),  # SIGABRT dumps every thread's stack
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.stderr_lines: list[str] = []
        # Keep both pipes drained (Blender logs renders on stdout) and watch for the READY line.
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self._ready.wait(STARTUP_TIMEOUT) or self._address is None:
            self.stop()
            raise RuntimeError(f"headless Blender did not become ready:\n{self.log()}")
        host, port = self._address.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout_lines.append(line)
            if line.startswith("READY ") and self._address is None:
                self._address = line.split()[1]
                self._ready.set()
        self._ready.set()  # exited before READY: wake the waiter

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line)
        self._stderr_done.set()

    def log(self) -> str:
        return "".join(self.stdout_lines[-50:]) + "".join(self.stderr_lines[-200:])

    def client(self) -> Client:
        return Client(self.port, self.host)

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        """Block until `text` appears in the runner's stderr."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.stderr_lines)):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"{text!r} not logged:\n{self.log()}")
            time.sleep(0.01)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> Optional[int]:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGABRT)  # leaves the stacks in the log
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                self._stderr_done.wait(5)
                return None
        return self.process.returncode


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a PNG into (type, payload) chunks, checking the signature and each CRC."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    chunks = []
    position = 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        payload = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + payload) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, payload))
        position += 12 + length
    return chunks


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Decode enough of a PNG to prove it is whole: (width, height, raw scanlines)."""
    import struct
    import zlib

    chunks = png_chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, color_type = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    raw = zlib.decompress(b"".join(payload for kind, payload in chunks if kind == b"IDAT"))
    row_bytes = 1 + (width * channels * depth + 7) // 8
    assert len(raw) == height * row_bytes, (len(raw), width, height)
    return width, height, raw
