"""Settings for the example Django gateway: the middleware line and the SCR block."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "example_apps.django_gateway.gateway.urls"
INSTALLED_APPS = ["scr_middleware.django"]  # adds the scr_middleware.* system checks
MIDDLEWARE = [
    "scr_middleware.django.SessionCompletionMiddleware",  # <- the one line
    "example_apps.django_gateway.gateway.auth.ApiKeyMiddleware",
]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
UPSTREAM_URL = os.environ.get("SCR_UPSTREAM_URL", "http://127.0.0.1:9000")

# Same structure as the YAML file's session_completion_runtime block. Empty: the embedded
# ledger. Environment variables (SCR_*) still win over it.
SCR: dict[str, object] = {}
