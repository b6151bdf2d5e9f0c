"""The container pool behind each local function (devstack/invoker.py), with stand-in containers: a new
container per concurrent invocation up to the cap, waiting beyond it, Lambda's throttle at reserved
concurrency, and dead containers replaced."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from devstack.invoker import Container, FunctionPool, Throttled


def _spawn(name: str, number: int) -> Container:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    return Container(number, proc, f"http://127.0.0.1:0/{number}")


@pytest.fixture
def pools():
    made: list[FunctionPool] = []

    def make(**kw):
        pool = FunctionPool("F", _spawn, timeout_s=5, log=lambda _: None, **kw)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.stop_all()


def test_concurrent_invocations_get_new_containers_up_to_the_cap_then_wait(pools):
    pool = pools(max_containers=2, reserved=None)
    first, cold1 = pool.acquire(time.monotonic() + 5)
    second, cold2 = pool.acquire(time.monotonic() + 5)
    assert cold1 and cold2 and first.number != second.number
    with pytest.raises(TimeoutError):
        pool.acquire(time.monotonic() + 0.3)  # at the cap: waits, never a third container, never an error early
    threading.Timer(0.2, pool.release, args=(first,)).start()
    third, cold3 = pool.acquire(time.monotonic() + 5)
    assert third is first and not cold3  # the freed warm container, no cold start
    assert pool.stats()["cold_starts"] == 2


def test_reserved_concurrency_throttles_instead_of_waiting(pools):
    pool = pools(max_containers=4, reserved=1)
    pool.acquire(time.monotonic() + 5)
    with pytest.raises(Throttled):
        pool.acquire(time.monotonic() + 5)
    assert pool.stats()["throttled"] == 1


def test_a_dead_container_is_reaped_and_the_next_invocation_cold_starts(pools):
    pool = pools(max_containers=2, reserved=None)
    container, _ = pool.acquire(time.monotonic() + 5)
    pool.release(container)
    container.proc.kill()
    container.proc.wait()
    pool.reap_dead()
    fresh, cold = pool.acquire(time.monotonic() + 5)
    assert cold and fresh.number != container.number
    stats = pool.stats()
    assert stats["crashed"] == 1 and stats["cold_starts"] == 2 and stats["containers"] == 1


def test_stop_all_stops_every_container_ever_started(pools):
    pool = pools(max_containers=3, reserved=None)
    held = [pool.acquire(time.monotonic() + 5)[0] for _ in range(3)]
    pool.stop_all()
    assert all(c.proc.poll() is not None for c in held)
