"""load_transform: named transforms, dotted paths, and errors that name the key path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scr_middleware.errors import ConfigError
from scr_middleware.transforms import NAMED_TRANSFORMS, load_transform

MODULE = """
def add_flag(event):
    return {**event, "flag": True}

class Holder:
    @staticmethod
    def strip(event):
        return {"event_id": event["event_id"]}

NOT_CALLABLE = 42
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    package = tmp_path / "scr_user_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "hooks.py").write_text(MODULE)
    (package / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "scr_user_pkg"
    for name in [n for n in sys.modules if n.startswith("scr_user_pkg")]:
        del sys.modules[name]


@pytest.mark.parametrize("name", sorted(NAMED_TRANSFORMS))
def test_named(name: str) -> None:
    assert load_transform(name, "destinations[0].transform") is NAMED_TRANSFORMS[name]


def test_custom_function_and_nested_attribute(user_module: str) -> None:
    add_flag = load_transform(f"{user_module}.hooks:add_flag", "destinations[0].transform")
    assert add_flag({"event_id": "e"}) == {"event_id": "e", "flag": True}
    strip = load_transform(f"{user_module}.hooks:Holder.strip", "destinations[1].transform")
    assert strip({"event_id": "e", "x": 1}) == {"event_id": "e"}


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("billing_v9", "unknown transform 'billing_v9'"),
        ("", "must be a transform name"),
        (":func", "package.module:function"),
        ("scr_user_pkg.hooks:", "package.module:function"),
        ("scr_no_such_module_xyz:f", "cannot import module 'scr_no_such_module_xyz'"),
        ("scr_user_pkg.hooks:missing", "has no attribute 'missing'"),
        ("scr_user_pkg.hooks:Holder.missing", "has no attribute 'Holder.missing'"),
        ("scr_user_pkg.hooks:NOT_CALLABLE", "is not callable"),
        ("scr_user_pkg.broken:f", "RuntimeError: boom at import"),
    ],
)
def test_errors_name_the_key_path(user_module: str, spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_transform(spec, "destinations[3].transform")
    assert caught.value.path == "destinations[3].transform"
    assert fragment in caught.value.problem
    assert str(caught.value).startswith("destinations[3].transform: ")
