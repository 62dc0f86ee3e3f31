"""Helpers: a uvicorn server in a thread and a service wired to a memory:// destination."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scr_middleware.destinations.memory import memory_destination
from scr_middleware.examples.serving import ServerThread as UvicornThread
from scr_middleware.runtime import SessionCompletionRuntime
from scr_middleware.service import ServiceSettings, create_app

KEY = "scr_test_key_1"
OTHER_KEY = "scr_test_key_2"


@dataclass
class Service:
    runtime: SessionCompletionRuntime
    memory: str
    server: UvicornThread
    client: httpx.Client

    def delivered(self) -> list[dict[str, Any]]:
        assert self.runtime.flush(10.0)
        destination = memory_destination(self.memory)
        return [] if destination is None else destination.payloads

    def post(self, body: Any = None, key: str | None = KEY, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")
        if body is not None:
            kwargs["json"] = body
        return self.client.post("/v1/events", headers=headers, **kwargs)


def memory_runtime(tmp_path: Path, **capture: Any) -> tuple[SessionCompletionRuntime, str]:
    name = f"svc-{uuid.uuid4().hex}"
    runtime = SessionCompletionRuntime(
        config={
            "destinations": [{"name": "mem", "endpoint": f"memory://{name}"}],
            "capture": capture,
            "storage": {"data_dir": str(tmp_path / "data")},
        }
    )
    return runtime, name


def start_service(
    tmp_path: Path, settings: ServiceSettings | None = None, **capture: Any
) -> tuple[SessionCompletionRuntime, str, Any]:
    runtime, name = memory_runtime(tmp_path, **capture)
    app = create_app(runtime, settings=settings or ServiceSettings(api_keys=(KEY, OTHER_KEY)))
    return runtime, name, app
