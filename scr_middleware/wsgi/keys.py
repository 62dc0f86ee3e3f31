"""The ``environ`` keys through which the app tells the middleware what only it knows."""

from __future__ import annotations

from typing import Final

__all__ = [
    "ENVIRON_ENDPOINT",
    "ENVIRON_EXCEPTION",
    "ENVIRON_OBSERVED",
    "ENVIRON_ROUTE",
    "ENVIRON_USER_ID",
]

# Set by the middleware on observed requests only, so inner hooks can return at once otherwise.
ENVIRON_OBSERVED: Final = "scr_middleware.observed"
# Set by inner frameworks, read when the response finishes.
ENVIRON_USER_ID: Final = "scr_middleware.user_id"  # str: the authenticated user
ENVIRON_ENDPOINT: Final = "scr_middleware.endpoint"  # the view (for @scr_exempt / @scr_route)
ENVIRON_ROUTE: Final = "scr_middleware.route"  # str: the route template
ENVIRON_EXCEPTION: Final = "scr_middleware.exception"  # the exception behind a 5xx response
