"""Any WSGI app: ``app = SessionCompletionMiddleware(app)``.

The response iterable is wrapped, never buffered: each chunk goes to the server the moment the
app yields it, and the event is finished when the iterable is exhausted, fails or is closed.
Frameworks that resolve their view inside the app (Flask, Bottle, Pyramid, ...) can tell the
middleware about it through the ``ENVIRON_*`` keys; ``scr_middleware.flask`` does.
"""

from __future__ import annotations

from .keys import (
    ENVIRON_ENDPOINT,
    ENVIRON_EXCEPTION,
    ENVIRON_OBSERVED,
    ENVIRON_ROUTE,
    ENVIRON_USER_ID,
)
from .middleware import SessionCompletionMiddleware

__all__ = [
    "ENVIRON_ENDPOINT",
    "ENVIRON_EXCEPTION",
    "ENVIRON_OBSERVED",
    "ENVIRON_ROUTE",
    "ENVIRON_USER_ID",
    "SessionCompletionMiddleware",
]
