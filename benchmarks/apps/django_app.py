"""Django project in one module for the server benchmarks:
``BENCH_VARIANT=scr gunicorn benchmarks.apps.django_app:application``. With the middleware it
also answers ``GET /_bench/offload`` with the worker's ``runtime.health()[1]["offload"]``."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from ..workload import chat_completion_body

CHAT_BODY = chat_completion_body()
VARIANT = os.environ.get("BENCH_VARIANT", "bare")
if VARIANT not in ("bare", "scr"):
    raise ValueError(f"unknown BENCH_VARIANT {VARIANT!r}")

# The stock middleware a new project starts with, minus sessions/auth/messages (no database).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
if VARIANT == "scr":
    MIDDLEWARE.insert(0, "scr_middleware.django.SessionCompletionMiddleware")

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=MIDDLEWARE,
        INSTALLED_APPS=["scr_middleware.django"] if VARIANT == "scr" else [],
        DATABASES={},
        USE_TZ=True,
    )


def chat(request: HttpRequest) -> HttpResponse:
    request.body  # noqa: B018  (read it, as a real view would)
    return HttpResponse(CHAT_BODY, content_type="application/json")


def offload_stats(request: HttpRequest) -> JsonResponse:
    from scr_middleware import runtime as runtime_mod

    health = runtime_mod.get_runtime().health()[1]
    return JsonResponse({"pid": health["pid"], "offload": health.get("offload")})


urlpatterns = [path("v1/chat/completions", csrf_exempt(chat))]
if VARIANT == "scr":
    urlpatterns.append(path("_bench/offload", offload_stats))
application = get_wsgi_application()
