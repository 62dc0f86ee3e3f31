"""Fallbacks to the app process: a full backlog, and records ``marshal`` cannot encode. Either
way the record is replayed here, and the event still reaches the ledger, once."""

from __future__ import annotations

import enum
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from asgi.fake_openai import CHAT, build_app
from fastapi import Request, Response
from fastapi.responses import JSONResponse

from scr_middleware import runtime as runtime_mod
from scr_middleware import scr_route
from scr_middleware.asgi import SessionCompletionMiddleware
from scr_middleware.extract.extractors import Extraction, ResponseData
from scr_middleware.offload.channel import MAX_SPAWNS_PER_MINUTE

from .kit import alive, by_session, ledger_rows, offload_stats, post_chat, post_many, wait_for

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def ledger() -> Path:
    return Path(os.environ["SCR_DATA_DIR"]) / "ledger.sqlite3"


def test_a_full_backlog_is_replayed_in_the_app_process(ledger: Path) -> None:
    # Two records may wait to be shipped; the app process's own router holds two as well, so
    # bursts of four never overflow it (that would drop events, by design).
    runtime = runtime_mod.configure(config={"capture": {"buffer_max_size": 2}})
    app = SessionCompletionMiddleware(build_app())
    users: list[str] = []
    for burst in range(3):
        batch = [{**BODY, "user": f"b{burst}-{index}"} for index in range(4)]
        post_many(app, batch)  # back to back: more than two wait for the capture process
        users += [body["user"] for body in batch]
        if burst == 0:
            # The capture process takes longer to start than four requests take here.
            assert offload_stats(runtime)["inline"] >= 1
        assert runtime.flush(15.0) is True
        assert sorted(row["user_id"] for row in ledger_rows(ledger)) == sorted(users)
    stats = offload_stats(runtime)
    assert stats["recorded"] + stats["inline"] == len(users)
    assert stats["acknowledged"] == stats["recorded"] >= 2
    assert runtime.stats.captured == stats["inline"]  # the replays went through this process
    rows = ledger_rows(ledger)
    assert len(rows) == len({row["event_id"] for row in rows}) == len(users)


def route_extractor(response: ResponseData) -> Extraction:
    return Extraction(
        session_type="custom",
        session_id="chatcmpl-custom",
        model="from-route",
        usage={"input_tokens": 1, "output_tokens": 2},
    )


class Tier(enum.StrEnum):
    GOLD = "gold"


def test_records_marshal_cannot_encode_are_replayed_in_the_app_process(ledger: Path) -> None:
    runtime = runtime_mod.configure()
    app = build_app()

    # An extractor object (not a "pkg.module:name" string), and a metadata value that is no
    # builtin: neither can be marshalled, so neither record can go to the capture process.
    @app.post("/custom/v1/chat/completions")
    @scr_route(extractor=route_extractor)
    async def custom(request: Request) -> Response:
        await request.body()
        return JSONResponse({**CHAT, "id": "chatcmpl-custom"})

    @app.post("/tiered/v1/chat/completions")
    @scr_route(metadata={"tier": Tier.GOLD})
    async def tiered(request: Request) -> Response:
        await request.body()
        return JSONResponse({**CHAT, "id": "chatcmpl-tiered"})

    middleware = SessionCompletionMiddleware(app)
    paths = ["/v1/chat/completions", "/custom/v1/chat/completions", "/tiered/v1/chat/completions"]
    for path in paths:
        post_chat(middleware, {**BODY, "user": "u-" + path.split("/")[1]}, path=path)
    assert runtime.flush(15.0) is True

    stats = offload_stats(runtime)
    assert stats["recorded"] == 3
    assert stats["inline"] == 2
    assert stats["shipped"] == stats["acknowledged"] == 1
    sessions = by_session(ledger_rows(ledger))
    assert sorted(sessions) == sorted(["chatcmpl-custom", "chatcmpl-tiered", CHAT["id"]])
    (custom_row,) = sessions["chatcmpl-custom"]
    custom_event: dict[str, Any] = custom_row["payload"]
    assert custom_event["session_type"] == "custom"
    assert custom_event["usage"]["model"] == "from-route"
    assert (custom_event["usage"]["input_tokens"], custom_event["usage"]["output_tokens"]) == (1, 2)
    assert custom_event["request"]["route"] == "/custom/v1/chat/completions"
    (tiered_row,) = sessions["chatcmpl-tiered"]
    assert tiered_row["payload"]["metadata"]["tier"] == "gold"
    assert tiered_row["payload"]["usage"]["total_tokens"] == CHAT["usage"]["total_tokens"]
    (plain_row,) = sessions[CHAT["id"]]
    assert plain_row["user_id"] == "u-v1"
    # Replayed here under the ids the capture process would have given them.
    assert len({row[0]["event_id"][:-8] for row in sessions.values()}) == 1


def test_after_five_starts_within_a_minute_capture_stays_in_the_app_process(
    ledger: Path,
) -> None:
    runtime = runtime_mod.configure(config={"capture": {"flush_interval_ms": 0}})
    app = SessionCompletionMiddleware(build_app())
    users: list[str] = []

    def request(user: str) -> None:
        post_chat(app, {**BODY, "user": user})
        users.append(user)

    killed: list[int] = []
    for attempt in range(MAX_SPAWNS_PER_MINUTE):
        request(f"before-{attempt}")

        def running(attempt: int = attempt) -> dict[str, Any] | None:
            stats = offload_stats(runtime)
            ok = stats["state"] == "running" and stats["spawns"] == attempt + 1
            return stats if ok else None

        pid = wait_for(running, f"capture process #{attempt + 1}")["pid"]
        # Delivered before the kill (what it acknowledged but had not delivered is lost with
        # it, by design: docs/offload.md).
        wait_for(
            lambda count=attempt + 1: len(ledger_rows(ledger)) == count,
            f"before-{attempt} in the ledger",
        )
        if attempt == MAX_SPAWNS_PER_MINUTE - 1:
            # The last one takes records it will never acknowledge.
            os.kill(pid, signal.SIGSTOP)
            for index in range(3):
                request(f"unacked-{index}")
            wait_for(
                lambda: (
                    (s := offload_stats(runtime))["pending"] == 0
                    and s["shipped"] - s["acknowledged"] == 3
                ),
                "three records shipped to the stopped capture process",
            )
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    stats = wait_for(
        lambda: (s := offload_stats(runtime))["state"] == "unavailable" and s,
        "the channel to give up",
    )
    assert stats["pid"] is None
    assert stats["spawns"] == MAX_SPAWNS_PER_MINUTE
    assert stats["inline"] >= 3  # the unacknowledged ones, replayed here
    assert runtime.health()[1]["status"] == "degraded"
    request("after")  # captured in the app process from now on
    assert offload_stats(runtime)["inline"] == stats["inline"] + 1
    assert runtime.flush(15.0) is True
    assert not any(alive(pid) for pid in killed)

    rows = ledger_rows(ledger)
    assert sorted(row["user_id"] for row in rows) == sorted(users)  # every request, once
    unacked = [row for row in rows if row["user_id"].startswith("unacked-")]
    # Replayed under the ids they were sent with (a destination that dedupes sees them once).
    assert {row["event_id"][:-8] for row in unacked} == {
        row["event_id"][:-8] for row in rows if row["user_id"].startswith("before-")
    }


def test_a_request_after_shutdown_is_accounted_as_inline_capture_would_be(ledger: Path) -> None:
    runtime = runtime_mod.configure()
    app = SessionCompletionMiddleware(build_app())
    post_chat(app, {**BODY, "user": "before"})
    runtime.shutdown(5.0)
    assert [row["user_id"] for row in ledger_rows(ledger)] == ["before"]
    post_chat(app, {**BODY, "user": "after"})  # the app still serves; its runtime is closed
    # Inline, this is counted and logged as "capture() after shutdown(): event dropped".
    stats = offload_stats(runtime)
    assert (runtime.stats.after_shutdown, stats["pending"]) == (1, 0)
