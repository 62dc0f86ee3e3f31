"""scr-middleware: exact, reliable LLM usage capture.

One ``session.completed`` event per LLM session, captured by one-line middleware (FastAPI /
Starlette, Django, Flask, any WSGI app), the LangChain callback, the Realtime call or
``capture()`` directly, and delivered by a background router to billing, analytics and audit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ConfigError, InvalidEventError
from .router.receipt import Receipt
from .routes_options import scr_exempt, scr_route
from .runtime import SessionCompletionRuntime, capture, configure, get_runtime

if TYPE_CHECKING:
    from .realtime import capture_realtime_session_completion

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "InvalidEventError",
    "Receipt",
    "SessionCompletionRuntime",
    "__version__",
    "capture",
    "capture_realtime_session_completion",
    "configure",
    "get_runtime",
    "scr_exempt",
    "scr_route",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: keeps `import scr_middleware` cheap for WSGI/ASGI-only services.
    if name == "capture_realtime_session_completion":
        from .realtime import capture_realtime_session_completion

        return capture_realtime_session_completion
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
