"""The gateway half of ``scr demo``: real traffic through the one-line middleware.

Serves the fake upstream and the FastAPI gateway (``scr_middleware.examples``) with uvicorn
on loopback ports, and drives the gateway with the official ``openai`` client: several users
and organizations, several models, chat completions streamed and not, embeddings and the
Responses API, and one request for a model that does not exist. The middleware feeds the
shared runtime, so the events land wherever the demo's runtime routes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (API key, organization): the gateway maps each key to a user id.
CALLERS = (("sk-alice", "org_acme"), ("sk-bob", "org_acme"), ("sk-carol", "org_globex"))
PROMPTS = (
    "Summarise the quarterly revenue report in three bullet points",
    "Write a haiku about distributed tracing",
    "Explain idempotency keys to a new engineer",
)


def gateway_available() -> str | None:
    """None if the demo can serve the gateway, else what is missing."""
    for module in ("openai", "fastapi", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install 'scr-middleware[dev]')"
    return None


def _calls(client: Any, prompt: str) -> list[tuple[str, Callable[[], object]]]:
    messages = [{"role": "user", "content": prompt}]

    def chat() -> object:
        return client.chat.completions.create(model="gpt-4o", messages=messages)

    def chat_stream_with_usage() -> object:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        return list(stream)

    def chat_stream_plain() -> object:
        # The client did not ask for usage: ensure_stream_usage asks the upstream for it and
        # strips it again, so this client still sees exactly what it asked for.
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
        return list(stream)

    def embeddings() -> object:
        return client.embeddings.create(model="text-embedding-3-small", input=[prompt, "and more"])

    def responses_stream() -> object:
        return list(client.responses.create(model="gpt-4.1", input=prompt, stream=True))

    return [
        ("chat", chat),
        ("chat, streamed with include_usage", chat_stream_with_usage),
        ("chat, streamed without include_usage", chat_stream_plain),
        ("embeddings", embeddings),
        ("responses, streamed", responses_stream),
    ]


def drive_gateway(say: Callable[[str], None]) -> int:
    """Serve upstream + gateway, send the requests; returns how many requests were made."""
    import openai

    from .examples.gateway_fastapi import create_app
    from .examples.serving import serve
    from .examples.upstream import create_upstream

    sent = 0
    with serve(create_upstream()) as upstream, serve(create_app(upstream)) as gateway:
        say(f"gateway (FastAPI + SessionCompletionMiddleware) on {gateway}, upstream on {upstream}")
        for (key, organization), prompt in zip(CALLERS, PROMPTS, strict=True):
            client = openai.OpenAI(
                base_url=f"{gateway}/v1", api_key=key, organization=organization, max_retries=0
            )
            for _, call in _calls(client, prompt):
                call()
                sent += 1
        client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="sk-bob", max_retries=0)
        try:
            client.chat.completions.create(
                model="missing-model", messages=[{"role": "user", "content": "hi"}]
            )
        except openai.NotFoundError:
            pass
        sent += 1
    return sent
