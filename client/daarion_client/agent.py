"""One agent turn: memory, context tools, the model with tools, storing the exchange — inside a deadline.

    result = await run_turn(SOFIA, IncomingMessage(microdao_id="dao-1", channel_id="general",
                                                   text="Sofia, що нового в проєкті X?"), services)
    result.reply, result.trace

Every step is traced (what was retrieved, which tools ran, tokens, cost, time). A failing memory or
tool does not stop the turn: the failure is written in the trace and told to the model in the
prompt, so the answer can say what it could not check. If the model itself cannot be reached the
turn still answers, within its deadline, with a reply that says so plainly.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from daarion_client.clients import AsyncLlmProxyClient, AsyncMemoryClient, AsyncToolcoreClient
from daarion_client.errors import DaarionError
from daarion_client.llm import StreamDone, TextDelta, ToolCallDelta, context_window_of
from daarion_client.models import ChatResult, MemoryItem, ModelList, TokenUsage, ToolListing, ToolResult
from daarion_contracts.tokens import prompt_bound

DEFAULT_CONTEXT_WINDOW = 4096  # when the proxy does not state a model's window: small local models' size
MODEL_LIST_TTL_S = 300.0
RECENT_KEPT_FIRST = 6  # fitting a prompt: older history goes before any memory, down to this many messages

MODEL_UNAVAILABLE_REPLY = (
    "I can't reach my language model right now, so I can't answer properly. "
    "Please try again in a minute. / Не можу зараз звернутися до мовної моделі — спробуйте, будь ласка, за хвилину."
)


@dataclass(frozen=True)
class ContextTool:
    """A tool called before the model is asked; ``args`` values may use {agent_id}, {microdao_id}, {channel_id}."""

    tool_id: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Blueprint:
    agent_id: str
    system_prompt: str
    model: str
    allowed_tools: tuple[str, ...] = ()
    context_tools: tuple[ContextTool, ...] = ()
    memory_limit: int = 5
    max_tool_rounds: int = 3
    max_tokens: int = 512
    # The prompt is fitted to the model's context window: this one if set, else the proxy's (GET /v1/models,
    # field ``context_window``), else ``default_context_window`` (conservative: a small local model's).
    context_window: int | None = None
    default_context_window: int = DEFAULT_CONTEXT_WINDOW


@dataclass(frozen=True)
class IncomingMessage:
    microdao_id: str
    channel_id: str
    text: str
    recent: tuple[dict[str, str], ...] = ()  # the channel's last messages, oldest first ({role, content})


@dataclass
class Step:
    name: str
    status: str  # ok | error | refused | skipped
    ms: float
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class TurnResult:
    reply: str
    trace: list[Step]
    prompt: list[dict[str, Any]]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    elapsed_ms: float = 0.0
    stored_memory_id: str | None = None

    @property
    def failures(self) -> list[Step]:
        return [s for s in self.trace if s.status in ("error", "refused")]


@dataclass
class Services:
    llm: AsyncLlmProxyClient
    memory: AsyncMemoryClient
    tools: AsyncToolcoreClient

    @classmethod
    def from_env(cls, **kwargs: Any) -> Services:
        return cls(AsyncLlmProxyClient(**kwargs), AsyncMemoryClient(**kwargs), AsyncToolcoreClient(**kwargs))

    async def aclose(self) -> None:
        await asyncio.gather(self.llm.aclose(), self.memory.aclose(), self.tools.aclose())


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", type(exc).__name__)
    return f"{code}: {getattr(exc, 'message', None) or exc}"


async def _timed(coro: Any) -> tuple[Any, BaseException | None, float]:
    began = time.monotonic()
    try:
        return await coro, None, (time.monotonic() - began) * 1000
    except (DaarionError, TimeoutError) as exc:
        return None, exc, (time.monotonic() - began) * 1000


def _fill(args: dict[str, Any], agent_id: str, message: IncomingMessage) -> dict[str, Any]:
    values = {"agent_id": agent_id, "microdao_id": message.microdao_id, "channel_id": message.channel_id}
    return {k: v.format(**values) if isinstance(v, str) else v for k, v in args.items()}


def build_prompt(
    blueprint: Blueprint,
    message: IncomingMessage,
    memories: list[MemoryItem] | None,
    memory_error: str | None,
    context: list[tuple[str, ToolResult | None, str | None]],
) -> list[dict[str, Any]]:
    """System prompt + what memory and tools said (or that they failed) + recent conversation + the message."""
    parts = [blueprint.system_prompt]
    if memory_error:
        parts.append(f"Memory is unavailable for this turn ({memory_error}); say so if it matters.")
    elif memories:
        lines = [f"- [{m.kind or 'memory'}] {m.content}" for m in memories]
        parts.append("What you remember that may be relevant:\n" + "\n".join(lines))
    for tool_id, result, error in context:
        if error or result is None or not result.ok:
            reason = error or (f"{result.error.code}: {result.error.message}" if result and result.error else "failed")
            parts.append(f"Live data from {tool_id} is unavailable ({reason}); do not guess it.")
        else:
            parts.append(f"Live data from {tool_id}:\n{json.dumps(result.result, ensure_ascii=False)}")
    prompt: list[dict[str, Any]] = [{"role": "system", "content": "\n\n".join(parts)}]
    prompt.extend({"role": m["role"], "content": m["content"]} for m in message.recent)
    prompt.append({"role": "user", "content": message.text})
    return prompt


def fit_prompt(
    blueprint: Blueprint,
    message: IncomingMessage,
    memories: list[MemoryItem] | None,
    memory_error: str | None,
    context: list[tuple[str, ToolResult | None, str | None]],
    *,
    window: int,
    tools: list[dict[str, Any]] | None = None,
    reserve: int = 0,
) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """The prompt within ``window`` tokens by the shared estimator (``daarion_contracts.tokens``), with room
    for the answer: the system prompt and the new message are always kept; the oldest history and the
    lowest-ranked memories go first, in turn. ``reserve``: tokens the turn's tool rounds add after this
    prompt (assistant tool calls and tool results). Returns (prompt, max_tokens, what was done)."""
    max_tokens = max(1, min(blueprint.max_tokens, window // 2))
    budget = window - max_tokens - reserve
    ranked = sorted(memories or [], key=lambda m: m.score, reverse=True)
    history = list(message.recent)
    dropped_history: list[int] = []  # positions in message.recent, oldest first
    dropped_memories: list[str] = []

    def measure() -> tuple[int, list[dict[str, Any]]]:
        prompt = build_prompt(blueprint, replace(message, recent=tuple(history)), ranked, memory_error, context)
        return prompt_bound({"messages": prompt, "tools": tools or None}), prompt

    size, prompt = measure()
    before = size
    take_history = True
    while size > budget and (history or ranked):
        # old conversation goes first down to the last few messages, then memories and history in turn
        if len(history) > RECENT_KEPT_FIRST or (take_history and history) or not ranked:
            history.pop(0)
            dropped_history.append(len(dropped_history))
        else:
            dropped_memories.append(ranked.pop().id)
        if len(history) < RECENT_KEPT_FIRST:
            take_history = not take_history
        size, prompt = measure()
    detail = {
        "context_window": window,
        "max_tokens": max_tokens,
        "prompt_tokens_bound": size,
        "prompt_tokens_bound_before": before,
        "fits": size <= budget,
        "dropped_history_messages": len(dropped_history),
        "kept_history_messages": len(history),
        "dropped_memories": dropped_memories,
        "kept_memories": len(ranked),
    }
    return prompt, max_tokens, detail


TRUNCATED_NOTE = " … [truncated to fit the model's context window]"


def refit_round(
    blueprint: Blueprint,
    message: IncomingMessage,
    memories: list[MemoryItem] | None,
    memory_error: str | None,
    context: list[tuple[str, ToolResult | None, str | None]],
    rounds: list[dict[str, Any]],
    *,
    window: int,
    tools: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """Before a tool round's next call: the prompt re-fitted with room for what the rounds added (``rounds``:
    the assistant tool calls and tool results, in order). More history and memories go first; if the
    system prompt, the message and the rounds still do not fit, the longest tool results are cut (and say
    so). Returns (messages, max_tokens, what was done)."""
    rounds = [dict(m) for m in rounds]
    prompt, max_tokens, fit = fit_prompt(
        blueprint, message, memories, memory_error, context, window=window, tools=tools,
        reserve=prompt_bound({"messages": rounds}),
    )  # fmt: skip
    budget = window - max_tokens
    truncated: list[str] = []

    def size() -> int:
        return prompt_bound({"messages": prompt + rounds, "tools": tools or None})

    while size() > budget:
        results = [m for m in rounds if m.get("role") == "tool" and len(m.get("content") or "") > 64]
        if not results:
            break
        longest = max(results, key=lambda m: len(m["content"]))
        # the estimator's bound is UTF-8 bytes: cutting `over` bytes (and the note's) lowers it by at least `over`
        raw = longest["content"].encode()
        keep = max(0, len(raw) - (size() - budget) - len(TRUNCATED_NOTE.encode()))
        longest["content"] = raw[:keep].decode(errors="ignore").rstrip() + TRUNCATED_NOTE
        if longest.get("tool_call_id") not in truncated:
            truncated.append(longest.get("tool_call_id", ""))
    fit.update(prompt_tokens_bound=size(), fits=size() <= budget, truncated_tool_results=truncated)
    return prompt + rounds, max_tokens, fit


async def _stream_chat(
    services: Services, model: str, messages: list[dict[str, Any]], on_delta: Callable[[str], Any],
    **kwargs: Any,
) -> ChatResult:  # fmt: skip
    """One model call through the long path, its text handed to ``on_delta`` as it comes; the result in the
    contract's shape (the same as the buffered call's)."""
    began = time.monotonic()
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    done: StreamDone | None = None
    async for event in services.llm.chat_stream(model, messages, **kwargs):
        if isinstance(event, TextDelta):
            content.append(event.text)
            outcome = on_delta(event.text)
            if inspect.isawaitable(outcome):
                await outcome
        elif isinstance(event, ToolCallDelta):
            call = calls.setdefault(
                event.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
            call["id"] = event.id or call["id"]
            call["function"]["name"] += event.name or ""
            call["function"]["arguments"] += event.arguments
        else:
            done = event
    assert done is not None
    usage = done.usage or TokenUsage(prompt_tokens=0, completion_tokens=0, total_tokens=0)
    return ChatResult(
        content="".join(content), usage=usage, provider=done.provider, model=model,
        model_resolved=done.model_resolved, latency_ms=round((time.monotonic() - began) * 1000, 3),
        cost_usd=done.cost_usd or 0.0, finish_reason=done.finish_reason,
        tool_calls=[calls[i] for i in sorted(calls)] or None, fallback_used=done.fallback_used,
        request_id=done.request_id,
    )  # fmt: skip


async def run_turn(
    blueprint: Blueprint,
    message: IncomingMessage,
    services: Services,
    *,
    deadline_s: float = 5.0,
    on_delta: Callable[[str], Any] | None = None,
) -> TurnResult:
    """One turn. With ``on_delta``, the model's reply is streamed (the long path) and each piece of its text
    handed to ``on_delta`` (sync or async) as it arrives; the result is the same."""
    began = time.monotonic()
    deadline = began + deadline_s
    # Keep time in hand for the model and for storing the exchange: context gets 40% of the budget.
    context_deadline = began + deadline_s * 0.4
    store_reserve = min(0.5, deadline_s * 0.1)
    agent, dao, channel = blueprint.agent_id, message.microdao_id, message.channel_id
    trace: list[Step] = []

    memory_task = _timed(
        services.memory.query(message.text, agent_id=agent, microdao_id=dao, channel_id=channel,
                              limit=blueprint.memory_limit, deadline=context_deadline)
    )  # fmt: skip
    listing_task = _timed(services.tools.list_tools(agent_id=agent, microdao_id=dao, deadline=context_deadline))
    context_tasks = [
        _timed(services.tools.call(ct.tool_id, _fill(ct.args, agent, message), agent_id=agent, microdao_id=dao,
                                   context={"channel_id": channel}, deadline=context_deadline))
        for ct in blueprint.context_tools
    ]  # fmt: skip
    window_task = _timed(_context_window(blueprint, services, context_deadline))
    (
        (memories, memory_exc, memory_ms),
        (listing, listing_exc, listing_ms),
        (window_info, _, _),
        *context_results,
    ) = await asyncio.gather(memory_task, listing_task, window_task, *context_tasks)
    memory_error = _describe(memory_exc) if memory_exc else None
    trace.append(
        Step("memory.query", "error" if memory_exc else "ok", memory_ms, error=memory_error,
             detail={"items": [{"id": m.id, "kind": m.kind, "score": m.score} for m in memories or []]})
    )  # fmt: skip
    context: list[tuple[str, ToolResult | None, str | None]] = []
    for ct, (result, exc, ms) in zip(blueprint.context_tools, context_results, strict=True):
        error = _describe(exc) if exc else None
        failed = exc is not None or not result.ok
        if result is not None and not result.ok and result.error:
            error = f"{result.error.code}: {result.error.message}"
        context.append((ct.tool_id, result, error))
        trace.append(Step(f"tool:{ct.tool_id}", "error" if failed else "ok", ms, error=error, detail={"context": True}))
    offered: list[dict[str, Any]] = []
    name_to_id: dict[str, str] = {}
    if listing_exc:
        trace.append(Step("tools.list", "error", listing_ms, error=_describe(listing_exc)))
    else:
        assert isinstance(listing, ToolListing)
        name_to_id = dict(listing.tool_ids)
        allowed = [t for t in listing.tools if name_to_id.get(t.function.name) in blueprint.allowed_tools]
        offered = [t.model_dump(mode="json") for t in allowed]  # OpenAI's `tools=` entries, as the listing sent them
        trace.append(
            Step("tools.list", "ok", listing_ms, detail={"offered": [name_to_id[t.function.name] for t in allowed]})
        )

    window, window_source = window_info or (blueprint.default_context_window, "default (the proxy did not answer)")
    fit_began = time.monotonic()
    prompt, max_tokens, fit = fit_prompt(
        blueprint, message, memories, memory_error, context, window=window, tools=offered or None
    )
    fit["window_source"] = window_source
    too_big = None if fit["fits"] else "the system prompt and the message alone exceed the window"
    fit_ms = (time.monotonic() - fit_began) * 1000
    trace.append(Step("prompt.fit", "ok" if fit["fits"] else "error", fit_ms, detail=fit, error=too_big))
    messages = list(prompt)
    rounds: list[dict[str, Any]] = []  # what the tool rounds add: assistant tool calls and tool results
    result = TurnResult(reply="", trace=trace, prompt=prompt)
    reply: str | None = None
    for round_ in range(blueprint.max_tool_rounds + 1):
        last_round = round_ == blueprint.max_tool_rounds
        call_tools = offered if offered and not last_round else None
        if round_ > 0:  # what the tool rounds added must fit too: re-fit before the next call
            refit_began = time.monotonic()
            messages, max_tokens, refit = refit_round(
                blueprint, message, memories, memory_error, context, rounds, window=window, tools=call_tools
            )
            refit["round"] = round_
            trace.append(
                Step("prompt.refit", "ok" if refit["fits"] else "error", (time.monotonic() - refit_began) * 1000,
                     detail=refit, error=None if refit["fits"] else "the turn's tool rounds exceed the window")
            )  # fmt: skip
        options: dict[str, Any] = {"max_tokens": max_tokens}
        if call_tools:
            options["tools"] = call_tools
        caller = {"agent_id": agent, "microdao_id": dao, "channel_id": channel, "deadline": deadline - store_reserve}
        if on_delta is not None:
            call = _stream_chat(services, blueprint.model, messages, on_delta, **caller, **options)
        else:
            call = services.llm.chat(blueprint.model, messages, **caller, **options)
        chat, exc, ms = await _timed(call)
        if exc is not None:
            trace.append(Step("llm", "error", ms, error=_describe(exc), detail={"round": round_}))
            reply = MODEL_UNAVAILABLE_REPLY
            break
        assert isinstance(chat, ChatResult)
        result.prompt_tokens += chat.usage.prompt_tokens
        result.completion_tokens += chat.usage.completion_tokens
        result.cost_usd += chat.cost_usd or 0.0
        trace.append(
            Step("llm", "ok", ms, detail={
                "round": round_, "model": blueprint.model, "provider": chat.provider,
                "model_resolved": chat.model_resolved,
                "prompt_tokens": chat.usage.prompt_tokens, "completion_tokens": chat.usage.completion_tokens,
                "cost_usd": chat.cost_usd, "tool_calls": len(chat.tool_calls or []), "streamed": on_delta is not None,
            })
        )  # fmt: skip
        if not chat.tool_calls:
            reply = chat.content or ""
            break
        rounds.append({"role": "assistant", "content": chat.content, "tool_calls": chat.tool_calls})
        for call in chat.tool_calls:
            rounds.append(await _run_tool_call(call, name_to_id, blueprint, message, services, deadline, trace))
        # the next round's messages: the prompt re-fitted with these rounds (refit_round, above)
    result.reply = reply if reply is not None else ""

    stored, exc, ms = await _timed(
        services.memory.store(
            {"user_message": message.text, "agent_reply": result.reply, "timestamp": datetime.now(UTC).isoformat()},
            agent_id=agent, microdao_id=dao, channel_id=channel, kind="conversation", deadline=deadline,
        )
    )  # fmt: skip
    trace.append(Step("memory.store", "error" if exc else "ok", ms, error=_describe(exc) if exc else None,
                      detail={"id": stored} if stored else {}))  # fmt: skip
    result.stored_memory_id = stored
    result.elapsed_ms = (time.monotonic() - began) * 1000
    return result


async def _context_window(blueprint: Blueprint, services: Services, deadline: float) -> tuple[int, str]:
    """(the model's context window, where it came from)."""
    if blueprint.context_window:
        return blueprint.context_window, "blueprint"
    # the model list changes with a deploy, not per turn: read once per client every 5 minutes
    cached = getattr(services.llm, "_model_list", None)
    if cached is not None and time.monotonic() - cached[0] < MODEL_LIST_TTL_S:
        models: ModelList = cached[1]
    else:
        models = await services.llm.openai_models(deadline=deadline)
        services.llm._model_list = (time.monotonic(), models)  # type: ignore[attr-defined]
    stated = context_window_of(models, blueprint.model)
    if stated:
        return stated, "proxy (GET /v1/models)"
    return blueprint.default_context_window, "default (the proxy states no context_window)"


async def _run_tool_call(
    call: dict[str, Any],
    name_to_id: dict[str, str],
    blueprint: Blueprint,
    message: IncomingMessage,
    services: Services,
    deadline: float,
    trace: list[Step],
) -> dict[str, Any]:
    """Execute one tool call the model asked for (if the agent may), and return the ``tool`` message."""
    function = call.get("function") or {}
    name = str(function.get("name", ""))
    tool_id = name_to_id.get(name, name)
    try:
        args = json.loads(function.get("arguments") or "{}")
    except json.JSONDecodeError:
        args = None
    if tool_id not in blueprint.allowed_tools:
        error = f"permission_denied: {blueprint.agent_id} may not call {tool_id}"
        trace.append(Step(f"tool:{tool_id}", "refused", 0.0, error=error, detail={"requested_by_model": True}))
        content: dict[str, Any] = {"ok": False, "error": {"code": "permission_denied", "message": error}}
    elif not isinstance(args, dict):
        error = "invalid_args: the model's arguments are not a JSON object"
        trace.append(Step(f"tool:{tool_id}", "error", 0.0, error=error, detail={"requested_by_model": True}))
        content = {"ok": False, "error": {"code": "invalid_args", "message": error}}
    else:
        result, exc, ms = await _timed(
            services.tools.call(tool_id, args, agent_id=blueprint.agent_id, microdao_id=message.microdao_id,
                                context={"channel_id": message.channel_id}, deadline=deadline)
        )  # fmt: skip
        if exc is not None:
            error = _describe(exc)
            trace.append(Step(f"tool:{tool_id}", "error", ms, error=error, detail={"requested_by_model": True}))
            content = {"ok": False, "error": {"code": getattr(exc, "code", "error"), "message": error}}
        else:
            assert isinstance(result, ToolResult)
            status = (
                "ok"
                if result.ok
                else ("refused" if result.error and result.error.code == "permission_denied" else "error")
            )
            error = f"{result.error.code}: {result.error.message}" if result.error else None
            trace.append(
                Step(f"tool:{tool_id}", status, ms, error=error, detail={"requested_by_model": True, "args": args})
            )
            content = result.model_dump(include={"ok", "result", "error"})
    return {"role": "tool", "tool_call_id": call.get("id", ""), "content": json.dumps(content, ensure_ascii=False)}
