"""The HTTP sink for these tests. The implementation lives in tests/support/sink.py so other
test folders share it; it is loaded by file path so no ``sys.path`` entry is needed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "scr_tests_support_sink"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        _NAME, Path(__file__).resolve().parents[1] / "support" / "sink.py"
    )
    assert _spec is not None
    assert _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module  # dataclasses look their module up while it executes
    _spec.loader.exec_module(_module)

_sink = sys.modules[_NAME]
HttpSink = _sink.HttpSink
Pki = _sink.Pki
SinkRequest = _sink.SinkRequest
closed_port = _sink.closed_port
generate_pki = _sink.generate_pki

__all__ = ["HttpSink", "Pki", "SinkRequest", "closed_port", "generate_pki"]
