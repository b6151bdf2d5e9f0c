"""The usage report command against a running usage API (the LLM Proxy app on loopback, ledger on moto)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
import uvicorn

from daarion_common.usage_ledger import record
from tests.fixtures.stack import free_ports
from tests.fixtures.usage import llm_event, tool_event


@pytest.fixture
def usage_api(aws):
    from llm_proxy.app import app

    port = free_ports(1)[0]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)


def test_report_prints_agents_models_and_writes_a_chart(aws, usage_api, tmp_path, capsys):
    from ops.usage_report import main

    dao = f"dao-{uuid.uuid4().hex[:6]}"
    table = aws.ref("UsageTable")
    for day, agent, cost in [(18, "sofia", 0.25), (19, "sofia", 0.5), (19, "max", 0.125)]:
        record(
            aws.clients["dynamodb"],
            table,
            llm_event(agent, dao, occurred_at=datetime(2026, 11, day, tzinfo=UTC), cost_usd=cost),
            90,
        )
    record(aws.clients["dynamodb"], table, tool_event("max", dao, occurred_at=datetime(2026, 11, 19, tzinfo=UTC)), 90)
    chart = tmp_path / "cost.png"
    main(["--url", usage_api, "--microdao", dao, "--from", "2026-11-18", "--to", "2026-11-19", "--chart", str(chart)])
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line and line.split()[0] in {"sofia", "max", "all"}
    }
    assert rows["sofia"][1] == "2" and rows["sofia"][5] == "0.750000"
    assert rows["max"][1] == "1" and rows["max"][5] == "0.125000"
    assert rows["all"][5] == "0.875000"
    assert "tool:projects.list" in out and "gpt-4.1-mini" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_explains_a_refusal(aws, usage_api):
    from ops.usage_report import main

    with pytest.raises(SystemExit, match="422"):
        main(["--url", usage_api, "--from", "2026-11-30", "--to", "2026-11-01"])
    with pytest.raises(SystemExit, match="401"):
        main(["--url", usage_api, "--secret", "wrong", "--microdao", "d"])
