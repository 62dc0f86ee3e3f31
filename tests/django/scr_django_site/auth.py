"""A token authentication middleware without database tables: ``Bearer user-<pk>``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.utils.decorators import sync_and_async_middleware


@dataclass(frozen=True)
class TokenUser:
    pk: int
    is_authenticated: bool = True


@dataclass(frozen=True)
class Anonymous:
    pk: None = None
    is_authenticated: bool = False


def authenticate(request: Any) -> None:
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    request.user = TokenUser(int(token[5:])) if token.startswith("user-") else Anonymous()


@sync_and_async_middleware
def token_auth(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: Any) -> Any:
            authenticate(request)
            return await get_response(request)

        return async_middleware

    def middleware(request: Any) -> Any:
        authenticate(request)
        return get_response(request)

    return middleware
