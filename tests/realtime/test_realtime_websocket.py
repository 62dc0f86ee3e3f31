"""A server-side Realtime WebSocket proxy using the tracker, under real uvicorn.

The upstream is a fake Realtime API replaying a recorded session: it sends the session events
on connect and one recorded response per ``response.create``. The proxy relays both ways and
feeds every upstream frame to a ``RealtimeSessionTracker``; the client is the ``websockets``
library.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rt_helpers import Captured, recorded
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect as upstream_connect
from websockets.sync.client import connect

from scr_middleware.examples.serving import ServerThread as UvicornThread
from scr_middleware.realtime import RealtimeSessionTracker


def _recorded_groups() -> tuple[list[str], list[list[str]]]:
    """(session events, then one group of frames per response ending in response.done)."""
    frames = recorded()
    opening = frames[:2]
    groups: list[list[str]] = [[]]
    for frame in frames[2:]:
        groups[-1].append(frame)
        if json.loads(frame)["type"] == "response.done":
            groups.append([])
    return opening, [group for group in groups if group]


def build_app(captured: Captured) -> Starlette:
    opening, responses = _recorded_groups()

    async def upstream(websocket: WebSocket) -> None:
        await websocket.accept()
        for frame in opening:
            await websocket.send_text(frame)
        pending = iter(responses)
        try:
            while True:
                message = json.loads(await websocket.receive_text())
                if message.get("type") == "response.create":
                    for frame in next(pending):
                        await websocket.send_text(frame)
        except WebSocketDisconnect:
            return

    async def proxy(websocket: WebSocket) -> None:
        await websocket.accept()
        port = websocket.scope["server"][1]
        user = websocket.query_params.get("user")
        async with upstream_connect(f"ws://127.0.0.1:{port}/upstream") as upstream_ws:
            with RealtimeSessionTracker(user_id=user, runtime=captured.runtime) as tracker:

                async def client_to_upstream() -> None:
                    try:
                        while True:
                            await upstream_ws.send(await websocket.receive_text())
                    except WebSocketDisconnect:
                        return

                async def upstream_to_client() -> None:
                    async for frame in upstream_ws:
                        tracker.feed(frame)
                        await websocket.send_text(str(frame))

                tasks = {
                    asyncio.create_task(client_to_upstream()),
                    asyncio.create_task(upstream_to_client()),
                }
                _, rest = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in rest:
                    task.cancel()
                await asyncio.gather(*rest, return_exceptions=True)

    return Starlette(
        routes=[WebSocketRoute("/upstream", upstream), WebSocketRoute("/proxy", proxy)]
    )


def test_proxy_captures_one_event_with_exact_usage(captured: Captured) -> None:
    received: list[dict[str, Any]] = []
    with (
        UvicornThread(build_app(captured)) as server,
        connect(f"ws://127.0.0.1:{server.port}/proxy?user=user_42") as client,
    ):
        for _ in range(3):
            client.send(json.dumps({"type": "response.create"}))
            while True:
                received.append(json.loads(client.recv(timeout=20)))
                if received[-1]["type"] == "response.done":
                    break
        assert captured.events() == []  # nothing until the session ends
        client.close()
        events = captured.wait_for(1)

    assert [r["type"] for r in received[:2]] == ["session.created", "session.updated"]
    assert len(events) == 1
    event = events[0]
    assert event["session_id"] == "sess_C9gZ1xRt"
    assert event["user_id"] == "user_42"
    assert event["session_type"] == "realtime"
    assert event["transport"] == "websocket"
    assert event["usage"]["input_tokens"] == 842
    assert event["usage"]["output_tokens"] == 190
    assert event["usage"]["total_tokens"] == 1032
    assert event["usage"]["source"] == "reported"
    assert event["outcome"] == {"status": "success"}
    assert event["duration_ms"] > 0
