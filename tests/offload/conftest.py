"""Out-of-process capture tests. The server helpers (scr_live) and the Flask gateway live in
tests/wsgi and tests/flask; the fake OpenAI upstream in tests/asgi."""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for folder in ("wsgi", "flask"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))
