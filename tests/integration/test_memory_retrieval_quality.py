"""Retrieval quality on a small bilingual (uk/en) set kept in tests/data: hit@3 >= 0.9, through the
real handler, database and embedder."""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "memory_retrieval.json"


def test_bilingual_hit_at_3(memory_api, memory_db):
    data = json.loads(DATA.read_text(encoding="utf-8"))
    ids: dict[str, str] = {}
    for memory in data["memories"]:
        r = memory_api.store(
            agent_id="sofia", microdao_id="dao-eval", channel_id=None, kind=memory["kind"], content=memory["content"]
        )
        assert r.status == 200, r.body
        ids[memory["key"]] = r.body["id"]
    assert len(set(ids.values())) == len(data["memories"])
    misses = []
    for case in data["queries"]:
        r = memory_api.query(agent_id="sofia", microdao_id="dao-eval", query=case["query"], limit=3)
        got = [i["id"] for i in r.body["items"]]
        if ids[case["expect"]] not in got:
            misses.append((case["query"], case["expect"], [k for k, v in ids.items() if v in got]))
    hit_at_3 = 1 - len(misses) / len(data["queries"])
    print(f"hit@3 = {hit_at_3:.3f} over {len(data['queries'])} queries; misses: {misses}")
    assert hit_at_3 >= 0.9, misses
