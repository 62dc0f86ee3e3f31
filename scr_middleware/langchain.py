"""LangChain: one ``session.completed`` event per agent or chain run, with exact usage.

``callbacks=[SessionCompletionCallback(session_id)]`` in the run's config. The handler sums the
usage of every LLM call of the run and captures once: when the agent finishes, or (no agent)
when the outermost run ends or fails. LangChain may call handlers from executor threads
(``batch``, ``RunnableParallel``, sync handlers under ``ainvoke``), so all state sits behind a
lock. Nothing raises into the host's chain: a failure is logged once, the chain goes on.

Usage per LLM call comes from exactly one source, never both: ``llm_output["token_usage"]``
(OpenAI-style, non-streaming) when it has counts, otherwise each prompt's
``message.usage_metadata`` (streaming and newer chat models). ``usage.source`` is
``reported`` when every call reported usage, ``estimated`` when some did not (the counts are a
lower bound) and ``missing`` when none did.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

try:
    from langchain_core.agents import AgentAction, AgentFinish
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.outputs import LLMResult
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError(
        "scr_middleware.langchain needs langchain-core: pip install 'scr-middleware[langchain]'"
    ) from exc

from ._langchain_usage import call_usage, jsonable
from .extract import failsafe
from .observability.logs import get_logger, log_once
from .router.receipt import Receipt
from .runtime import SessionCompletionRuntime, get_runtime

__all__ = ["SessionCompletionCallback"]

logger = get_logger("langchain")

_CANCELLED = (asyncio.CancelledError, KeyboardInterrupt)


def _outcome_for(error: BaseException) -> dict[str, Any]:
    if isinstance(error, _CANCELLED):
        status = "cancelled"
    elif isinstance(error, TimeoutError):
        status = "timeout"
    else:
        status = "error"
    return {"status": status, "error_type": type(error).__name__}


class SessionCompletionCallback(BaseCallbackHandler):
    """Capture one ``session.completed`` event for the LangChain run it is attached to.

    Use one handler per session. ``auto_capture=False`` defers the capture to ``complete()``
    (a session spanning several top-level invocations).
    """

    raise_error = False  # LangChain must never fail a chain because of usage capture

    def __init__(
        self,
        session_id: str,
        *,
        runtime: SessionCompletionRuntime | None = None,
        user_id: str | None = None,
        organization_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        session_type: str | None = None,
        auto_capture: bool = True,
    ) -> None:
        super().__init__()
        self.session_id = session_id
        self.user_id = user_id
        self.organization_id = organization_id
        self.metadata = dict(metadata or {})
        self.session_type = session_type
        self.auto_capture = auto_capture
        self.receipt: Receipt | None = None
        self._runtime = runtime
        self._lock = threading.Lock()
        self._created = time.time()
        self._started: float | None = None
        self._open_roots: set[UUID] = set()
        self._seen: set[UUID] = set()
        self._root_kind: str | None = None
        self._start_models: dict[UUID, str] = {}
        self._usage: dict[str, int] = {}
        self._by_model: dict[str, dict[str, int]] = {}
        self._calls = 0
        self._calls_reporting = 0
        self._failed_calls = 0
        self._agent_steps = 0
        self._agent = False
        self._final_output: Any = None
        self._captured = False

    @property
    def captured(self) -> bool:
        return self._captured

    # --- run tracking ------------------------------------------------------------------------
    def _run_started(self, kind: str, run_id: UUID, parent_run_id: UUID | None) -> None:
        """Track the outermost runs: no parent, or a parent this handler never saw (it was
        put in the config of a run nested in another)."""
        warn = False
        with self._lock:
            if self._started is None:
                self._started = time.time()
            self._seen.add(run_id)
            if parent_run_id is None or parent_run_id not in self._seen:
                if kind in ("chat", "completion") and parent_run_id is not None:
                    # A model's own (constructor) callbacks: the handler sees its calls but
                    # not the run they belong to, so no end of session will come.
                    warn = self.auto_capture
                else:
                    self._open_roots.add(run_id)
                    self._root_kind = self._root_kind or kind
        if warn:
            log_once(
                logger,
                "langchain:local-llm-callback",
                logging.WARNING,
                "SessionCompletionCallback sees LLM calls but not their run: pass it in the"
                " run's config (callbacks=[...] at invoke) or call complete() at the end",
                session_id=self.session_id,
            )

    def _run_ended(self, run_id: UUID, outcome: dict[str, Any] | None = None) -> None:
        """A run ended; capture when it was the last open top-level run."""
        with self._lock:
            if run_id not in self._open_roots:
                return
            self._open_roots.discard(run_id)
            if self._open_roots or not self.auto_capture:
                return
        self._capture(outcome or {"status": "success"})

    def _guarded(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            if failsafe.RAISE_INTERNAL_ERRORS:  # the test suite: bugs must fail tests
                raise
            log_once(
                logger,
                f"langchain:{what}",
                logging.WARNING,
                "SessionCompletionCallback failed; the chain is unaffected",
                callback=what,
                error=repr(exc),
                session_id=self.session_id,
            )

    # --- LLM calls -------------------------------------------------------------------------
    def _note_model(self, run_id: UUID, kwargs: Mapping[str, Any]) -> None:
        params = kwargs.get("invocation_params") or {}
        meta = kwargs.get("metadata") or {}
        model = params.get("model_name") or params.get("model") or meta.get("ls_model_name")
        if isinstance(model, str) and model:
            with self._lock:
                self._start_models[run_id] = model

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._guarded("llm_start", self._run_started, "completion", run_id, parent_run_id)
        self._guarded("llm_start", self._note_model, run_id, kwargs)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._guarded("chat_model_start", self._run_started, "chat", run_id, parent_run_id)
        self._guarded("chat_model_start", self._note_model, run_id, kwargs)

    def _account(self, response: LLMResult | None, run_id: UUID, failed: bool = False) -> None:
        counts, model = call_usage(response) if response is not None else (None, None)
        with self._lock:
            start_model = self._start_models.pop(run_id, None)
            model = model or start_model
            if failed and counts is None:
                # A call that failed before reporting usage (connection error, 5xx, a retry's
                # first attempt) is not billed by providers: noted, not a gap in the usage.
                self._failed_calls += 1
                return
            self._calls += 1
            if counts is None:
                return
            self._calls_reporting += 1
            if "total_tokens" not in counts:
                counts["total_tokens"] = counts.get("input_tokens", 0) + counts.get(
                    "output_tokens", 0
                )
            for key, value in counts.items():
                self._usage[key] = self._usage.get(key, 0) + value
            per_model = self._by_model.setdefault(model or "unknown", {})
            for key in ("input_tokens", "output_tokens", "total_tokens"):
                per_model[key] = per_model.get(key, 0) + counts.get(key, 0)

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._guarded("llm_end", self._account, response, run_id)
        self._guarded("llm_end", self._run_ended, run_id)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        partial = kwargs.get("response")
        partial = partial if isinstance(partial, LLMResult) else None
        self._guarded("llm_error", self._account, partial, run_id, True)
        self._guarded("llm_error", self._run_ended, run_id, _outcome_for(error))

    # --- chains, tools, agents -------------------------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._guarded("chain_start", self._run_started, "chain", run_id, parent_run_id)

    def _chain_output(self, run_id: UUID, outputs: Any) -> None:
        with self._lock:
            if run_id in self._open_roots and self._final_output is None:
                self._final_output = jsonable(outputs)

    def on_chain_end(
        self,
        outputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._guarded("chain_end", self._chain_output, run_id, outputs)
        self._guarded("chain_end", self._run_ended, run_id)

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._guarded("chain_error", self._run_ended, run_id, _outcome_for(error))

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._guarded("tool_start", self._run_started, "tool", run_id, parent_run_id)

    def on_tool_end(
        self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._guarded("tool_end", self._run_ended, run_id)

    def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._guarded("tool_error", self._run_ended, run_id, _outcome_for(error))

    def _agent_step(self) -> None:
        with self._lock:
            self._agent = True
            self._agent_steps += 1

    def on_agent_action(
        self,
        action: AgentAction,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._guarded("agent_action", self._agent_step)

    def _agent_finished(self, finish: AgentFinish, run_id: UUID) -> None:
        with self._lock:
            self._agent = True
            self._final_output = jsonable(finish.return_values)
            # An agent nested in a larger chain: later steps may still call LLMs, so the
            # outermost run's end captures. Otherwise the agent's finish is the session's end.
            nested = bool(self._open_roots) and run_id not in self._open_roots
            if nested or not self.auto_capture:
                return
        self._capture({"status": "success"})

    def on_agent_finish(
        self,
        finish: AgentFinish,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self._guarded("agent_finish", self._agent_finished, finish, run_id)

    # --- capture -----------------------------------------------------------------------------
    def complete(
        self, outcome: str | Mapping[str, Any] = "success", final_output: Any = None
    ) -> Receipt | None:
        """Capture now (``auto_capture=False``, or a run the handler never saw end).

        Returns the receipt, or the earlier one if the session was already captured.
        """
        if final_output is not None:
            with self._lock:
                self._final_output = jsonable(final_output)
        status = {"status": outcome} if isinstance(outcome, str) else dict(outcome)
        self._guarded("complete", self._capture, status)
        return self.receipt

    def _build_event(self, outcome: dict[str, Any]) -> dict[str, Any]:
        """Called with the lock held."""
        if self._calls_reporting == 0:
            source = "missing"
        elif self._calls_reporting < self._calls:
            source = "estimated"
        else:
            source = "reported"
        usage: dict[str, Any] = {"source": source}
        if source != "missing":
            usage.update(self._usage)
        if self._by_model:
            # Several models in one session: the one with the most tokens names the event;
            # the split is kept in metadata.usage_by_model.
            usage["model"] = max(self._by_model, key=lambda m: self._by_model[m]["total_tokens"])
        if self._final_output is not None and outcome.get("status") == "success":
            outcome = {**outcome, "final_output": self._final_output}
        session_type = self.session_type or (
            "autonomous" if self._agent else (self._root_kind or "chain")
        )
        metadata = {
            **self.metadata,
            "integration": "langchain",
            "llm_calls": self._calls,
            "llm_calls_with_usage": self._calls_reporting,
        }
        if self._agent_steps:
            metadata["agent_steps"] = self._agent_steps
        if self._failed_calls:
            metadata["llm_calls_failed"] = self._failed_calls
        if len(self._by_model) > 1:
            metadata["usage_by_model"] = {m: dict(c) for m, c in self._by_model.items()}
        return {
            "event_type": "session.completed",
            "session_id": self.session_id,
            "session_type": session_type,
            "user_id": self.user_id,
            "organization_id": self.organization_id,
            "start_time": datetime.fromtimestamp(self._started or self._created, UTC),
            "end_time": datetime.now(UTC),
            "usage": usage,
            "outcome": outcome,
            "metadata": metadata,
        }

    def _capture(self, outcome: dict[str, Any]) -> None:
        with self._lock:
            if self._captured:
                return
            self._captured = True
            event = self._build_event(outcome)
        runtime = self._runtime if self._runtime is not None else get_runtime()
        self.receipt = runtime.capture(event)

    def __repr__(self) -> str:
        return f"<SessionCompletionCallback {self.session_id} captured={self._captured}>"
