#!/usr/bin/env python3
"""Python client for the Blender Session Manager's JSON-RPC port (standard library only).

The manager speaks JSON-RPC 2.0 over TCP, one JSON object per line each way, on
127.0.0.1:9880 by default. This module keeps the method names and return types of the original
Python ``SessionManager`` (seed 003), so code written against it keeps working against the
manager:

    from session_manager_client import SessionManagerClient, SessionManagerError

    sm = SessionManagerClient()                       # 127.0.0.1:9880; token=... if --token is set
    session_id = sm.create_session()                  # "scene-20260106-101530-a1b2c3d4"
    r = sm.send_command(session_id, "execute_code",
                        {"code": "import bpy\\nbpy.ops.mesh.primitive_cube_add()\\n"
                                 "print(bpy.context.active_object.name)"})
    print(r["status"], r["result"])                   # success {'executed': True, 'result': 'Cube.001\\n'}
    print(sm.get_session_info(session_id)["state"]["objects"])
    for cmd in sm.get_session_history(session_id):
        print(f"{cmd['command']}: {cmd['status']} ({cmd['duration']:.2f}s)")
    sm.update_state(session_id, task="build a house")
    sm.close_session(session_id)

    # Tool calls as an MCP server or an agent loop forwards them (a session is created when none
    # is given; the reply says which one was used):
    r = sm.handle_tool_call("get_scene_info", {})     # {"session_id": ..., "result": {...}}

    # Long work as a job: start it, poll it, fetch it.
    job = sm.submit_job(session_id, "execute_code", {"code": "import time; time.sleep(60)"})
    print(sm.get_job_result(job["job_id"], wait=90))

Every failure raises ``SessionManagerError`` with ``code`` (the JSON-RPC error code, e.g. -32001),
``kind`` (``session_not_found``, ``blender_unavailable``, ...), ``message`` and ``data``. Failures
to reach the manager raise it too, with kind ``connection_error`` (or ``timeout`` when no reply
came in time). A Blender error reply (``{"status": "error", "message": ...}``) is a normal
result, not an exception, exactly as on the wire.

One client holds one persistent connection and is thread-safe: a lock serialises requests, so
threads that want to run commands at the same time should each use their own client. When the
connection broke, the next call reconnects (and authenticates again); a request that may have
reached the manager is never sent twice.

As a command-line tool:

    python scripts/session_manager_client.py status
    python scripts/session_manager_client.py [--manager HOST:PORT] [--token T] COMMAND ...

Commands: status, sessions, create, info ID, history ID, close ID, tools,
call COMMAND_TYPE [PARAMS_JSON] --session ID, tool NAME [ARGUMENTS_JSON] [--session ID],
jobs, job ID, result ID [--wait S], cancel ID, queue, cleanup [--timeout S].
"""

from __future__ import annotations

import json
import time
import os
import select
import socket
import sys
import threading
from typing import Any, Dict, Iterable, List, Optional, Tuple

__all__ = ["SessionManagerClient", "SessionManagerError", "FINAL_JOB_STATUSES", "parse_address"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9880

#: Job statuses that never change again.
FINAL_JOB_STATUSES = ("completed", "failed", "cancelled")

# JSON-RPC error codes by kind, for errors reported inside a job record (they carry only a kind).
_KIND_CODES = {
    "parse_error": -32700,
    "invalid_request": -32600,
    "method_not_found": -32601,
    "invalid_params": -32602,
    "internal_error": -32603,
    "session_not_found": -32001,
    "blender_unavailable": -32002,
    "blender_timeout": -32003,
    "queue_full": -32004,
    "job_not_found": -32005,
    "too_large": -32006,
    "unauthorized": -32007,
    "capacity": -32008,
    "shutting_down": -32009,
    "blender_disconnected": -32010,
    "blender_bad_reply": -32011,
}

# How long one get_job_result long poll waits while send_command follows a pending job.
_POLL_WAIT = 25.0


class SessionManagerError(Exception):
    """A JSON-RPC error from the manager, or a failure to talk to it.

    ``code``: the JSON-RPC error code (None for connection failures and for job errors without
    one); ``kind``: ``data.kind`` of the error (``session_not_found``, ``connection_error``, ...);
    ``message``: the manager's message; ``data``: the error's whole ``data`` object.
    """

    def __init__(self, message: str, code: Optional[int] = None, kind: Optional[str] = None,
                 data: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.kind = kind
        self.data = data if data is not None else {}

    def __str__(self) -> str:
        if self.code is not None:
            return f"{self.message} ({self.code} {self.kind})"
        return f"{self.message} ({self.kind})" if self.kind else self.message

    def __repr__(self) -> str:
        return f"SessionManagerError(code={self.code!r}, kind={self.kind!r}, message={self.message!r})"

    @classmethod
    def from_error_object(cls, error: Any) -> "SessionManagerError":
        if not isinstance(error, dict):
            return cls(f"malformed error from the manager: {error!r}", kind="protocol_error")
        data = error.get("data") if isinstance(error.get("data"), dict) else {}
        return cls(str(error.get("message", "")), code=error.get("code"), kind=data.get("kind"), data=data)


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> Tuple[str, int]:
    """``"host:port"``, ``"host"``, ``":port"`` or ``"[v6]:port"`` -> ``(host, port)``."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text:  # a bare IPv6 address
        host, port = text, ""
    else:
        host, port = text, ""
    try:
        return host or DEFAULT_HOST, int(port) if port else default_port
    except ValueError:
        raise ValueError(f"bad address {text!r}: expected HOST:PORT") from None


class SessionManagerClient:
    """A connection to the manager's JSON-RPC port, with the seed's ``SessionManager`` API.

    ``timeout``: seconds to wait for each reply, on top of the request's own ``wait`` when it has
    one (``None`` waits forever). ``send_command`` and ``handle_tool_call`` without ``wait`` wait
    up to the manager's ``--sync-wait`` (30 s by default), so keep ``timeout`` above it.
    ``connect_timeout``: seconds for the TCP connect.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: Optional[str] = None,
                 timeout: Optional[float] = 120.0, connect_timeout: float = 10.0) -> None:
        self.host = host
        self.port = int(port)
        self.token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._sock: Optional[socket.socket] = None
        self._reader: Any = None
        self._next_id = 0

    @classmethod
    def from_address(cls, address: str, **kwargs: Any) -> "SessionManagerClient":
        """``SessionManagerClient.from_address("127.0.0.1:9880", token=...)``."""
        host, port = parse_address(address)
        return cls(host, port, **kwargs)

    # ------------------------------------------------------------------ connection

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __enter__(self) -> "SessionManagerClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self._drop()
        except Exception:
            pass

    def close(self) -> None:
        """Close the connection (the next call opens a new one). Sessions stay open."""
        with self._lock:
            self._drop()

    def connect(self) -> None:
        """Connect (and authenticate) now instead of on the first call."""
        with self._lock:
            self._ensure_connected()

    def _drop(self) -> None:
        reader, sock = self._reader, self._sock
        self._reader = self._sock = None
        for thing in (reader, sock):
            if thing is not None:
                try:
                    thing.close()
                except OSError:
                    pass

    def _stale(self) -> bool:
        """True when the idle connection was closed by the manager (or has unexpected bytes).

        Nothing is in flight between calls, so anything readable now is an EOF, a reset or
        garbage: the connection must be replaced before the next request is written."""
        assert self._sock is not None
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _ensure_connected(self) -> None:
        if self._sock is not None and not self._stale():
            return
        self._drop()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as e:
            raise SessionManagerError(
                f"cannot connect to the session manager at {self.address}: {_os_reason(e)} "
                "(is it running? start it with scripts/start_manager.sh)",
                kind="connection_error", data={"address": self.address}) from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._reader = sock.makefile("rb")
        if self.token:
            try:
                self._roundtrip("authenticate", {"token": self.token}, None)
            except SessionManagerError:
                self._drop()
                raise

    def _roundtrip(self, method: str, params: Dict[str, Any], wait: Optional[float]) -> Any:
        assert self._sock is not None
        self._next_id += 1
        rid = self._next_id
        line = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params},
                          separators=(",", ":")).encode("utf-8") + b"\n"
        timeout = None if self.timeout is None else self.timeout + (wait or 0.0)
        try:
            self._sock.settimeout(timeout)
            self._sock.sendall(line)
            while True:
                raw = self._reader.readline()
                if not raw:
                    raise ConnectionError("the manager closed the connection")
                if not raw.strip():
                    continue
                try:
                    reply = json.loads(raw)
                except ValueError as e:
                    raise SessionManagerError(f"invalid reply from the manager: {e}", kind="protocol_error")
                if not isinstance(reply, dict):
                    raise SessionManagerError(f"invalid reply from the manager: {raw[:200]!r}",
                                              kind="protocol_error")
                if reply.get("id") == rid:
                    break
                if reply.get("id") is None and "error" in reply:
                    # An error the manager could not tie to a request (our line was unreadable).
                    raise SessionManagerError.from_error_object(reply["error"])
                # A reply to some other id cannot happen with one request at a time; skip it.
        except socket.timeout as e:
            self._drop()
            raise SessionManagerError(
                f"no reply from the session manager at {self.address} to {method} within {timeout:g}s",
                kind="timeout", data={"method": method}) from e
        except (OSError, ConnectionError) as e:
            self._drop()
            raise SessionManagerError(
                f"lost the connection to the session manager at {self.address} during {method}: "
                f"{_os_reason(e)}", kind="connection_error", data={"method": method}) from e
        except SessionManagerError:
            self._drop()
            raise
        if "error" in reply:
            raise SessionManagerError.from_error_object(reply["error"])
        return reply.get("result")

    def call(self, method: str, _wait: Optional[float] = None, **params: Any) -> Any:
        """Call any JSON-RPC method with named params (``None`` values are left out) and
        return its ``result``. ``_wait`` extends the reply timeout for long polls."""
        params = {k: v for k, v in params.items() if v is not None}
        with self._lock:
            self._ensure_connected()
            return self._roundtrip(method, params, _wait)

    # ------------------------------------------------------------------ sessions (seed API)

    def create_session(self, metadata: Any = None, backend: Optional[str] = None) -> str:
        """Create a session and return its id (``scene-YYYYMMDD-HHMMSS-xxxxxxxx``)."""
        return self.call("create_session", metadata=metadata, backend=backend)["session_id"]

    def send_command(self, session_id: str, command_type: str, params: Optional[Dict[str, Any]] = None,
                     wait: Optional[float] = None, *, follow: bool = True) -> Dict[str, Any]:
        """Run one Blender command in the session and return the manager's result:
        ``{"status": "success", "result", "duration", "seq", "job_id"}`` or
        ``{"status": "error", "message", ...}`` for a Blender error reply.

        ``wait``: how long the manager waits before handing the command over to a job (default:
        its ``--sync-wait``). When it answers ``{"status": "pending", "job_id"}``, this method
        long-polls ``get_job_result`` until the job is final and returns the same shape
        (``status`` and ``result`` or ``message``, with ``job_id``); ``follow=False`` returns the
        pending reply instead. A transport failure after the hand-over raises like one before it.
        """
        reply = self.call("send_command", _wait=wait, session_id=session_id, command_type=command_type,
                          params=params if params is not None else {}, wait=wait)
        if follow and isinstance(reply, dict) and reply.get("status") == "pending" and reply.get("job_id"):
            return self.wait_for_job(reply["job_id"])
        return reply

    def update_state(self, session_id: str, **state: Any) -> Dict[str, Any]:
        """Merge keys into the session's state (``objects=[...]``, ``selection="Cube"``, any
        custom key) and return the whole new state."""
        return self.call("update_state", session_id=session_id, state=state)

    def get_session_info(self, session_id: str) -> Dict[str, Any]:
        """The session's info: ``session_id``, ``created_at``, ``last_activity``, ``blender``,
        ``state``, ``command_count``, ..."""
        return self.call("get_session_info", session_id=session_id)

    def get_session_history(self, session_id: str, limit: Optional[int] = None,
                            since_seq: Optional[int] = None) -> List[Dict[str, Any]]:
        """History entries, oldest first: ``seq``, ``command``, ``params``, ``status``, ``result``,
        ``error``, ``timestamp``, ``duration``, ``job_id``. Without ``since_seq`` the last
        ``limit`` entries; with it the first ``limit`` entries after that ``seq``."""
        return self.call("get_session_history", session_id=session_id, limit=limit, since_seq=since_seq)

    def list_sessions(self) -> List[Dict[str, Any]]:
        """The info of every open session, oldest first."""
        return self.call("list_sessions")

    def close_session(self, session_id: str) -> bool:
        """Close the session. True when this call closed it, False when it was not open
        (unknown, or already closed)."""
        try:
            return bool(self.call("close_session", session_id=session_id).get("closed", False))
        except SessionManagerError as e:
            if e.kind == "session_not_found":
                return False
            raise

    def cleanup_idle_sessions(self, timeout: Optional[float] = None) -> List[str]:
        """Close every session idle for more than ``timeout`` seconds (default: the manager's
        ``--idle-timeout``) and return the ids closed."""
        return self.call("cleanup_idle_sessions", timeout=timeout)["closed"]

    def take_snapshot(self, session_id: str) -> Dict[str, Any]:
        return self.call("take_snapshot", session_id=session_id)

    def get_snapshots(self, session_id: str) -> List[Dict[str, Any]]:
        return self.call("get_snapshots", session_id=session_id)

    # ------------------------------------------------------------------ tools

    def list_tools(self) -> List[Dict[str, Any]]:
        """The tool catalogue, MCP style: ``[{"name", "description", "input_schema"}]``."""
        return self.call("list_tools")

    def handle_tool_call(self, name: str, arguments: Optional[Dict[str, Any]] = None,
                         session_id: Optional[str] = None, *, follow: bool = False) -> Dict[str, Any]:
        """Run a catalogue tool (``execute_blender_code``, ``get_scene_info``, ...) and return
        ``{"session_id", "result"}`` (``result`` shaped like ``send_command``'s). Without a
        session id the manager creates a session. A tool still running after ``--sync-wait``
        gives ``result == {"status": "pending", "job_id"}``; ``follow=True`` waits for it instead.
        """
        reply = self.call("handle_tool_call", name=name, arguments=arguments if arguments is not None else {},
                          session_id=session_id)
        result = reply.get("result") if isinstance(reply, dict) else None
        if follow and isinstance(result, dict) and result.get("status") == "pending" and result.get("job_id"):
            reply = dict(reply, result=self.wait_for_job(result["job_id"]))
        return reply

    # ------------------------------------------------------------------ jobs

    def submit_job(self, session_id: str, command_type: str, params: Optional[Dict[str, Any]] = None,
                   metadata: Any = None) -> Dict[str, Any]:
        """Queue one command as a job; returns ``{"job_id", "status": "pending"}`` at once."""
        return self.call("submit_job", session_id=session_id, command_type=command_type,
                         params=params if params is not None else {}, metadata=metadata)

    def submit_batch(self, session_id: str, commands: Iterable[Any], stop_on_error: Optional[bool] = None,
                     metadata: Any = None) -> Dict[str, Any]:
        """Queue commands as one job. ``commands``: ``{"command_type", "params"}`` dicts or
        ``(command_type, params)`` pairs. Returns ``{"job_id", "status": "pending"}``."""
        cmds = []
        for c in commands:
            if isinstance(c, dict):
                cmds.append(c)
            else:
                command_type, params = c
                cmds.append({"command_type": command_type, "params": params if params is not None else {}})
        return self.call("submit_batch", session_id=session_id, commands=cmds, stop_on_error=stop_on_error,
                         metadata=metadata)

    def get_job(self, job_id: str) -> Dict[str, Any]:
        """The job record: ``id``, ``session_id``, ``status``, ``type``, ``progress``, ``result``, ..."""
        return self.call("get_job", job_id=job_id)

    def get_job_result(self, job_id: str, wait: Optional[float] = None) -> Dict[str, Any]:
        """``{"job_id", "status", "result", "error", "results"}``; with ``wait`` a long poll that
        answers as soon as the job is finished, or when ``wait`` seconds have passed."""
        return self.call("get_job_result", _wait=wait, job_id=job_id, wait=wait)

    def cancel_job(self, job_id: str) -> Dict[str, Any]:
        """Cancel a job; returns its record plus ``cancel``: ``removed``, ``discarded`` or ``finished``."""
        return self.call("cancel_job", job_id=job_id)

    def list_jobs(self, session_id: Optional[str] = None, status: Optional[str] = None) -> List[Dict[str, Any]]:
        """Job records, newest first, optionally of one session and/or with one status."""
        return self.call("list_jobs", session_id=session_id, status=status)

    def get_queue_status(self) -> Dict[str, Any]:
        return self.call("get_queue_status")

    def get_manager_status(self) -> Dict[str, Any]:
        return self.call("get_manager_status")

    def wait_for_job(self, job_id: str, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Long-poll a single-command job until it is final and return it shaped like a finished
        ``send_command``: ``{"status": "success", "result", "job_id"}``,
        ``{"status": "error", "message", "job_id"}`` (a Blender error reply) or
        ``{"status": "cancelled", "message", "job_id"}``. A transport failure (timeout, Blender
        gone, manager restarted mid-command) raises ``SessionManagerError`` with the job's error
        kind. ``timeout``: give up after this many seconds (kind ``timeout``); default never."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _POLL_WAIT
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            r = self.get_job_result(job_id, wait=wait)
            if r.get("status") in FINAL_JOB_STATUSES:
                return _finished_shape(job_id, r)
            if deadline is not None and time.monotonic() >= deadline:
                raise SessionManagerError(f"job {job_id} still {r.get('status')} after {timeout:g}s",
                                          kind="timeout", data={"job_id": job_id, "status": r.get("status")})


def _finished_shape(job_id: str, r: Dict[str, Any]) -> Dict[str, Any]:
    status, envelope, error = r.get("status"), r.get("result"), r.get("error") or {}
    if isinstance(envelope, dict) and envelope.get("status") in ("success", "error"):
        return dict(envelope, job_id=job_id)
    if status == "cancelled":
        return {"status": "cancelled", "message": error.get("message", "cancelled"), "job_id": job_id}
    if status == "completed" and r.get("results") is not None:  # a batch
        return {"status": "success", "results": r["results"], "job_id": job_id}
    kind = error.get("kind")
    raise SessionManagerError(error.get("message") or f"job {job_id} {status}", code=_KIND_CODES.get(kind),
                              kind=kind or "job_failed", data=dict(error, job_id=job_id))


def _os_reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


# ---------------------------------------------------------------------- command line

def _main(argv: Optional[List[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="session_manager_client.py",
        description="Talk to a running Blender Session Manager over its JSON-RPC port.")
    p.add_argument("--manager", default=os.environ.get("SESSION_MANAGER_MANAGER", f"{DEFAULT_HOST}:{DEFAULT_PORT}"),
                   help="manager JSON-RPC address (default: $SESSION_MANAGER_MANAGER or 127.0.0.1:9880)")
    p.add_argument("--token", default=os.environ.get("SESSION_MANAGER_TOKEN"),
                   help="token of a manager started with --token (default: $SESSION_MANAGER_TOKEN)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("status", help="the manager's status")
    sub.add_parser("sessions", help="list open sessions")
    sub.add_parser("create", help="create a session and print its id")
    for name in ("info", "history", "close"):
        s = sub.add_parser(name, help=f"{name} of one session")
        s.add_argument("session_id")
        if name == "history":
            s.add_argument("--limit", type=int)
            s.add_argument("--since-seq", type=int)
    sub.add_parser("tools", help="the tool catalogue")
    s = sub.add_parser("call", help="send one Blender command")
    s.add_argument("command_type")
    s.add_argument("params", nargs="?", default="{}", help="params as JSON (default {})")
    s.add_argument("--session", required=True)
    s.add_argument("--wait", type=float)
    s = sub.add_parser("tool", help="run a catalogue tool")
    s.add_argument("name")
    s.add_argument("arguments", nargs="?", default="{}", help="arguments as JSON (default {})")
    s.add_argument("--session")
    s = sub.add_parser("jobs", help="list jobs")
    s.add_argument("--session")
    s.add_argument("--status")
    for name in ("job", "cancel"):
        sub.add_parser(name, help=f"{'show' if name == 'job' else 'cancel'} one job").add_argument("job_id")
    s = sub.add_parser("result", help="a job's result (long-poll with --wait)")
    s.add_argument("job_id")
    s.add_argument("--wait", type=float)
    sub.add_parser("queue", help="queue status")
    s = sub.add_parser("cleanup", help="close idle sessions")
    s.add_argument("--timeout", type=float)
    args = p.parse_args(argv)

    try:
        client = SessionManagerClient.from_address(args.manager, token=args.token)
    except ValueError as e:
        p.error(str(e))

    def loads(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as e:
            p.error(f"not valid JSON: {text!r}: {e}")

    try:
        with client:
            if args.cmd == "status":
                out: Any = client.get_manager_status()
            elif args.cmd == "sessions":
                out = client.list_sessions()
            elif args.cmd == "create":
                out = client.create_session()
            elif args.cmd == "info":
                out = client.get_session_info(args.session_id)
            elif args.cmd == "history":
                out = client.get_session_history(args.session_id, args.limit, args.since_seq)
            elif args.cmd == "close":
                out = client.close_session(args.session_id)
            elif args.cmd == "tools":
                out = client.list_tools()
            elif args.cmd == "call":
                out = client.send_command(args.session, args.command_type, loads(args.params), args.wait)
            elif args.cmd == "tool":
                out = client.handle_tool_call(args.name, loads(args.arguments), args.session, follow=True)
            elif args.cmd == "jobs":
                out = client.list_jobs(args.session, args.status)
            elif args.cmd == "job":
                out = client.get_job(args.job_id)
            elif args.cmd == "result":
                out = client.get_job_result(args.job_id, args.wait)
            elif args.cmd == "cancel":
                out = client.cancel_job(args.job_id)
            elif args.cmd == "queue":
                out = client.get_queue_status()
            else:
                out = client.cleanup_idle_sessions(args.timeout)
    except SessionManagerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out if isinstance(out, str) else json.dumps(out, indent=2))
    if isinstance(out, dict) and out.get("status") in ("error", "cancelled"):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
