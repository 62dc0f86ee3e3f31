"""Flask: ``SessionCompletion(app)``, or ``ext = SessionCompletion()`` then ``ext.init_app(app)``.

The extension wraps ``app.wsgi_app`` in the WSGI middleware, so streamed responses pass
through chunk by chunk exactly as they do without it. What only Flask knows (the view that
handled the request, ``g.user``, the exception behind a 500 page) exists only while the
request context is pushed, so two hooks copy it onto the WSGI environ, where the middleware
reads it when the response finishes: ``after_request`` (it runs before the response is
started, also for error pages) and ``teardown_request`` (it runs even when ``after_request``
was skipped, and is the one that receives the unhandled exception).

Settings come from ``app.config["SCR"]`` (a dict with the YAML block's structure), else
``app.config["SCR_CONFIG_FILE"]``, else the ``SCR_CONFIG_FILE`` environment variable; they are
validated in ``init_app`` (``ConfigError``). State lives in ``app.extensions["scr_middleware"]``,
never on the extension object, so one extension can serve several apps.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from flask import current_app, g, request

from .errors import ConfigError
from .extract import failsafe
from .extract.binding import ConfigSource
from .wsgi import (
    ENVIRON_ENDPOINT,
    ENVIRON_EXCEPTION,
    ENVIRON_OBSERVED,
    ENVIRON_ROUTE,
    ENVIRON_USER_ID,
    SessionCompletionMiddleware,
)

if TYPE_CHECKING:
    from flask import Flask, Response

    from .runtime import SessionCompletionRuntime

__all__ = ["EXTENSION_KEY", "SessionCompletion"]

EXTENSION_KEY: Final = "scr_middleware"


class SessionCompletion:
    """``SessionCompletion(app=None, *, runtime=None)``: ``runtime`` sends this extension's
    events to that runtime instead of the shared one (tests, several runtimes)."""

    def __init__(
        self, app: Flask | None = None, *, runtime: SessionCompletionRuntime | None = None
    ) -> None:
        self._runtime = runtime
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            # A second wrap would observe every request twice and emit two events.
            raise RuntimeError("scr_middleware.flask.SessionCompletion is already set up here")
        middleware = SessionCompletionMiddleware(
            app.wsgi_app, config=_config_source(app.config), runtime=self._runtime
        )
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions[EXTENSION_KEY] = middleware
        app.after_request(_after_request)
        app.teardown_request(_teardown_request)


def _config_source(config: Mapping[str, Any]) -> ConfigSource:
    """``SCR`` (a dict), else ``SCR_CONFIG_FILE`` (a path), else None: the env variable."""
    source = config.get("SCR")
    if source is not None:
        if not isinstance(source, MutableMapping):
            raise ConfigError("SCR", f"must be a dict, got {type(source).__name__}")
        return source
    path = config.get("SCR_CONFIG_FILE")
    if not path:
        return None
    if not isinstance(path, str | os.PathLike):
        raise ConfigError("SCR_CONFIG_FILE", f"must be a path, got {type(path).__name__}")
    return path


def _after_request(response: Response) -> Response:
    environ = request.environ
    if environ.get(ENVIRON_OBSERVED):
        _record(environ)
    return response


def _teardown_request(exc: BaseException | None) -> None:
    environ = request.environ
    if not environ.get(ENVIRON_OBSERVED):
        return
    if ENVIRON_ENDPOINT not in environ:
        _record(environ)
    if exc is not None:
        environ[ENVIRON_EXCEPTION] = exc


def _record(environ: dict[str, Any]) -> None:
    try:
        endpoint = request.endpoint
        environ[ENVIRON_ENDPOINT] = current_app.view_functions.get(endpoint) if endpoint else None
        rule = request.url_rule
        if rule is not None:
            environ[ENVIRON_ROUTE] = rule.rule
        user = user_id()
        if user is not None:
            environ[ENVIRON_USER_ID] = user
    except Exception as exc:
        middleware = current_app.extensions.get(EXTENSION_KEY)
        stats = middleware.binding.stats if middleware is not None else None
        failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, stats)


def user_id() -> str | None:
    """The authenticated user: ``g.user`` (its ``.id``, or the value itself when it is a string
    or an int), else Flask-Login's user (``get_id()``); None for anonymous users."""
    user = g.get("user")
    if user is None:
        user = g.get("_login_user")  # Flask-Login's current_user, once it was loaded
    if user is None or getattr(user, "is_authenticated", True) is False:
        return None
    if isinstance(user, str | int) and not isinstance(user, bool):
        return str(user) or None
    for name in ("id", "pk"):
        value = getattr(user, name, None)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value) or None
    get_id = getattr(user, "get_id", None)
    if callable(get_id):
        value = get_id()
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value) or None
    return None
