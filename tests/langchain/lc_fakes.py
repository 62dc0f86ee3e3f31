"""Fake chat models that report usage the ways real integrations do, and a mini agent loop."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.agents import AgentAction, AgentFinish
from langchain_core.callbacks import CallbackManager, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import BaseTool, tool

from scr_middleware.destinations.memory import memory_destination
from scr_middleware.runtime import SessionCompletionRuntime


@dataclass
class Captured:
    runtime: SessionCompletionRuntime
    name: str

    def events(self) -> list[dict[str, Any]]:
        assert self.runtime.flush(10.0)
        destination = memory_destination(self.name)
        return [] if destination is None else destination.payloads


class ScriptedChatModel(BaseChatModel):
    """Answers from ``table`` (last message text -> (input, output) tokens).

    ``report``: "metadata" (usage_metadata, as newer chat models do), "llm_output"
    (OpenAI-style token_usage only), "both" (token_usage AND usage_metadata with the same
    numbers, as langchain-openai does) or "none".
    """

    table: dict[str, tuple[int, int]]
    model: str = "fake-gpt-4o"
    report: str = "metadata"
    cached: int = 0
    reasoning: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def _usage(self, prompt: str) -> UsageMetadata:
        tokens_in, tokens_out = self.table[prompt]
        return UsageMetadata(
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            total_tokens=tokens_in + tokens_out,
            input_token_details={"cache_read": self.cached},
            output_token_details={"reasoning": self.reasoning},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = str(messages[-1].content)
        tokens_in, tokens_out = self.table[prompt]
        usage = self._usage(prompt) if self.report in ("metadata", "both") else None
        message = AIMessage(
            content=f"answer to {prompt}",
            usage_metadata=usage,
            response_metadata={"model_name": self.model},
        )
        llm_output = None
        if self.report in ("llm_output", "both"):
            llm_output = {
                "token_usage": {
                    "prompt_tokens": tokens_in,
                    "completion_tokens": tokens_out,
                    "total_tokens": tokens_in + tokens_out,
                    "prompt_tokens_details": {"cached_tokens": self.cached},
                    "completion_tokens_details": {"reasoning_tokens": self.reasoning},
                },
                "model_name": self.model,
            }
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output=llm_output)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        prompt = str(messages[-1].content)
        for word in ("answer ", "to ", prompt):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word))
            if run_manager is not None:
                run_manager.on_llm_new_token(word, chunk=chunk)
            yield chunk
        # Like OpenAI with stream_options.include_usage: usage rides on a final empty chunk.
        usage = self._usage(prompt) if self.report != "none" else None
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="", usage_metadata=usage, response_metadata={"model_name": self.model}
            )
        )


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"facts about {query}"


def run_mini_agent(
    llm: BaseChatModel,
    tool: BaseTool,
    questions: Sequence[str],
    callbacks: list[Any],
    fail_with: BaseException | None = None,
) -> dict[str, Any]:
    """What AgentExecutor does with callbacks: a chain run, LLM and tool calls as its
    children, on_agent_action per step, on_agent_finish, then on_chain_end."""
    manager = CallbackManager.configure(inheritable_callbacks=callbacks)
    run = manager.on_chain_start({"name": "MiniAgentExecutor"}, {"input": questions[0]})
    try:
        reply = None
        for question in questions:
            reply = llm.invoke(question, config={"callbacks": run.get_child()})
            action = AgentAction(tool=tool.name, tool_input=question, log=str(reply.content))
            run.on_agent_action(action)
            tool.invoke(question, config={"callbacks": run.get_child()})
            if fail_with is not None:
                raise fail_with
        assert reply is not None
        finish = AgentFinish(return_values={"output": reply.content}, log="done")
        run.on_agent_finish(finish)
        run.on_chain_end(finish.return_values)
        return finish.return_values
    except BaseException as exc:
        run.on_chain_error(exc)
        raise
