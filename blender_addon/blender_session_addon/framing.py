"""Incremental JSON frame scanner and reply encoder (no bpy; standard library only).

Callers write JSON values back to back: bare (the stock client's way, no delimiter), one per line
(NDJSON), or pretty-printed over several lines. `FrameScanner.feed` takes whatever one `recv` returned
and hands back every complete frame, in order.

Why a scanner and not `json.loads` on the whole buffer (the stock addon's way):

* it works on bytes and keeps its position, container stack and grammar state across reads, so each
  byte is looked at once (linear time) and a UTF-8 character split between two reads is harmless;
* a complete value is decoded exactly once, after its closing bracket has been seen;
* it follows the JSON grammar token by token, so malformed input is noticed where it goes wrong,
  answered with one error, and scanning resynchronises: at the error byte when that byte is a `{`
  opening its own line (a fresh request after a broken one), otherwise after the next newline.

Strings are skipped with a compiled regular expression and scalars are matched whole, so Python
touches one token at a time, never one byte at a time. `NaN`, `Infinity` and `-Infinity` are
accepted as Python's `json` module emits them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional, Union

DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024

# Longest scalar (number or literal) accepted before it is treated as garbage.
_MAX_SCALAR_BYTES = 1024

_WHITESPACE = re.compile(rb"[ \t\r\n]*")
_STRING_STOP = re.compile(rb'["\\\x00-\x1f]')
_SCALAR_RUN = re.compile(rb"[-+.0-9A-Za-z]+")
_SCALAR_VALID = re.compile(
    rb"-?(?:Infinity|(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)|NaN|true|false|null"
)

# What the grammar allows next.
_VALUE = 0  # a value (top level, after ':' or after ',' in an array)
_VALUE_OR_CLOSE = 1  # right after '['
_KEY_OR_CLOSE = 2  # right after '{'
_KEY = 3  # after ',' in an object
_COLON = 4  # after a key
_COMMA_OR_CLOSE = 5  # after a value inside a container


@dataclass(frozen=True)
class Frame:
    """One complete JSON value, decoded."""

    value: Any


@dataclass(frozen=True)
class FrameError:
    """Input that is not JSON; `message` is meant for the caller."""

    message: str


@dataclass(frozen=True)
class FrameTooLarge:
    """A frame grew past the limit; the connection cannot be resynchronised and should close."""

    limit: int


ScanResult = Union[Frame, FrameError, FrameTooLarge]


class _NeedMore:
    """The token at the scan position may continue in the next read."""


_NEED_MORE = _NeedMore()


class FrameScanner:
    """Splits a byte stream into JSON values; one instance per connection."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._pos = 0  # next byte to examine
        self._start: Optional[int] = None  # where the frame being scanned began
        self._stack: list[int] = []  # open containers: ord('{') or ord('[')
        self._expect = _VALUE
        self._in_string = False
        self._string_is_key = False
        self._skipping = False  # discarding garbage up to the next newline
        self._closed = False
        self.decode_calls = 0  # how many complete values were handed to the JSON decoder

    def feed(self, data: bytes) -> list[ScanResult]:
        """Add bytes from the socket; return every frame (or error) they complete, in order."""
        if self._closed:
            return []
        self._buf += data
        results: list[ScanResult] = []
        while True:
            outcome = self._step()
            if outcome is None:
                break
            results.append(outcome)
            if isinstance(outcome, FrameTooLarge):
                self._closed = True
                self._buf.clear()
                break
        self._compact()
        if not self._closed and self._start is not None:
            if len(self._buf) - self._start > self.max_frame_bytes:
                self._closed = True
                self._buf.clear()
                results.append(FrameTooLarge(self.max_frame_bytes))
        return results

    # -- scanning -------------------------------------------------------------------------

    def _step(self) -> Optional[ScanResult]:
        """Advance until one frame or error is complete, or the buffer runs out (None)."""
        buf = self._buf
        while True:
            if self._skipping:
                newline = buf.find(b"\n", self._pos)
                if newline < 0:
                    self._pos = len(buf)
                    return None
                self._pos = newline + 1
                self._skipping = False
            if self._in_string:
                done = self._scan_string()
                if done is None:
                    return None
                if isinstance(done, FrameError):
                    return done
                if self._string_is_key:
                    self._expect = _COLON
                    continue
                finished = self._after_value()
                if finished is not None:
                    return finished
                continue
            self._pos = _WHITESPACE.match(buf, self._pos).end()
            if self._pos >= len(buf):
                return None
            outcome = self._token(buf[self._pos])
            if outcome is _NEED_MORE:
                return None
            if outcome is not None:
                return outcome

    def _token(self, byte: int) -> Union[ScanResult, _NeedMore, None]:
        """Consume one token starting at self._pos; None means keep scanning."""
        expect = self._expect
        if self._start is None:
            self._start = self._pos
        if byte == 0x22:  # '"'
            if expect in (_VALUE, _VALUE_OR_CLOSE):
                self._string_is_key = False
            elif expect in (_KEY, _KEY_OR_CLOSE):
                self._string_is_key = True
            else:
                return self._error("unexpected string")
            self._in_string = True
            self._pos += 1
            return None
        if byte in (0x7B, 0x5B):  # '{' '['
            if expect not in (_VALUE, _VALUE_OR_CLOSE):
                return self._error(f"unexpected {chr(byte)!r}")
            self._stack.append(byte)
            self._expect = _KEY_OR_CLOSE if byte == 0x7B else _VALUE_OR_CLOSE
            self._pos += 1
            return None
        if byte in (0x7D, 0x5D):  # '}' ']'
            opener = 0x7B if byte == 0x7D else 0x5B
            closable = _KEY_OR_CLOSE if byte == 0x7D else _VALUE_OR_CLOSE
            if not self._stack or self._stack[-1] != opener or expect not in (closable, _COMMA_OR_CLOSE):
                return self._error(f"unexpected {chr(byte)!r}")
            self._stack.pop()
            self._pos += 1
            return self._after_value()
        if byte == 0x3A:  # ':'
            if expect != _COLON:
                return self._error("unexpected ':'")
            self._expect = _VALUE
            self._pos += 1
            return None
        if byte == 0x2C:  # ','
            if expect != _COMMA_OR_CLOSE:
                return self._error("unexpected ','")
            self._expect = _KEY if self._stack[-1] == 0x7B else _VALUE
            self._pos += 1
            return None
        return self._scalar(expect)

    def _scalar(self, expect: int) -> Union[ScanResult, _NeedMore, None]:
        match = _SCALAR_RUN.match(self._buf, self._pos)
        if match is None:
            return self._error("unexpected character")
        if expect not in (_VALUE, _VALUE_OR_CLOSE):
            return self._error("unexpected value")
        end = match.end()
        if end - self._pos > _MAX_SCALAR_BYTES:
            return self._error("value too long")
        if end == len(self._buf):
            # The number or literal may continue in the next read; look again then.
            if self._start == self._pos and not self._stack:
                self._start = None
            return _NEED_MORE
        if _SCALAR_VALID.fullmatch(self._buf, self._pos, end) is None:
            return self._error("invalid literal")
        self._pos = end
        return self._after_value()

    def _scan_string(self) -> Optional[Union[bool, FrameError]]:
        """Move through a string's body. True once its closing quote is consumed."""
        buf = self._buf
        while True:
            stop = _STRING_STOP.search(buf, self._pos)
            if stop is None:
                self._pos = len(buf)
                return None
            index = stop.start()
            byte = buf[index]
            if byte == 0x22:
                self._pos = index + 1
                self._in_string = False
                return True
            if byte == 0x5C:  # backslash: the escaped byte may be in the next read
                if index + 1 >= len(buf):
                    self._pos = index
                    return None
                self._pos = index + 2
                continue
            # A raw control character (a newline above all) cannot be inside a JSON string.
            self._pos = index
            self._in_string = False
            return self._error("control character in string")

    def _after_value(self) -> Optional[ScanResult]:
        if self._stack:
            self._expect = _COMMA_OR_CLOSE
            return None
        return self._emit()

    def _emit(self) -> ScanResult:
        assert self._start is not None
        raw = bytes(self._buf[self._start : self._pos])
        self._reset_frame()
        self.decode_calls += 1
        try:
            return Frame(json.loads(raw.decode("utf-8")))
        except UnicodeDecodeError as exc:
            return FrameError(f"Invalid JSON: not UTF-8 ({exc.reason})")
        except ValueError as exc:
            return FrameError(f"Invalid JSON: {exc}")

    def _error(self, what: str) -> FrameError:
        """Report a grammar error at self._pos and resynchronise."""
        buf = self._buf
        start = self._start if self._start is not None else self._pos
        position = self._pos - start
        byte = buf[self._pos]
        self._reset_frame()
        line_start = buf.rfind(b"\n", 0, self._pos) + 1
        fresh_line = line_start > start and not buf[line_start : self._pos].strip()
        if byte == 0x7B and fresh_line:
            pass  # a '{' opening its own line after a broken frame: scan it as a new request
        elif byte == 0x0A:
            self._pos += 1
        else:
            self._skipping = True
        return FrameError(f"Invalid JSON: {what} at byte {position} of the frame")

    def _reset_frame(self) -> None:
        self._start = None
        self._stack.clear()
        self._expect = _VALUE
        self._in_string = False
        self._skipping = False

    def _compact(self) -> None:
        """Drop consumed bytes, rarely enough that compaction stays linear overall."""
        keep_from = self._start if self._start is not None else self._pos
        if keep_from > 65536 and keep_from * 2 > len(self._buf):
            del self._buf[:keep_from]
            self._pos -= keep_from
            if self._start is not None:
                self._start -= keep_from


def _jsonable(value: Any) -> Any:
    """Fallback for values json cannot encode (mathutils vectors, sets, bpy structs...)."""
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    try:
        return [item for item in value]
    except TypeError:
        return str(value)


def encode_reply(reply: Any) -> bytes:
    """One JSON value plus '\\n', ASCII-escaped like `json.dumps` so every client can read it."""
    return (json.dumps(reply, default=_jsonable) + "\n").encode("ascii")
