"""System checks (one test per id), run in Django processes of their own: one runs every
settings variant, one is a real ``python -m django check``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import scr_live as live

DJANGO_TESTS = Path(__file__).resolve().parent

# One Django process runs every variant under override_settings (the checks read settings
# lazily, like django-cors-headers' tests), so no variant can leak into the pytest process.
RUN_CHECKS = """
import json, os, sys
import django
django.setup()
from django.core.checks import run_checks
from django.test import override_settings
out = {}
for name, (overrides, env) in json.loads(sys.argv[1]).items():
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with override_settings(**overrides):
            out[name] = [
                {"id": m.id, "msg": m.msg}
                for m in run_checks() if (m.id or "").startswith("scr_middleware.")
            ]
    finally:
        os.environ.clear()
        os.environ.update(saved)
print(json.dumps(out))
"""

MIDDLEWARE = "scr_middleware.django.SessionCompletionMiddleware"
LONG_PATH = "scr_middleware.django.middleware.SessionCompletionMiddleware"
AUTH = "scr_django_site.auth.token_auth"
MISSING = "/nonexistent/scr.yaml"
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "default": ({}, {}),
    "valid": ({"SCR": {"middleware": {"session_type": "gateway"}}}, {}),
    "valid_file": ({"SCR_CONFIG_FILE": "{valid_file}"}, {}),
    "bad_value": ({"SCR": {"capture": {"batch_size": 0}}}, {}),
    "bad_type": ({"SCR": ["capture"]}, {}),
    "bad_destination": ({"SCR": {"destinations": [{"name": "b", "endpoint": "ftp://b"}]}}, {}),
    "bad_route": ({"SCR": {"middleware": {"include_routes": ["re:("]}}}, {}),
    "bad_file_content": ({"SCR_CONFIG_FILE": "{bad_file}"}, {}),
    "missing_file": ({"SCR_CONFIG_FILE": MISSING}, {}),
    "env_missing_file": ({}, {"SCR_CONFIG_FILE": "/nonexistent/from-env.yaml"}),
    "file_not_a_path": ({"SCR_CONFIG_FILE": 42}, {}),
    "both": ({"SCR": {}, "SCR_CONFIG_FILE": MISSING}, {}),
    "not_in_middleware": ({"MIDDLEWARE": [AUTH]}, {}),
    "duplicate": (
        {
            "MIDDLEWARE": [
                MIDDLEWARE,
                AUTH,
                LONG_PATH,
            ]
        },
        {},
    ),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    base = tmp_path_factory.mktemp("checks")
    valid, bad = base / "valid.yaml", base / "bad.yaml"
    valid.write_text("session_completion_runtime:\n  capture: {batch_size: 5}\n")
    bad.write_text("session_completion_runtime:\n  capture: {bach_size: 5}\n")
    variants = json.dumps(VARIANTS).replace("{valid_file}", str(valid))
    variants = variants.replace("{bad_file}", str(bad))
    env = live.test_env([DJANGO_TESTS], DJANGO_SETTINGS_MODULE="scr_django_site.settings")
    process = subprocess.run(
        [sys.executable, "-c", RUN_CHECKS, variants],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def ids(messages: list[dict[str, Any]]) -> list[str]:
    return [m["id"] for m in messages]


@pytest.mark.parametrize("variant", ["default", "valid", "valid_file"])
def test_good_settings_pass(results: dict[str, Any], variant: str) -> None:
    assert results[variant] == []


@pytest.mark.parametrize(
    ("variant", "fragment"),
    [
        ("bad_value", "capture.batch_size: must be between 1 and 100000, got 0"),
        ("bad_type", "SCR: must be a dict, got list"),
        ("bad_destination", "destinations[0].endpoint"),
        ("bad_route", "middleware.include_routes[0]: invalid regular expression"),
        ("bad_file_content", "capture.bach_size: unknown key"),
    ],
)
def test_e001_invalid_settings(results: dict[str, Any], variant: str, fragment: str) -> None:
    (message,) = results[variant]
    assert message["id"] == "scr_middleware.E001"
    assert fragment in message["msg"]


@pytest.mark.parametrize(
    ("variant", "fragment"),
    [
        ("missing_file", "SCR_CONFIG_FILE setting cannot read '/nonexistent/scr.yaml'"),
        ("env_missing_file", "environment variable cannot read '/nonexistent/from-env.yaml'"),
        ("file_not_a_path", "SCR_CONFIG_FILE setting must be a path, got int"),
    ],
)
def test_e002_config_file_unreadable(results: dict[str, Any], variant: str, fragment: str) -> None:
    (message,) = results[variant]
    assert message["id"] == "scr_middleware.E002"
    assert fragment in message["msg"]


def test_w001_middleware_not_listed(results: dict[str, Any]) -> None:
    assert ids(results["not_in_middleware"]) == ["scr_middleware.W001"]


def test_w002_both_settings(results: dict[str, Any]) -> None:
    assert ids(results["both"]) == ["scr_middleware.W002"]  # the file is not even read


def test_w003_listed_twice(results: dict[str, Any]) -> None:
    assert ids(results["duplicate"]) == ["scr_middleware.W003"]


def test_manage_check_fails_on_errors() -> None:
    """``manage.py check`` exits non-zero on E001, as a deploy pipeline would see it."""
    env = live.test_env(
        [DJANGO_TESTS],
        DJANGO_SETTINGS_MODULE="scr_django_site.settings",
        SCR_TEST_SETTINGS=json.dumps({"SCR": {"capture": {"batch_size": 0}}}),
    )
    process = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 1
    assert "scr_middleware.E001" in process.stderr
