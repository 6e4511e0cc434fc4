"""A 2026-07-28-only MCP server written with the official Python SDK (`mcp` 2.3.0),
run stateless, for the interop suite's proof that `examples/proxy.rs --translate`
gives a server in another language what it cannot do itself: every 2025-era client.

It serves the tools of the conformance suite's tools scenarios (content of each
kind, logging, progress, an error, and sampling and elicitation through the SDK's
multi round-trip resolvers). A guard in front of the SDK refuses anything that is not
a 2026-07-28 request (the `MCP-Protocol-Version` header and the body's `_meta` both
naming it) with 400 and logs the marker `LEGACY MESSAGE REACHED THE HANDLER`, which
`run.sh` looks for: behind the proxy in translation mode, no legacy message may get
through.

    python py-modern-server.py --port PORT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Annotated, Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve, Sample
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import (
    AudioContent,
    CreateMessageResult,
    EmbeddedResource,
    ImageContent,
    SamplingMessage,
    TextContent,
    TextResourceContents,
)
from pydantic import BaseModel, Field

MODERN = "2026-07-28"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQIAAACAgA=="

server = MCPServer(name="py-modern-server", version="0.0.0")


def image() -> ImageContent:
    return ImageContent(type="image", data=PNG, mime_type="image/png")


def resource() -> EmbeddedResource:
    return EmbeddedResource(
        type="resource",
        resource=TextResourceContents(
            uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
        ),
    )


@server.tool(description="Answer with one text block.")
def test_simple_text() -> str:
    return "This is a simple text response for testing."


@server.tool(description="Answer with a PNG image.")
def test_image_content() -> list[Any]:
    return [image()]


@server.tool(description="Answer with a WAV clip.")
def test_audio_content() -> list[Any]:
    return [AudioContent(type="audio", data=WAV, mime_type="audio/wav")]


@server.tool(description="Answer with an embedded resource.")
def test_embedded_resource() -> list[Any]:
    return [resource()]


@server.tool(description="Answer with text, image and resource.")
def test_multiple_content_types() -> list[Any]:
    return [TextContent(type="text", text="Multiple content types test:"), image(), resource()]


@server.tool(description="Answer with a tool error.")
def test_error_handling() -> str:
    raise RuntimeError("This tool intentionally returns an error for testing")


@server.tool(description="Log three messages on the response stream, then answer.")
async def test_tool_with_logging(ctx: Context) -> str:
    for text in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        await ctx.info(text)
        await asyncio.sleep(0.05)
    return "Tool with logging executed successfully"


@server.tool(description="Report progress 0, 50, 100, then answer.")
async def test_tool_with_progress(ctx: Context) -> str:
    for step in (0, 50, 100):
        await ctx.report_progress(step, 100)
        await asyncio.sleep(0.05)
    return "Tool with progress executed successfully"


def ask_llm(prompt: str) -> Sample:
    return Sample(
        [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
        max_tokens=100,
    )


@server.tool(description="Ask the client's LLM (sampling), answer with what it said.")
def test_sampling(prompt: str, sampled: Annotated[CreateMessageResult, Resolve(ask_llm)]) -> str:
    content = sampled.content
    text = content.text if isinstance(content, TextContent) else json.dumps(content.model_dump(mode="json"))
    return f"LLM response: {text}"


class Contact(BaseModel):
    username: str = Field(description="User's response")
    email: str = Field(description="User's email address")


def ask_user(message: str) -> Elicit[Contact]:
    return Elicit(message, Contact)


@server.tool(description="Ask the user (elicitation), answer with what they said.")
def test_elicitation(message: str, contact: Annotated[Contact, Resolve(ask_user)]) -> str:
    return f"User response: action=accept, content={json.dumps(contact.model_dump())}"


class ModernOnly:
    """Refuse, and log, any request that is not a 2026-07-28 request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        header = headers.get(b"mcp-protocol-version", b"").decode("latin-1")
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            meta = json.loads(body)["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"]
        except (ValueError, KeyError, TypeError):
            meta = None
        if header != MODERN or meta != MODERN:
            print(
                f"LEGACY MESSAGE REACHED THE HANDLER: {scope['method']} {body[:200]!r}",
                file=sys.stderr,
                flush=True,
            )
            await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"legacy message"})
            return
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The layer in front (the proxy) checks Host and Origin against its own address, and
    # forwards the client's: checking them again here against the upstream's port
    # would refuse every browser-style request.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(stateless_http=True, transport_security=security)
    uvicorn.run(ModernOnly(app), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
