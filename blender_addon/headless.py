"""Run the session server in a Blender without a UI.

    python blender_addon/headless.py --host 127.0.0.1 --port 9876          # any Python with `bpy`
    blender --background --python blender_addon/headless.py -- --port 9876  # Blender itself

The main thread imports bpy, starts the server and then loops running queued commands (the job a
`bpy.app.timers` timer does in the UI). Readiness: once listening it prints `READY host:port` on
stdout (flushed) and, with `--ready-file PATH`, writes `host:port` to PATH atomically (removed again
on exit). `--port 0` binds a free port and reports it. SIGTERM and SIGINT stop it cleanly: the
command running on the main thread finishes, its reply is written, the listener and all connections
are closed and the process exits 0. A second signal interrupts the running command first (a
runaway `execute_code` loop gets a KeyboardInterrupt, answered as an error).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bpy  # noqa: E402  (Blender's own module: the wheel from PyPI, or Blender running this file)

from blender_session_addon.app import SessionService  # noqa: E402
from blender_session_addon.server import (  # noqa: E402
    DEFAULT_HOST,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_PORT,
    DEFAULT_SWEEP_INTERVAL,
)

log = logging.getLogger("blender_session_addon.headless")


def _script_args(argv: Sequence[str]) -> list[str]:
    """Arguments meant for this script: after `--` under Blender, else argv[1:]."""
    argv = list(argv)
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    if "--python" in argv or "-P" in argv:
        return []  # started by the Blender binary without `--`: nothing is ours
    return argv[1:]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="headless.py",
        description="Keep-alive multi-session command server for a headless Blender.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port; 0 picks a free one (default {DEFAULT_PORT})")
    parser.add_argument("--ready-file", help="write 'host:port' here (atomically) once listening")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help=f"close connections idle this many seconds (default {DEFAULT_IDLE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--sweep-interval",
        type=float,
        default=DEFAULT_SWEEP_INTERVAL,
        help=f"look for idle connections every this many seconds (default {DEFAULT_SWEEP_INTERVAL:g})",
    )
    parser.add_argument("--blend", help="open this .blend file before serving")
    parser.add_argument("--log-level", default="INFO", help="logging level on stderr (default INFO)")
    args = parser.parse_args(list(argv))
    if args.idle_timeout <= 0 or args.sweep_interval <= 0:
        parser.error("--idle-timeout and --sweep-interval must be positive")
    return args


def write_ready_file(path: str, host: str, port: int) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".ready-", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{host}:{port}\n")
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def serve(args: argparse.Namespace, stop: Optional[threading.Event] = None) -> int:
    stop = stop or threading.Event()

    serving = True

    def request_stop(signum: int, _frame: object) -> None:
        if not serving:
            return  # already closing down; nothing left to interrupt
        if stop.is_set():
            # A second signal: interrupt whatever runs on the main thread (say, a runaway
            # execute_code, which answers it as an error) so the loop can end.
            log.info("signal %d again: interrupting the running command", signum)
            raise KeyboardInterrupt
        log.info("signal %d: stopping", signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)

    if args.blend:
        bpy.ops.wm.open_mainfile(filepath=args.blend)

    service = SessionService(
        host=args.host,
        port=args.port,
        idle_timeout=args.idle_timeout,
        sweep_interval=args.sweep_interval,
    )
    try:
        host, port = service.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1
    try:
        if args.ready_file:
            write_ready_file(args.ready_file, host, port)
        print(f"READY {host}:{port}", flush=True)
        log.info("Blender %s serving on %s:%d", bpy.app.version_string, host, port)
        while not stop.is_set():
            try:
                service.drain(timeout=0.05)
            except KeyboardInterrupt:
                pass  # the second signal landed outside a command; `stop` is set
    finally:
        serving = False
        service.stop()
        if args.ready_file:
            try:
                os.unlink(args.ready_file)
            except OSError:
                pass
        log.info("stopped")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(_script_args(sys.argv if argv is None else argv))
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return serve(args)


if __name__ == "__main__":
    code = main()
    if code:
        sys.exit(code)
