"""Retrieval quality on the bilingual (uk/en) set in tests/data, through the real handler (API Gateway v2
events), database and embedder: hit@1 and hit@3 for same-language and cross-language queries, before
(every memory embedded as an E5 passage, the service's first behaviour) and after (E5 modes per kind:
short memories in the symmetric query mode, KB chunks as passages; README, "Embeddings").

The switch is made as in production: the rows stored under the old setting are migrated by
``python -m memory_indexer.reembed`` while queries keep being answered.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.fixtures.memory import reset_memory_state

DATA = Path(__file__).resolve().parents[1] / "data" / "memory_retrieval.json"
DAO, AGENT = "microdao:eval", "agent:sofia"
_CYRILLIC = re.compile(r"[а-яіїєґ]", re.IGNORECASE)

# What this test measured (pure figures, printed on every run); the bars below are these, not hopes.
# before (all passages):  same hit@1 22/23, hit@3 23/23; cross hit@1 13/25, hit@3 19/25
# halfway (8 rows re-embedded): every query answered; same 21/23, 22/23; cross 14/25, 22/25
# after (modes per kind):  same hit@1 22/23, hit@3 23/23; cross hit@1 14/25, hit@3 24/25
BAR_AFTER = {"same": (22, 23), "cross": (14, 24)}


def _cyrillic(text: str) -> bool:
    return bool(_CYRILLIC.search(text))


def _memory_text(memory: dict[str, Any]) -> str:
    if memory["kind"] == "kb":
        return memory["markdown"]
    content = memory["content"]
    return content if isinstance(content, str) else " ".join(str(v) for v in content.values())


def store_all(api: Any, data: dict[str, Any]) -> dict[str, str]:
    """Each memory stored through the API; its key -> the id a query item carries (a KB chunk: its document)."""
    ids: dict[str, str] = {}
    for memory in data["memories"]:
        if memory["kind"] == "kb":
            body = {"microdao_id": DAO, "document_id": memory["key"], "title": memory["title"],
                    "markdown": memory["markdown"]}  # fmt: skip
            r = api.call("POST", "/internal/agent-memory/kb/documents", body)
            assert r.status == 200 and r.body["chunks"] == 1, r.body
            ids[memory["key"]] = f"kb:{memory['key']}"
        else:
            r = api.store(agent_id=AGENT, microdao_id=DAO, kind=memory["kind"], content=memory["content"])
            assert r.status == 200, r.body
            ids[memory["key"]] = r.body["id"]
    return ids


def measure(api: Any, data: dict[str, Any], ids: dict[str, str]) -> dict[str, list[int]]:
    """{"same"|"cross": [hit@1, hit@3, queries]} and the misses, every query answered."""
    language = {m["key"]: _cyrillic(_memory_text(m)) for m in data["memories"]}
    out: dict[str, list[int]] = {"same": [0, 0, 0], "cross": [0, 0, 0]}
    for case in data["queries"]:
        r = api.query(agent_id=AGENT, microdao_id=DAO, query=case["query"], limit=3)
        assert r.status == 200, r.body
        got = [f"kb:{i['meta']['document_id']}" if i["kind"] == "kb" else i["id"] for i in r.body["items"]]
        assert len(got) == 3
        group = out["cross" if _cyrillic(case["query"]) != language[case["expect"]] else "same"]
        group[0] += got[:1] == [ids[case["expect"]]]
        group[1] += ids[case["expect"]] in got
        group[2] += 1
    return out


def report(name: str, figures: dict[str, list[int]]) -> str:
    return f"{name}: " + "; ".join(
        f"{group} hit@1 {h1}/{n} ({h1 / n:.2f}) hit@3 {h3}/{n} ({h3 / n:.2f})" for group, (h1, h3, n) in figures.items()
    )


def test_bilingual_recall_before_and_after_e5_modes_per_kind(memory_api, memory_db, monkeypatch, capsys):
    from memory_indexer.reembed import main as reembed

    data = json.loads(DATA.read_text(encoding="utf-8"))
    monkeypatch.setenv("EMBEDDING_QUERY_MODE_KINDS", "")  # before: every memory an E5 passage
    reset_memory_state()
    ids = store_all(memory_api, data)
    assert len(set(ids.values())) == len(data["memories"])
    before = measure(memory_api, data, ids)

    # after: the shipped setting, migrated by the reembed command while search keeps answering
    monkeypatch.delenv("EMBEDDING_QUERY_MODE_KINDS")
    reset_memory_state()
    assert reembed(["--limit", "8", "--batch", "4"]) == 0  # a first part: the table is half migrated
    halfway = measure(memory_api, data, ids)  # every query answered (3 items each), mid-migration
    assert reembed([]) == 0
    after = measure(memory_api, data, ids)
    assert reembed([]) == 0 and "done: 0 rows" in capsys.readouterr().out  # nothing stale is left

    with capsys.disabled():
        print()
        for name, figures in (("before", before), ("halfway", halfway), ("after", after)):
            print(report(name, figures))
    for group, (hit1, hit3) in BAR_AFTER.items():
        assert after[group][0] >= hit1, report("after", after)
        assert after[group][1] >= hit3, report("after", after)
    assert after["cross"][1] > before["cross"][1]
