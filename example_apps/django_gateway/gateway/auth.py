"""API-key authentication that sets ``request.user``, where the middleware finds the user."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse, JsonResponse

API_KEYS = {"sk-alice": "user_alice", "sk-bob": "user_bob", "sk-carol": "user_carol"}


@dataclass(frozen=True)
class ApiKeyUser:
    pk: str
    is_authenticated: bool = True


class ApiKeyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        header = request.headers.get("Authorization", "")
        user_id = API_KEYS.get(header.removeprefix("Bearer ").strip())
        if user_id is None:
            error = {"message": "invalid API key", "type": "invalid_api_key"}
            return JsonResponse({"error": error}, status=401)
        request.user = ApiKeyUser(user_id)  # type: ignore[assignment]
        return self.get_response(request)
