"""The integration guide's own LangChain handler, and the optional-dependency message."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from lc_fakes import ScriptedChatModel, lookup, run_mini_agent

from scr_middleware.destinations.sqlite import read_ledger

# The guide's snippet verbatim, except its first import: the guide imports BaseCallbackHandler
# from the old `langchain` package; langchain-core is where it lives now (`scr_sdk` is ours).
SEED_SNIPPET = """
# agent_framework/langchain_integration.py
from langchain_core.callbacks.base import BaseCallbackHandler
from scr_sdk import SessionCompletionRuntime

scr = SessionCompletionRuntime(api_key=os.getenv("SCR_API_KEY"))

class SessionCompletionCallback(BaseCallbackHandler):
    def __init__(self, session_id: str):
        self.session_id = session_id
        self.start_time = time.time()
        self.token_count = 0

    def on_llm_end(self, response, **kwargs):
        self.token_count += response.llm_output.get("token_usage", {}).get("total_tokens", 0)

    def on_agent_finish(self, finish, **kwargs):
        # Capture session completion
        scr.capture({
            "event_type": "session.completed",
            "session_id": self.session_id,
            "session_type": "autonomous",
            "duration_ms": int((time.time() - self.start_time) * 1000),
            "usage": {
                "total_tokens": self.token_count
            },
            "outcome": {
                "status": "success",
                "final_output": finish.return_values
            }
        })
"""


def test_the_guides_handler_works_with_a_fake_llm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCR_DATA_DIR", str(tmp_path))
    module: dict[str, object] = {"os": os, "time": time, "uuid": uuid}
    exec(compile(SEED_SNIPPET, "langchain_integration.py", "exec"), module)
    scr = module["scr"]
    handler_class = module["SessionCompletionCallback"]
    try:
        session_id = f"agent_{uuid.uuid4()}"
        llm = ScriptedChatModel(table={"q1": (40, 2), "q2": (60, 8)}, report="llm_output")
        result = run_mini_agent(llm, lookup, ["q1", "q2"], [handler_class(session_id)])
        assert scr.flush(10.0)  # type: ignore[attr-defined]
    finally:
        scr.shutdown()  # type: ignore[attr-defined]

    rows = read_ledger(tmp_path / "ledger.sqlite3")
    assert len(rows) == 1
    payload = rows[0]["payload"]
    assert payload["session_id"] == session_id
    assert payload["session_type"] == "autonomous"
    assert payload["usage"]["total_tokens"] == 110
    assert payload["outcome"] == {"status": "success", "final_output": result}


def test_clear_import_error_without_langchain_core() -> None:
    code = (
        "import sys\n"
        "sys.modules['langchain_core'] = None\n"
        "import scr_middleware\n"  # the package itself does not need it
        "try:\n"
        "    import scr_middleware.langchain\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'scr-middleware[langchain]'" in result.stdout
