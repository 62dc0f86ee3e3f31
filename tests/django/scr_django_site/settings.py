"""Settings of the test site. ``SCR_TEST_MIDDLEWARE=0`` serves it without the middleware at all
(byte-for-byte comparisons); ``SCR_TEST_SETTINGS`` (JSON) overrides settings."""

from __future__ import annotations

import json
import os

SECRET_KEY = "scr-middleware-tests"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "scr_django_site.urls"
INSTALLED_APPS = ["scr_middleware.django"]
DATABASES: dict[str, object] = {}
USE_TZ = True
DATA_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024  # LLM prompts can be larger than Django's 2.5 MB
SCR_MIDDLEWARE = "scr_middleware.django.SessionCompletionMiddleware"
MIDDLEWARE = [SCR_MIDDLEWARE, "scr_django_site.auth.token_auth"]
if os.environ.get("SCR_TEST_MIDDLEWARE") == "0":
    MIDDLEWARE.remove(SCR_MIDDLEWARE)

if "SCR_TEST_SETTINGS" in os.environ:  # e.g. '{"SCR": {...}}' for ``manage.py check`` tests
    globals().update(json.loads(os.environ["SCR_TEST_SETTINGS"]))
