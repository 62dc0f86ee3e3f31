"""The public API is explicit and pinned (httpx ``tests/test_exported_members.py`` style)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import scr_middleware
import scr_sdk

PUBLIC_API = [
    "ConfigError",
    "InvalidEventError",
    "Receipt",
    "SessionCompletionRuntime",
    "__version__",
    "capture",
    "capture_realtime_session_completion",
    "configure",
    "get_runtime",
    "scr_exempt",
    "scr_route",
]
ROOT = Path(__file__).resolve().parent.parent


def test_all_is_sorted_and_pinned() -> None:
    assert scr_middleware.__all__ == sorted(scr_middleware.__all__)
    assert scr_middleware.__all__ == PUBLIC_API


def test_every_public_name_is_importable() -> None:
    for name in PUBLIC_API:
        assert getattr(scr_middleware, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from scr_middleware import *", namespace)  # the star import itself
    assert set(PUBLIC_API) <= set(namespace)
    assert isinstance(scr_middleware.__version__, str)


def test_public_names_are_the_documented_objects() -> None:
    from scr_middleware import runtime

    assert scr_middleware.SessionCompletionRuntime is runtime.SessionCompletionRuntime
    assert scr_middleware.get_runtime is runtime.get_runtime
    assert issubclass(scr_middleware.ConfigError, ValueError)
    assert issubclass(scr_middleware.InvalidEventError, ValueError)
    assert callable(scr_middleware.capture_realtime_session_completion)


def test_scr_sdk_reexports_the_same_objects() -> None:
    """The seed's samples import from ``scr_sdk``; it must be the very same API."""
    assert scr_sdk.__all__ == PUBLIC_API
    for name in PUBLIC_API:
        assert getattr(scr_sdk, name) is getattr(scr_middleware, name), name


def test_seed_import_line_works_in_a_fresh_interpreter() -> None:
    code = "from scr_sdk import SessionCompletionRuntime; print(SessionCompletionRuntime.__name__)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "SessionCompletionRuntime"


def test_py_typed_is_shipped_in_both_packages(tmp_path: Path) -> None:
    """Run setuptools' build_py (what a wheel contains) and look for the markers."""
    build = tmp_path / "lib"
    script = (
        "import sys, setuptools;"
        f"sys.argv = ['setup.py', '-q', 'egg_info', '--egg-base', {str(tmp_path)!r},"
        f" 'build_py', '--build-lib', {str(build)!r}];"
        "setuptools.setup()"
    )
    subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert (build / "scr_middleware" / "py.typed").is_file()
    assert (build / "scr_sdk" / "py.typed").is_file()
    assert (build / "scr_middleware" / "schemas" / "billing_v1.json").is_file()
