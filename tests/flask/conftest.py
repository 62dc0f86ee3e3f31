"""Flask adapter tests. The shared fixtures and the fake LLM payloads live in tests/wsgi."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "wsgi"))

from wsgi_kit import captured, internal_errors_raise

__all__ = ["captured", "internal_errors_raise"]
