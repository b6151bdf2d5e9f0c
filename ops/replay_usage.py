"""Replay usage events that were logged for reconciliation (the usage queue was unreachable).

When a function cannot queue a usage event it logs one JSON line with ``"reconcile": true`` and the whole
event under ``usage_event`` (``daarion_common.usage.emit``; the ``UsageReconcileAlarm`` fires on them).
This reads such lines and sends each event to the usage queue again:

    python -m ops.replay_usage lines.log                       # a file
    aws logs filter-log-events --log-group-name /aws/lambda/<fn> \\
        --filter-pattern '{ $.reconcile IS TRUE }' --output json | python -m ops.replay_usage -
    python -m ops.replay_usage export.txt --queue-url https://sqs.../UsageQueue --dry-run

Accepted input, mixed freely: raw log lines; lines prefixed by a timestamp (and a log stream), as in a
CloudWatch Logs export to S3 or ``aws logs tail``; JSON records with a ``message`` field holding the log
line (``filter-log-events`` events, one a line or as its whole ``{"events": [...]}`` document). Lines
without ``"reconcile": true`` are skipped. Every event is validated with the event models before it is
sent; an invalid one is reported and not sent.

Replaying is idempotent: the recorder counts an event id once (and applies its correction once), so a
file replayed twice, or a line that was in fact queued, changes nothing. The queue is ``--queue-url`` or
``USAGE_QUEUE_URL``; AWS credentials, region and endpoint come from the usual boto3 environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from pydantic import ValidationError

from daarion_common.events import LlmCallEvent, ToolCallEvent, usage_event_adapter


@dataclass
class Replay:
    events: list[LlmCallEvent | ToolCallEvent] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # why each reconcile line was not usable
    skipped: int = 0  # lines that are not reconcile lines


def _json_objects(line: str) -> Iterator[dict[str, Any]]:
    """The log record(s) in one line of any accepted shape (outermost first, then nested messages)."""
    start = line.find("{")
    if start < 0:
        return
    try:
        obj = json.loads(line[start:])
    except ValueError:
        return
    if not isinstance(obj, dict):
        return
    yield obj
    for event in obj.get("events") or []:  # a whole filter-log-events document on one line
        if isinstance(event, dict) and isinstance(event.get("message"), str):
            yield from _json_objects(event["message"])
    if isinstance(obj.get("message"), str) and "usage_event" not in obj:
        yield from _json_objects(obj["message"])


def parse(lines: Iterable[str]) -> Replay:
    """Pick the reconcile lines out of ``lines`` and validate their events (duplicates kept once)."""
    replay = Replay()
    seen: set[str] = set()
    text = list(lines)
    whole = "".join(text).strip()
    if whole.startswith("{") and '"events"' in whole:  # a pretty-printed filter-log-events document
        try:
            document = json.loads(whole)
        except ValueError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("events"), list):
            text = [json.dumps(document)]
    for number, line in enumerate(text, 1):
        records = [r for r in _json_objects(line) if r.get("reconcile") is True and "usage_event" in r]
        if not records:
            replay.skipped += 1
            continue
        for record in records:
            try:
                event = usage_event_adapter.validate_python(record["usage_event"])
            except ValidationError as exc:
                replay.invalid.append(f"line {number}: {exc.errors(include_url=False, include_input=False)}")
                continue
            if event.event_id not in seen:
                seen.add(event.event_id)
                replay.events.append(event)
    return replay


def send(sqs: Any, queue_url: str, events: list[LlmCallEvent | ToolCallEvent]) -> list[str]:
    """Send ``events`` as ``daarion_common.usage.emit`` does (same body and attribute); returns failed ids."""
    failed: list[str] = []
    for start in range(0, len(events), 10):
        chunk = events[start : start + 10]
        result = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": e.model_dump_json(),
                    "MessageAttributes": {"type": {"DataType": "String", "StringValue": e.type}},
                }
                for i, e in enumerate(chunk)
            ],
        )
        failed += [chunk[int(f["Id"])].event_id for f in result.get("Failed", [])]
    return failed


def main(argv: list[str] | None = None, stdin: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.replay_usage", description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default="-", help="log lines to read; - (default) reads stdin")
    parser.add_argument("--queue-url", default=os.environ.get("USAGE_QUEUE_URL"), help="default: USAGE_QUEUE_URL")
    parser.add_argument("--dry-run", action="store_true", help="parse and validate, send nothing")
    args = parser.parse_args(argv)

    if args.file == "-":
        replay = parse(stdin or sys.stdin)
    else:
        with open(args.file, encoding="utf-8") as f:
            replay = parse(f)
    for problem in replay.invalid:
        print(f"invalid usage event, not sent: {problem}", file=sys.stderr)
    counts = f"{len(replay.events)} usage event(s) to replay, {len(replay.invalid)} invalid"
    print(f"{counts}, {replay.skipped} other line(s)")
    if args.dry_run or not replay.events:
        return 1 if replay.invalid else 0
    if not args.queue_url:
        parser.error("no queue: pass --queue-url or set USAGE_QUEUE_URL")
    import boto3

    failed = send(boto3.client("sqs"), args.queue_url, replay.events)
    print(f"sent {len(replay.events) - len(failed)}, failed {len(failed)}")
    for event_id in failed:
        print(f"not sent: {event_id}", file=sys.stderr)
    return 1 if failed or replay.invalid else 0


if __name__ == "__main__":
    sys.exit(main())
