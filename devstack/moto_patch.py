"""A small patch to moto's DynamoDB ``TransactWriteItems``: undo per item, not a copy of every table.

moto 5.2.5 protects a transaction by ``copy.deepcopy``-ing the WHOLE table once for every item of the
transaction (``DynamoDBBackend.transact_write_items``), and on failure swaps the copy in. The usage
recorder writes four items per event in one transaction, so each event deep-copies the usage table
four times: the cost of an event grows with every event before it, and a day of local use makes
moto's server slower and larger without bound (measured in the README and `bench/soak.py`).

AWS's semantics only need the items the transaction touches to come back on failure. This patch:

1. records, before the original runs, the current version of every item the transaction names
   (``Put`` by its key attributes, ``Update``/``Delete``/``ConditionCheck`` by ``Key``);
2. runs moto's own ``transact_write_items`` with its whole-table snapshot turned into a no-op
   (the module's ``copy`` is replaced by a shim whose ``deepcopy`` returns a ``Table`` as is and
   copies everything else as before);
3. if the original raises (cancelled transaction, validation error), puts back exactly those items,
   then re-raises the same error.

Third, moto's instance tracker keeps every model object ever created: ``BaseModel.__new__`` appends each
instance (every DynamoDB ``Item`` — including the copies ``UpdateItem`` and transactions make —, every
SQS message, ...) to a class-level list that only moto's dashboard reads. On a long-running local
server that list is a leak: about 19 KB per usage event, measured with tracemalloc; the server's memory
grew ~5 MB a minute under the soak's load. Here the lists become weak sets: the dashboard still lists
what is alive, and what a table or queue no longer holds is freed.

The same change, written inline, is what could be offered upstream. ``apply()`` refuses to patch a
moto whose code no longer has the whole-table snapshot, so an upgrade cannot silently drop it.

Second, DynamoDB requests are served one at a time. moto's server is threaded and its conditional
writes check then write without a lock, so two concurrent ``UpdateItem`` calls can both pass a
condition that only one may pass in DynamoDB (seen: 11 of 50 concurrent calls admitted by a limit of
10 once the local stack ran functions in parallel). One lock around each DynamoDB request restores
the per-item atomicity DynamoDB guarantees; requests are short, so the cost is small.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import threading
import weakref
from typing import Any

_APPLIED = False
_DYNAMODB_LOCK = threading.RLock()


class _TableSnapshotsAreFree:
    """Stands in for the ``copy`` module inside ``moto.dynamodb.models``."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def deepcopy(self, obj: Any, memo: dict[int, Any] | None = None) -> Any:
        if isinstance(obj, self._table_type):
            return obj  # the transaction's undo log (below) restores what it touched instead
        return copy.deepcopy(obj, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _item_key(table: Any, op_type: str, op: dict[str, Any]) -> tuple[Any, Any] | None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    attrs = op.get("Item") if op_type == "Put" else op.get("Key")
    if not isinstance(attrs, dict) or table.hash_key_attr not in attrs:
        return None
    hash_key = DynamoType(attrs[table.hash_key_attr])
    if table.range_key_attr is None:
        return hash_key, None
    if table.range_key_attr not in attrs:
        return None
    return hash_key, DynamoType(attrs[table.range_key_attr])


def undo_log(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any, Any]]:
    """(table, hash key, range key, deep copy of the item or None) for every item the transaction names."""
    log: list[tuple[Any, Any, Any, Any]] = []
    for entry in transact_items:
        if len(entry) != 1:
            continue  # moto rejects it before writing anything
        ((op_type, op),) = entry.items()
        try:
            table = backend.get_table(op["TableName"])
            key = _item_key(table, op_type, op)
        except Exception:  # unknown table or malformed key: moto reports it and writes nothing for it
            key = None
        if key is None:
            continue
        current = table.get_item(*key)
        log.append((table, key[0], key[1], copy.deepcopy(current) if current is not None else None))
    return log


def restore(log: list[tuple[Any, Any, Any, Any]]) -> None:
    """Put every logged item back as it was (in reverse, so the first version of an item wins)."""
    for table, hash_key, range_key, original in reversed(log):
        if original is None:
            table.delete_item(hash_key, range_key)
        elif range_key is None:
            table.items[hash_key] = original
        else:
            table.items[hash_key][range_key] = original


class _Tracked:
    """moto's ``instances_tracked`` without keeping the instances alive: ``append`` (what moto calls) keeps
    a weak reference, dropped when the instance is freed; iterating gives the live instances. (Not a
    ``WeakSet``: moto's models define ``__eq__`` without ``__hash__``.)"""

    def __init__(self, existing: Any = ()) -> None:
        self._refs: dict[int, weakref.ref[Any]] = {}
        for instance in existing:
            self.append(instance)

    def _forget(self, key: int) -> None:
        self._refs.pop(key, None)

    def append(self, instance: Any) -> None:
        key = id(instance)
        with contextlib.suppress(TypeError):  # a model without weak references: not listed, never kept
            self._refs[key] = weakref.ref(instance, lambda _ref, key=key: self._forget(key))

    def __iter__(self) -> Any:
        return (obj for obj in (ref() for ref in list(self._refs.values())) if obj is not None)

    def __len__(self) -> int:
        return len(self._refs)


def _track_weakly() -> None:
    from moto.core.common_models import BaseModel

    original_new = BaseModel.__new__

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(cls.__dict__.get("instances_tracked"), _Tracked):  # also after moto's reset
            cls.instances_tracked = _Tracked(cls.__dict__.get("instances_tracked") or ())  # type: ignore[attr-defined]
        return original_new(cls, *args, **kwargs)

    BaseModel.__new__ = __new__  # type: ignore[method-assign, assignment]


def apply() -> None:
    """Patch moto's DynamoDB backend in this process (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    original = models.DynamoDBBackend.transact_write_items
    source = inspect.getsource(original)
    if "copy.deepcopy(" not in source or "original_table_state" not in source:
        raise RuntimeError(
            "moto's transact_write_items no longer snapshots whole tables; review devstack/moto_patch.py"
        )
    models.copy = _TableSnapshotsAreFree(Table)  # type: ignore[assignment]

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        log = undo_log(self, transact_items) if len(transact_items) <= 100 else []
        try:
            original(self, transact_items)
        except BaseException:
            restore(log)
            raise

    transact_write_items.__doc__ = original.__doc__
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]

    from moto.dynamodb.responses import DynamoHandler

    call_action = DynamoHandler.call_action

    def serialised_call_action(self: Any) -> Any:
        with _DYNAMODB_LOCK:
            return call_action(self)

    DynamoHandler.call_action = serialised_call_action  # type: ignore[method-assign]
    _track_weakly()
    _APPLIED = True
