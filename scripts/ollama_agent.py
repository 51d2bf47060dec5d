#!/usr/bin/env python3
"""An Ollama tool-calling agent loop that drives Blender through the Session Manager.

    python scripts/ollama_agent.py --ollama-url http://127.0.0.1:11434 --model qwen3 \\
        --manager 127.0.0.1:9880 "make a red cube"

The tools are the manager's catalogue (``list_tools``: execute_blender_code, get_scene_info,
get_object_info, get_viewport_screenshot), offered to the model in Ollama's format. The loop posts
the conversation to ``/api/chat``; every tool call the model makes runs through the manager's
``handle_tool_call`` in one session kept for the whole conversation (created by the first tool
call, or given with ``--session``), and its result goes back as a ``{"role": "tool"}`` message.
When a reply has no tool calls, its text is the final answer, printed on stdout. Progress (tool
calls, the session id) goes to stderr.

Standard library only; the model must support tool calling (llama3.1+, qwen2.5/qwen3,
mistral-nemo, ...). Exit status: 0 with an answer, 1 on an error (Ollama or the manager
unreachable, an Ollama error, --max-steps reached), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from session_manager_client import SessionManagerClient, SessionManagerError  # noqa: E402

DEFAULT_SYSTEM = (
    "You control Blender 3D through tools. Use execute_blender_code to run Python with bpy "
    "(print what you want to see: its stdout is returned); get_scene_info and get_object_info to "
    "look at the scene. Work step by step, check results, then answer briefly what you did."
)
MAX_TOOL_TEXT = 16000  # characters of one tool result sent back to the model
# Errors after which another step cannot help: stop instead of telling the model.
FATAL_KINDS = {"connection_error", "timeout", "unauthorized", "session_not_found", "shutting_down",
               "protocol_error"}


class AgentError(Exception):
    """A failure that ends the run, with a message for the user."""


def log(msg: str) -> None:
    print(f"[ollama_agent] {msg}", file=sys.stderr, flush=True)


def short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------------- tools

def ollama_tools(catalogue: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The manager's MCP-style catalogue in Ollama's format, without ``session_id``: the loop
    supplies the session itself."""
    tools = []
    for tool in catalogue:
        schema = copy.deepcopy(tool.get("input_schema") or {"type": "object", "properties": {}})
        schema.setdefault("type", "object")
        props = schema.get("properties")
        if isinstance(props, dict):
            props.pop("session_id", None)
        else:
            schema["properties"] = {}
        if isinstance(schema.get("required"), list):
            schema["required"] = [r for r in schema["required"] if r != "session_id"]
        tools.append({"type": "function", "function": {
            "name": tool["name"], "description": tool.get("description", ""), "parameters": schema}})
    return tools


def parse_arguments(raw: Any) -> Dict[str, Any]:
    """A tool call's arguments: an object (Ollama) or a JSON string (OpenAI style)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as e:
            raise ValueError(f"arguments are not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"arguments must be an object, got {type(raw).__name__}")
    return raw


def tool_text(name: str, result: Any) -> str:
    """What the model sees of a tool result: execute_code's stdout, a screenshot's size (never the
    image data), a Blender error's message, otherwise compact JSON."""
    if not isinstance(result, dict):
        return truncate(json.dumps(result, separators=(",", ":"), ensure_ascii=False))
    status = result.get("status")
    if status == "error":
        text = "Blender error: " + str(result.get("message", ""))
        tb = result.get("traceback")
        if tb:
            text += "\n" + str(tb)[-2000:]
        return truncate(text)
    if status == "cancelled":
        return "cancelled: " + str(result.get("message", ""))
    if status != "success":
        return truncate(json.dumps(result, separators=(",", ":"), ensure_ascii=False))
    value = result.get("result")
    if isinstance(value, dict) and "executed" in value and isinstance(value.get("result"), str):
        out = value["result"]
        return truncate(out) if out.strip() else "(ran without output; print() what you need to see)"
    if isinstance(value, dict) and isinstance(value.get("image"), str):
        meta = {k: v for k, v in value.items() if k != "image"}
        return (f"screenshot taken: {meta.get('width')}x{meta.get('height')} {meta.get('format', 'png')}"
                f" ({meta.get('source', 'viewport')}), {len(value['image'])} bytes of base64 not shown")
    return truncate(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def truncate(text: str) -> str:
    if len(text) <= MAX_TOOL_TEXT:
        return text
    return text[:MAX_TOOL_TEXT] + f"\n… ({len(text) - MAX_TOOL_TEXT} more characters cut)"


# ---------------------------------------------------------------------- Ollama

def chat(url: str, body: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    endpoint = url.rstrip("/") + "/api/chat"
    req = urllib.request.Request(endpoint, data=json.dumps(body).encode("utf-8"),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise AgentError(f"Ollama at {url} answered {e.code}: {detail}") from None
    except urllib.error.URLError as e:
        raise AgentError(f"cannot reach Ollama at {url}: {e.reason} (is `ollama serve` running? "
                         "scripts/start_manager.sh --start-ollama starts it)") from None
    except OSError as e:  # timeouts, resets
        raise AgentError(f"no answer from Ollama at {url}: {e}") from None
    try:
        reply = json.loads(raw)
    except ValueError:
        raise AgentError(f"Ollama at {url} sent something that is not JSON: {raw[:200]!r}") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("message"), dict):
        raise AgentError(f"unexpected reply from Ollama: {short(reply, 300)}")
    return reply


# ---------------------------------------------------------------------- the loop

class Agent:
    def __init__(self, client: SessionManagerClient, ollama_url: str, model: str,
                 session_id: Optional[str] = None, max_steps: int = 10, ollama_timeout: float = 600.0,
                 system: Optional[str] = DEFAULT_SYSTEM) -> None:
        self.client = client
        self.ollama_url = ollama_url
        self.model = model
        self.session_id = session_id
        self.max_steps = max_steps
        self.ollama_timeout = ollama_timeout
        self.system = system

    def run(self, prompt: str) -> str:
        try:
            catalogue = self.client.list_tools()
            if self.session_id:
                self.client.get_session_info(self.session_id)
        except SessionManagerError as e:
            raise AgentError(manager_problem(self.client, e)) from None
        tools = ollama_tools(catalogue)
        known = {t["function"]["name"] for t in tools}
        if self.session_id:
            log(f"session {self.session_id}")
        messages: List[Dict[str, Any]] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": prompt})

        for step in range(1, self.max_steps + 1):
            reply = chat(self.ollama_url, {"model": self.model, "messages": messages, "tools": tools,
                                           "stream": False}, self.ollama_timeout)
            message = reply["message"]
            calls = message.get("tool_calls") or []
            messages.append(message)
            if not calls:
                return str(message.get("content") or "")
            for call in calls:
                fn = call.get("function") or {}
                name = str(fn.get("name", ""))
                messages.append({"role": "tool", "tool_name": name, "content": self.run_tool(step, name, fn, known)})
        raise AgentError(f"no final answer after --max-steps {self.max_steps} model replies "
                         f"(the model kept calling tools); session {self.session_id or '(none)'}")

    def run_tool(self, step: int, name: str, fn: Dict[str, Any], known: set) -> str:
        try:
            args = parse_arguments(fn.get("arguments"))
        except ValueError as e:
            log(f"step {step}: {name}: {e}")
            return f"error: {e}"
        args.pop("session_id", None)  # the loop keeps the session
        log(f"step {step}: {name} {short(args)}")
        if name not in known:
            return f"error: unknown tool {name!r}; the tools are: {', '.join(sorted(known))}"
        try:
            reply = self.client.handle_tool_call(name, args, session_id=self.session_id, follow=True)
        except SessionManagerError as e:
            if e.kind in FATAL_KINDS:
                raise AgentError(manager_problem(self.client, e)) from None
            log(f"step {step}: {name} failed: {e.message}")
            return f"error: {e.message}"
        if self.session_id is None:
            self.session_id = reply.get("session_id")
            log(f"session {self.session_id} (created by the first tool call)")
        text = tool_text(name, reply.get("result"))
        log(f"step {step}: {name} -> {short(text)}")
        return text


def manager_problem(client: SessionManagerClient, e: SessionManagerError) -> str:
    if e.kind == "connection_error":
        return f"{e.message}"
    if e.kind == "unauthorized":
        return f"the session manager at {client.address} refused the token: {e.message} (use --token)"
    return f"session manager at {client.address}: {e.message}"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(
        description="Ollama tool-calling agent loop driving Blender through the Session Manager.")
    p.add_argument("prompt", nargs="+", help='what to do, e.g. "make a red cube"')
    p.add_argument("--ollama-url", default=os.environ.get("OLLAMA_URL", "http://127.0.0.1:11434"),
                   help="Ollama base URL (default: $OLLAMA_URL or http://127.0.0.1:11434)")
    p.add_argument("--model", default=os.environ.get("OLLAMA_MODEL"),
                   help="Ollama model with tool support (default: $OLLAMA_MODEL)")
    p.add_argument("--manager", default=os.environ.get("SESSION_MANAGER_MANAGER", "127.0.0.1:9880"),
                   help="manager JSON-RPC address (default: $SESSION_MANAGER_MANAGER or 127.0.0.1:9880)")
    p.add_argument("--token", default=os.environ.get("SESSION_MANAGER_TOKEN"),
                   help="token of a manager started with --token (default: $SESSION_MANAGER_TOKEN)")
    p.add_argument("--session", help="use this existing session instead of creating one")
    p.add_argument("--max-steps", type=int, default=10, help="model replies allowed (default 10)")
    p.add_argument("--ollama-timeout", type=float, default=600.0,
                   help="seconds to wait for one Ollama reply (default 600)")
    p.add_argument("--system", default=DEFAULT_SYSTEM, help="system prompt ('' for none)")
    args = p.parse_args(argv)
    if not args.model:
        p.error("--model is required (or set OLLAMA_MODEL)")
    if args.max_steps < 1:
        p.error("--max-steps must be at least 1")
    try:
        client = SessionManagerClient.from_address(args.manager, token=args.token)
    except ValueError as e:
        p.error(str(e))

    agent = Agent(client, args.ollama_url, args.model, session_id=args.session, max_steps=args.max_steps,
                  ollama_timeout=args.ollama_timeout, system=args.system or None)
    try:
        answer = agent.run(" ".join(args.prompt))
    except AgentError as e:
        print(f"ollama_agent: error: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(answer)
    if agent.session_id:
        log(f"done; session {agent.session_id} stays open (history: "
            f"python scripts/session_manager_client.py history {agent.session_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
