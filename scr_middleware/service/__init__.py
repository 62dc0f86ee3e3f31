"""The standalone SCR service (``scr serve``): ``POST /v1/events`` with API-key auth,
``GET /events/recent``, ``/health`` and ``/metrics``. Needs ``scr-middleware[service]``."""

from .app import ServiceSettings, create_app
from .auth import ApiKeys, parse_api_keys

__all__ = ["ApiKeys", "ServiceSettings", "create_app", "parse_api_keys"]
