"""Flask: ``SessionCompletion(app)``, or ``ext = SessionCompletion()`` then ``ext.init_app(app)``.

The extension wraps ``app.wsgi_app`` in the WSGI middleware, so streamed responses pass
through chunk by chunk exactly as they do without it. What only Flask knows (the view that
handled the request, ``g.user``, the exception behind a 500 page) exists only while the
request context is pushed. No request hook is registered (Flask would run it on every
request, observed or not): the middleware's ``start_response``, which Flask calls inside the
request context (also for error pages), copies the view, route and user onto the WSGI environ,
where the middleware reads them when the response finishes; the ``got_request_exception``
signal, sent only when a view fails, records the exception (and the rest, for an exception
that propagates without a response).

Settings come from ``app.config["SCR"]`` (a dict with the YAML block's structure), else
``app.config["SCR_CONFIG_FILE"]``, else the ``SCR_CONFIG_FILE`` environment variable; they are
validated in ``init_app`` (``ConfigError``). State lives in ``app.extensions["scr_middleware"]``,
never on the extension object, so one extension can serve several apps.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from flask import g, got_request_exception, request

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
    from _typeshed.wsgi import WSGIEnvironment
    from flask import Flask

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
        middleware = _FlaskMiddleware(app, config=_config_source(app.config), runtime=self._runtime)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions[EXTENSION_KEY] = middleware
        got_request_exception.connect(_got_request_exception, app, weak=False)


class _FlaskMiddleware(SessionCompletionMiddleware):
    """The WSGI middleware around ``app.wsgi_app``, with Flask's view, route and user."""

    def __init__(
        self,
        app: Flask,
        *,
        config: ConfigSource,
        runtime: SessionCompletionRuntime | None,
    ) -> None:
        super().__init__(app.wsgi_app, config=config, runtime=runtime)
        self.flask_app = app
        self.in_context = self.record

    def record(self, environ: WSGIEnvironment) -> None:
        """Called from ``start_response`` (inside the app): the view, route and user."""
        try:
            rule = request._get_current_object().url_rule  # type: ignore[attr-defined]
        except RuntimeError:
            # Started outside the request context (a wrapper inside this one that starts the
            # response late): the view and route, matched again; the user is gone with ``g``.
            rule = self._match(environ)
            in_context = False
        else:
            in_context = True
        if rule is not None:
            environ[ENVIRON_ENDPOINT] = self.flask_app.view_functions.get(rule.endpoint)
            environ[ENVIRON_ROUTE] = rule.rule
        if in_context:
            # g.user, else Flask-Login's current_user once it was loaded (g's own dict, which
            # g.get() reads: no call per name).
            values = g._get_current_object().__dict__
            user = values.get("user")
            if user is None:
                user = values.get("_login_user")
            if user is not None:
                found = _user_id(user)
                if found is not None:
                    environ[ENVIRON_USER_ID] = found

    def _match(self, environ: WSGIEnvironment) -> Any:
        """The URL rule Flask matched for ``environ`` (None for a 404/405 or a redirect)."""
        app = self.flask_app
        try:
            # shallow: this request object must not read the body nor claim the environ
            adapter = app.create_url_adapter(app.request_class(environ, shallow=True))
            return adapter.match(return_rule=True)[0] if adapter is not None else None
        except Exception:  # NotFound, MethodNotAllowed, RequestRedirect, a bad Host...
            return None


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


def _got_request_exception(sender: Flask, exception: BaseException, **_: Any) -> None:
    """Flask is about to turn ``exception`` into its 500 page (or to let it propagate)."""
    try:
        environ = request.environ
        if not environ.get(ENVIRON_OBSERVED):
            return
        environ[ENVIRON_EXCEPTION] = exception
        middleware = sender.extensions.get(EXTENSION_KEY)
        if isinstance(middleware, _FlaskMiddleware):
            middleware.record(environ)  # with PROPAGATE_EXCEPTIONS no response is started
    except Exception as exc:
        middleware = sender.extensions.get(EXTENSION_KEY)
        stats = middleware.binding.stats if middleware is not None else None
        failsafe.internal_error(failsafe.INTERNAL_ERROR, exc, stats)


def _user_id(user: Any) -> str | None:
    """The id of ``g.user`` (its ``.id``, or the value itself when it is a string or an int)
    or of Flask-Login's user (``get_id()``); None for anonymous users."""
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
