"""Interop checks with the official MCP Python SDK client against the echo example
behind McpSessionLayer.

    python py-client.py http://127.0.0.1:PORT/mcp

Two connections: `mode="legacy"` (initialize handshake, session, DELETE on close, then
the old session id must get 404) and `mode="auto"` (the SDK probes `server/discover`
and must settle on the stateless 2026-07-28 era: no session id minted). The legacy
connection registers sampling and elicitation callbacks and calls the echo example's
tools that ask the client (the conformance suite's sampling, elicitation, SEP-1034 and
SEP-1330 tools), checking what they received and what they returned. Prints one line
per check and closes with `N passed, M failed`; exits non-zero on any failure.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import traceback

import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/mcp"
STEP_TIMEOUT = 20
VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]+$")

passed = 0
failed = 0


def check(name: str, ok: bool, detail: object = "") -> bool:
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL {name}: {detail}", flush=True)
    return ok


class Wire:
    """Records every HTTP exchange of one httpx2 client."""

    def __init__(self) -> None:
        self.exchanges: list[dict[str, object]] = []

    async def on_response(self, response: httpx2.Response) -> None:
        self.exchanges.append(
            {
                "method": response.request.method,
                "status": response.status_code,
                "sent_session": response.request.headers.get("mcp-session-id"),
                "session": response.headers.get("mcp-session-id"),
                "content_type": response.headers.get("content-type"),
            }
        )

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            timeout=httpx2.Timeout(30, read=300),
            event_hooks={"response": [self.on_response]},
        )


def text_of(result) -> str | None:
    content = getattr(result, "content", None) or []
    return getattr(content[0], "text", None) if content else None


ANSWERED = re.compile(r"^(.*): action=(\w+), content=(.*)$", re.S)


def answered(result, lead: str) -> tuple[str | None, object]:
    """The action and the JSON content a tool's result text repeats."""
    match = ANSWERED.match(text_of(result) or "")
    if not match or match.group(1) != lead:
        return None, text_of(result)
    return match.group(2), json.loads(match.group(3))


class Asked:
    """The sampling and elicitation handlers: record each request, answer as told."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        # (action, content) for the next elicitation; None content: fill in the
        # schema's defaults, as a form showing them and accepted unchanged would.
        self.answer: tuple[str, dict | None] = ("decline", {})

    async def sampling(self, context, params: types.CreateMessageRequestParams):
        self.requests.append(params.model_dump(by_alias=True, exclude_none=True))
        prompt = getattr(params.messages[0].content, "text", None)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"sampled: {prompt}"),
            model="interop",
            stop_reason="endTurn",
        )

    async def elicitation(self, context, params: types.ElicitRequestParams):
        dumped = params.model_dump(by_alias=True, exclude_none=True)
        self.requests.append(dumped)
        action, content = self.answer
        if action != "accept":
            return types.ElicitResult(action=action)
        if content is None:
            properties = dumped.get("requestedSchema", {}).get("properties", {})
            content = {k: v["default"] for k, v in properties.items() if "default" in v}
        return types.ElicitResult(action=action, content=content)


async def client_requests(client: Client, asked: Asked) -> None:
    """The tools that ask the client before answering (the conformance suite's
    sampling and elicitation tools), through the SDK's handlers."""
    result = await client.call_tool("test_sampling", {"prompt": "what is 2+2?"})
    check(
        "legacy: sampling handler got the prompt",
        asked.requests and asked.requests[-1]["messages"][0]["content"]["text"] == "what is 2+2?",
        asked.requests,
    )
    check(
        "legacy: test_sampling returned the sample",
        text_of(result) == "LLM response: sampled: what is 2+2?" and not result.is_error,
        result,
    )

    given = {"username": "py", "email": "py@example.com"}
    asked.answer = ("accept", given)
    result = await client.call_tool("test_elicitation", {"message": "Who are you?"})
    check("legacy: elicitation handler got the message", asked.requests[-1].get("message") == "Who are you?", asked.requests)
    check(
        "legacy: test_elicitation returned the answer",
        answered(result, "User response") == ("accept", given),
        result,
    )
    asked.answer = ("cancel", None)
    result = await client.call_tool("test_elicitation", {"message": "Again?"})
    check("legacy: a cancel comes back without content", answered(result, "User response") == ("cancel", None), result)

    asked.answer = ("accept", None)
    result = await client.call_tool("test_elicitation_sep1034_defaults", {})
    properties = asked.requests[-1].get("requestedSchema", {}).get("properties", {})
    wanted = {"name": "John Doe", "age": 30, "score": 95.5, "status": "active", "verified": True}
    types_seen = {k: v.get("type") for k, v in properties.items()}
    check(
        "legacy: sep1034 schema: a default of every type",
        {k: v.get("default") for k, v in properties.items()} == wanted
        and types_seen == {"name": "string", "age": "integer", "score": "number", "status": "string", "verified": "boolean"}
        and properties["status"].get("enum") == ["active", "inactive", "pending"],
        properties,
    )
    check(
        "legacy: sep1034 tool got the defaults back",
        answered(result, "Elicitation completed") == ("accept", wanted),
        result,
    )

    picks = {
        "untitledSingle": "option3",
        "titledSingle": "value1",
        "legacyEnum": "opt2",
        "untitledMulti": ["option2"],
        "titledMulti": ["value1", "value3"],
    }
    asked.answer = ("accept", picks)
    result = await client.call_tool("test_elicitation_sep1330_enums", {})
    p = asked.requests[-1].get("requestedSchema", {}).get("properties", {})

    def titled(options) -> bool:
        return isinstance(options, list) and len(options) == 3 and all(
            isinstance(o.get("const"), str) and isinstance(o.get("title"), str) for o in options
        )

    check(
        "legacy: sep1330 schema: the five enum shapes",
        p.get("untitledSingle", {}).get("enum") == ["option1", "option2", "option3"]
        and titled(p.get("titledSingle", {}).get("oneOf"))
        and len(p.get("legacyEnum", {}).get("enumNames", [])) == len(p.get("legacyEnum", {}).get("enum", [None]))
        and p.get("untitledMulti", {}).get("items", {}).get("enum") == ["option1", "option2", "option3"]
        and titled(p.get("titledMulti", {}).get("items", {}).get("anyOf")),
        p,
    )
    check(
        "legacy: sep1330 tool got the picks back",
        answered(result, "Elicitation completed") == ("accept", picks),
        result,
    )


async def legacy() -> None:
    wire = Wire()
    session_id = None
    asked = Asked()
    async with wire.client() as http:
        async with Client(
            streamable_http_client(URL, http_client=http),
            mode="legacy",
            sampling_callback=asked.sampling,
            elicitation_callback=asked.elicitation,
        ) as client:
            init = next((e for e in wire.exchanges if e["session"]), None)
            session_id = init["session"] if init else None
            check(
                "legacy: initialize issued a session id",
                isinstance(session_id, str) and bool(VISIBLE_ASCII.match(session_id)),
                wire.exchanges,
            )
            check(
                "legacy: protocol version negotiated",
                client.protocol_version == "2025-11-25",
                client.protocol_version,
            )
            tools = await client.list_tools()
            names = sorted(t.name for t in tools.tools)
            check("legacy: tools/list", {"echo", "notify_me"} <= set(names), names)
            result = await client.call_tool("echo", {"message": "hello from python"})
            check(
                "legacy: tools/call echo",
                text_of(result) == "hello from python" and not result.is_error,
                result,
            )
            progress: list[float] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append(value)

            result = await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
            check(
                "legacy: progress over the POST SSE stream",
                progress == [0, 50, 100] and text_of(result) == "progress complete",
                (progress, result),
            )
            await client_requests(client, asked)
            posts = [e for e in wire.exchanges if e["method"] == "POST" and e["session"] is None]
            check(
                "legacy: later requests carry the session id",
                bool(posts) and all(e["sent_session"] == session_id for e in posts),
                posts,
            )
        # Leaving the client sends DELETE (terminate_on_close).
        deletes = [e for e in wire.exchanges if e["method"] == "DELETE"]
        check(
            "legacy: DELETE on close terminated the session",
            len(deletes) == 1 and deletes[0]["status"] == 200 and deletes[0]["sent_session"] == session_id,
            deletes,
        )
        response = await http.post(
            URL,
            headers={
                "content-type": "application/json",
                "accept": "application/json, text/event-stream",
                "mcp-session-id": session_id or "",
                "mcp-protocol-version": "2025-11-25",
            },
            json={"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {}},
        )
        check(
            "legacy: old session id answered 404",
            response.status_code == 404,
            f"{response.status_code} {response.text}",
        )


async def auto() -> None:
    wire = Wire()
    async with wire.client() as http:
        async with Client(streamable_http_client(URL, http_client=http), mode="auto") as client:
            check(
                "auto: settled on the stateless 2026-07-28 era",
                client.protocol_version == "2026-07-28",
                client.protocol_version,
            )
            tools = await client.list_tools()
            check("auto: tools/list", "echo" in {t.name for t in tools.tools}, tools)
            result = await client.call_tool("echo", {"message": "stateless hello"})
            check(
                "auto: tools/call echo",
                text_of(result) == "stateless hello" and not result.is_error,
                result,
            )
            progress: list[float] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append(value)

            result = await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
            check(
                "auto: progress over a stateless SSE response",
                progress == [0, 50, 100] and text_of(result) == "progress complete",
                (progress, result),
            )
        minted = [e for e in wire.exchanges if e["session"]]
        check("auto: no session id minted", not minted, minted)
        check(
            "auto: no GET stream and no DELETE",
            not any(e["method"] in ("GET", "DELETE") for e in wire.exchanges),
            wire.exchanges,
        )


async def main() -> int:
    for name, scenario in (("legacy", legacy), ("auto", auto)):
        try:
            await asyncio.wait_for(scenario(), STEP_TIMEOUT)
        except BaseException as error:  # noqa: BLE001 - every failure is a counted check
            if isinstance(error, KeyboardInterrupt):
                raise
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            check(f"{name}: ran to the end", False, detail)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
