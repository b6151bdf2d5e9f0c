"""Usage events reach the queue (moto's server over HTTP), or the log for reconciliation — never nowhere."""

from __future__ import annotations

import json

from daarion_common import aws as aws_clients
from daarion_common.events import ToolCallEvent, usage_event_adapter
from daarion_common.settings import get_settings
from daarion_common.usage import emit


def _event() -> ToolCallEvent:
    return ToolCallEvent(agent_id="sofia", microdao_id="dao-42", latency_ms=3.0, status="ok", tool_id="projects.list")


def test_event_is_queued_and_reads_back_identical(aws):
    aws.purge_queues()
    event = _event()
    assert emit(event) == "queued"
    sqs = aws.clients["sqs"]
    received = sqs.receive_message(QueueUrl=aws.ref("UsageQueue"), WaitTimeSeconds=1, MessageAttributeNames=["All"])
    messages = received["Messages"]
    assert len(messages) == 1
    assert usage_event_adapter.validate_json(messages[0]["Body"]) == event
    assert messages[0]["MessageAttributes"]["type"]["StringValue"] == "tool_call"


def test_unreachable_queue_logs_the_whole_event_for_reconciliation(aws, monkeypatch, caplog):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    get_settings.cache_clear()
    aws_clients.reset_clients()
    event = _event()
    with caplog.at_level("ERROR"):
        assert emit(event) == "reconcile"
    records = [r for r in caplog.records if getattr(r, "reconcile", False)]
    assert len(records) == 1
    logged = records[0].usage_event
    assert usage_event_adapter.validate_python(logged) == event
    assert json.dumps(logged)  # serialisable as the log line


def test_missing_queue_configuration_is_also_reconciled(monkeypatch, caplog):
    with caplog.at_level("ERROR"):
        assert emit(_event()) == "reconcile"


def test_a_slow_queue_endpoint_cannot_stall_the_request(monkeypatch, caplog):
    """An endpoint that accepts and never answers: two short attempts, then the reconciliation line."""
    import socket
    import threading

    from daarion_common import usage

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)  # read nothing, answer nothing

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("USAGE_QUEUE_URL", f"http://127.0.0.1:{port}/123456789012/usage")
    monkeypatch.setenv("USAGE_SEND_TIMEOUT_SECONDS", "0.3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    get_settings.cache_clear()
    try:
        with caplog.at_level("ERROR"):
            assert emit(_event()) == "reconcile"
        assert len(accepted) <= usage.SEND_ATTEMPTS  # no retry storm behind the caller's back
        assert [r for r in caplog.records if getattr(r, "reconcile", False)]
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
        get_settings.cache_clear()
