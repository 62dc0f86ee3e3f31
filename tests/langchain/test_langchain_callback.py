"""SessionCompletionCallback on real LangChain runnables: one event, exact summed usage."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManager
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableConfig, RunnableLambda, RunnableParallel
from lc_fakes import Captured, ScriptedChatModel, lookup, run_mini_agent

from scr_middleware.langchain import SessionCompletionCallback
from scr_middleware.observability.logs import reset_log_once

TABLE = {"q1": (11, 7), "q2": (23, 5), "q3": (101, 40), "q4": (3, 2)}


def _two_step_chain(llm: ScriptedChatModel) -> Any:
    prompt = ChatPromptTemplate.from_messages([("user", "{q}")])
    follow_up = RunnableLambda(lambda _: "q2") | llm | StrOutputParser()
    return prompt | llm | StrOutputParser() | follow_up


def _single(captured: Captured) -> dict[str, Any]:
    events = captured.events()
    assert len(events) == 1, events
    return events[0]


def test_chain_sums_every_llm_call_exactly(captured: Captured) -> None:
    llm = ScriptedChatModel(table=TABLE, cached=2, reasoning=1)
    handler = SessionCompletionCallback(
        "sess-chain", runtime=captured.runtime, user_id="u1", organization_id="org1"
    )
    output = _two_step_chain(llm).invoke({"q": "q1"}, config={"callbacks": [handler]})

    event = _single(captured)
    assert output == "answer to q2"
    assert event["session_id"] == "sess-chain"
    assert event["user_id"] == "u1"
    assert event["organization_id"] == "org1"
    assert event["session_type"] == "chain"
    usage = event["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (34, 12, 46)
    assert usage["cached_input_tokens"] == 4
    assert usage["reasoning_tokens"] == 2
    assert usage["model"] == "fake-gpt-4o"
    assert usage["source"] == "reported"
    assert event["outcome"] == {"status": "success", "final_output": "answer to q2"}
    assert event["metadata"]["llm_calls"] == 2
    assert event["duration_ms"] >= 0


@pytest.mark.parametrize("report", ["llm_output", "both"])
def test_token_usage_and_usage_metadata_never_double_count(captured: Captured, report: str) -> None:
    llm = ScriptedChatModel(table=TABLE, report=report, model="gpt-4-0613", cached=1)
    handler = SessionCompletionCallback("sess-both", runtime=captured.runtime)
    _two_step_chain(llm).invoke({"q": "q1"}, config={"callbacks": [handler]})

    usage = _single(captured)["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (34, 12, 46)
    assert usage["cached_input_tokens"] == 2
    assert usage["model"] == "gpt-4-0613"


def test_streamed_chain_counts_usage_from_the_final_chunk(captured: Captured) -> None:
    llm = ScriptedChatModel(table=TABLE)
    handler = SessionCompletionCallback("sess-stream", runtime=captured.runtime)
    chunks = list(_two_step_chain(llm).stream({"q": "q3"}, config={"callbacks": [handler]}))

    event = _single(captured)
    assert "".join(chunks) == "answer to q2"
    usage = event["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (124, 45, 169)
    assert usage["source"] == "reported"


def test_agent_flow_captures_once_on_agent_finish(captured: Captured) -> None:
    llm = ScriptedChatModel(table=TABLE, model="gpt-4o")
    handler = SessionCompletionCallback(
        "agent_1", runtime=captured.runtime, metadata={"team": "support"}
    )
    result = run_mini_agent(llm, lookup, ["q1", "q3", "q4"], [handler])

    event = _single(captured)
    assert handler.captured
    assert event["session_type"] == "autonomous"
    assert event["outcome"] == {"status": "success", "final_output": result}
    assert result == {"output": "answer to q4"}
    usage = event["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (115, 49, 164)
    assert event["metadata"]["agent_steps"] == 3
    assert event["metadata"]["team"] == "support"


def test_error_at_the_root_is_captured_as_error(captured: Captured) -> None:
    llm = ScriptedChatModel(table=TABLE)
    handler = SessionCompletionCallback("agent_err", runtime=captured.runtime)
    with pytest.raises(LookupError):
        run_mini_agent(llm, lookup, ["q1"], [handler], fail_with=LookupError("no such order"))

    event = _single(captured)
    assert event["outcome"]["status"] == "error"
    assert event["outcome"]["error_type"] == "LookupError"
    assert "final_output" not in event["outcome"]
    assert event["usage"]["total_tokens"] == 18  # the call before the failure still counts


def test_failing_chain_without_agent(captured: Captured) -> None:
    def explode(_: Any) -> str:
        raise ValueError("bad input")

    chain = ScriptedChatModel(table=TABLE) | RunnableLambda(explode)
    handler = SessionCompletionCallback("sess-fail", runtime=captured.runtime)
    with pytest.raises(ValueError, match="bad input"):
        chain.invoke("q4", config={"callbacks": [handler]})

    event = _single(captured)
    assert event["outcome"] == {"status": "error", "error_type": "ValueError"}
    assert event["usage"]["total_tokens"] == 5


def test_usage_source_missing_and_estimated(captured: Captured) -> None:
    silent = FakeListChatModel(responses=["a", "b"])
    handler = SessionCompletionCallback("sess-missing", runtime=captured.runtime)
    (silent | StrOutputParser() | silent).invoke("hi", config={"callbacks": [handler]})

    reporting = ScriptedChatModel(table={"hi": (5, 5), "answer to hi": (9, 1)})
    mixed = SessionCompletionCallback("sess-mixed", runtime=captured.runtime)
    (reporting | StrOutputParser() | silent).invoke("hi", config={"callbacks": [mixed]})

    events = {event["session_id"]: event for event in captured.events()}
    assert events["sess-missing"]["usage"]["source"] == "missing"
    assert events["sess-missing"]["usage"]["total_tokens"] is None
    assert events["sess-mixed"]["usage"]["source"] == "estimated"
    assert events["sess-mixed"]["usage"]["total_tokens"] == 10
    assert events["sess-mixed"]["metadata"]["llm_calls"] == 2
    assert events["sess-mixed"]["metadata"]["llm_calls_with_usage"] == 1


def test_parallel_branches_from_threads_sum_exactly(captured: Captured) -> None:
    table = {f"p{i}": (i + 1, 2 * i + 1) for i in range(12)}
    llm = ScriptedChatModel(table=table)
    branches = {f"b{i}": RunnableLambda(lambda _, i=i: f"p{i}") | llm for i in range(12)}
    handler = SessionCompletionCallback("sess-parallel", runtime=captured.runtime)
    RunnableParallel(branches).invoke("go", config={"callbacks": [handler], "max_concurrency": 6})

    usage = _single(captured)["usage"]
    assert usage["input_tokens"] == sum(v[0] for v in table.values())
    assert usage["output_tokens"] == sum(v[1] for v in table.values())


def test_async_run_with_sync_handler(captured: Captured) -> None:
    llm = ScriptedChatModel(table=TABLE)
    handler = SessionCompletionCallback("sess-async", runtime=captured.runtime)
    chain = _two_step_chain(llm)
    asyncio.run(chain.ainvoke({"q": "q3"}, config={"callbacks": [handler]}))

    usage = _single(captured)["usage"]
    assert usage["total_tokens"] == 141 + 28


def test_chat_model_called_directly_is_the_root(captured: Captured) -> None:
    handler = SessionCompletionCallback("sess-direct", runtime=captured.runtime)
    ScriptedChatModel(table=TABLE).invoke("q4", config={"callbacks": [handler]})

    event = _single(captured)
    assert event["session_type"] == "chat"
    assert event["usage"]["total_tokens"] == 5


def test_handler_reused_after_capture_does_not_capture_again(captured: Captured) -> None:
    llm = ScriptedChatModel(table=TABLE)
    handler = SessionCompletionCallback("sess-once", runtime=captured.runtime)
    chain = llm | StrOutputParser()
    chain.invoke("q1", config={"callbacks": [handler]})
    chain.invoke("q3", config={"callbacks": [handler]})

    assert _single(captured)["usage"]["total_tokens"] == 18


def test_manual_capture_spans_several_invocations(captured: Captured) -> None:
    llm = ScriptedChatModel(table=TABLE)
    handler = SessionCompletionCallback(
        "sess-manual", runtime=captured.runtime, auto_capture=False, session_type="chat"
    )
    chain = llm | StrOutputParser()
    chain.invoke("q1", config={"callbacks": [handler]})
    chain.invoke("q4", config={"callbacks": [handler]})
    assert not handler.captured
    receipt = handler.complete("user_terminated")
    assert handler.complete() is receipt

    event = _single(captured)
    assert event["session_type"] == "chat"
    assert event["outcome"]["status"] == "user_terminated"
    assert event["usage"]["total_tokens"] == 23


def test_several_models_name_the_biggest_and_keep_the_split(captured: Captured) -> None:
    small = ScriptedChatModel(table={"x": (1, 1)}, model="mini")
    big = ScriptedChatModel(table={"answer to x": (50, 50)}, model="large")
    handler = SessionCompletionCallback("sess-models", runtime=captured.runtime)
    (small | StrOutputParser() | big).invoke("x", config={"callbacks": [handler]})

    event = _single(captured)
    assert event["usage"]["model"] == "large"
    assert event["metadata"]["usage_by_model"] == {
        "mini": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
        "large": {"input_tokens": 50, "output_tokens": 50, "total_tokens": 100},
    }


def test_handler_added_to_a_run_nested_in_another(captured: Captured) -> None:
    llm = ScriptedChatModel(table=TABLE)
    handler = SessionCompletionCallback("sess-nested", runtime=captured.runtime)
    inner = llm | StrOutputParser()

    def step(question: str, config: RunnableConfig) -> str:
        # The outer chain runs without the handler; only this inner run gets it, so its
        # parent is a run the handler never saw.
        manager = config["callbacks"]
        assert isinstance(manager, CallbackManager)
        manager.add_handler(handler, inherit=True)
        return str(inner.invoke(question, config={**config, "callbacks": manager}))

    (RunnableLambda(lambda q: q) | RunnableLambda(step)).invoke("q3")

    event = _single(captured)
    assert event["usage"]["total_tokens"] == 141
    assert event["outcome"]["final_output"] == "answer to q3"


def test_model_constructor_callbacks_need_complete(
    captured: Captured, caplog: pytest.LogCaptureFixture
) -> None:
    reset_log_once("langchain:local-llm-callback")
    handler = SessionCompletionCallback("sess-local", runtime=captured.runtime)
    llm = ScriptedChatModel(table=TABLE, callbacks=[handler])
    chain = RunnableLambda(lambda q: q) | llm | StrOutputParser()
    with caplog.at_level("WARNING", logger="scr_middleware"):
        chain.invoke("q1")
        chain.invoke("q4")
    assert not handler.captured  # the handler never sees the session's run end
    assert "pass it in the run's config" in caplog.text
    handler.complete()

    assert _single(captured)["usage"]["total_tokens"] == 23
