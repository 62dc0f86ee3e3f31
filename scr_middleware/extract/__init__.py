"""Framework-free response observation: routes, SSE, decoding, extractors, identity.

Adapters (``scr_middleware.asgi``, ``wsgi``, ``flask``, ``django``) build one ``Observer`` per
observed request and feed it the request body, the response start and each body chunk.
"""

from __future__ import annotations

from .extractors import SKIP, Extraction, Extractor, ResponseData, SkipType
from .observer import Observer
from .request import RequestInfo, headers_from_asgi
from .routes import RouteMatch, RouteMatcher
from .settings import ObserverSettings
from .sse import SSEEvent, SSEParser
from .stream import StreamSummary

__all__ = [
    "SKIP",
    "Extraction",
    "Extractor",
    "Observer",
    "ObserverSettings",
    "RequestInfo",
    "ResponseData",
    "RouteMatch",
    "RouteMatcher",
    "SSEEvent",
    "SSEParser",
    "SkipType",
    "StreamSummary",
    "headers_from_asgi",
]
