"""Knowledge-base chunking and content rendering (pure functions)."""

from __future__ import annotations

from itertools import pairwise

from daarion_common.memory.kb import chunk_document
from daarion_common.memory.text import content_hash, render
from memory.retrieval import text_query


def test_chunks_follow_headings_and_carry_their_path():
    text = (
        "# Guide\n\nIntro.\n\n## Payments\n\nPaid monthly.\n\n### Taxes\n\nYou file them.\n\n## Security\n\nBe careful."
    )
    chunks = chunk_document(text)
    assert [(c.headings, c.body) for c in chunks] == [
        (("Guide",), "Intro."),
        (("Guide", "Payments"), "Paid monthly."),
        (("Guide", "Payments", "Taxes"), "You file them."),
        (("Guide", "Security"), "Be careful."),
    ]
    assert chunks[2].text("Handbook") == "Handbook > Guide > Payments > Taxes\n\nYou file them."


def test_long_sections_are_split_with_overlap_and_bounded_size():
    paragraphs = [f"Paragraph {i} " + "word " * 60 for i in range(12)]
    chunks = chunk_document("# Long\n\n" + "\n\n".join(paragraphs), max_chars=600, overlap=120)
    assert len(chunks) > 3
    assert all(len(c.body) <= 600 for c in chunks)
    for previous, current in pairwise(chunks):
        tail = previous.body[-60:].strip()
        assert tail.split()[-1] in current.body[:200]  # the next chunk starts with the previous one's tail
    joined = " ".join(c.body for c in chunks)
    assert all(f"Paragraph {i} " in joined for i in range(12))


def test_headings_inside_code_fences_are_not_headings():
    chunks = chunk_document("# Real\n\n```\n# not a heading\n```\n\ntext")
    assert len(chunks) == 1 and "# not a heading" in chunks[0].body


def test_a_huge_sentence_is_cut():
    chunks = chunk_document("x" * 5000, max_chars=1000, overlap=100)
    assert all(len(c.body) <= 1000 for c in chunks) and sum(len(c.body) for c in chunks) >= 5000


def test_conversation_objects_render_as_readable_text():
    text = render({"user_message": "Hi", "agent_reply": "Hello!", "timestamp": "2026-01-01", "mood": "good"})
    assert text == "User: Hi\nAgent: Hello!\nMood: good"
    assert render("  plain  ") == "plain"


def test_content_hash_ignores_case_and_spacing():
    assert content_hash("Hello   World") == content_hash(" hello world ")
    assert content_hash("Hello") != content_hash("Hello!")


def test_keyword_query_drops_stop_words_and_prefixes_long_words():
    assert text_query("What is the budget for the hackathon?") == "'budg':* | 'hackath':*"
    assert text_query("що з бюджетом") == "'бюджет':*"
    assert text_query("the a of") is None
