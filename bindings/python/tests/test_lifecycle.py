"""Reconnect after a broker restart, cancellation, fork safety."""

import asyncio
import os
import time

import pytest

import felix
from conftest import wait_until


def _retry(fn, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except felix.FelixError as e:
            if not e.retryable or time.monotonic() > deadline:
                raise


def test_client_reconnects_after_broker_restart(own_broker, ns):
    with own_broker.client(request_timeout=2.0) as c:
        sub = c.subscribe(ns, "r")
        c.cache_put(ns, "c", "k", b"before")
        own_broker.restart()
        # The restarted broker is in memory: the key is gone, the client works again.
        assert _retry(lambda: c.cache_get(ns, "c", "k")) is None
        c.cache_put(ns, "c", "k", b"after")
        assert c.cache_get(ns, "c", "k").value == b"after"
        # The subscription resumed on its own: a new event reaches it. Only the 0.2 s timeout
        # means "not yet": a subscription that ended (None) fails at once, with that reason,
        # not as a timeout 20 s later.
        def delivered():
            c.publish(ns, "r", b"x")
            try:
                ev = sub.next(timeout=0.2)
            except felix.TimeoutError:
                return None
            assert ev is not None, "the subscription ended instead of resuming"
            return ev
        assert wait_until(delivered, 20, "the resumed subscription").payload == b"x"


def test_broker_restart_is_reported_as_a_reset_gap(own_broker, ns):
    with own_broker.client(request_timeout=2.0) as c:
        sub = c.subscribe(ns, "g")
        for i in range(2):
            c.publish(ns, "g", f"old-{i}".encode())
        assert [sub.next(timeout=5).offset for _ in range(2)] == [0, 1]
        own_broker.restart()
        _retry(lambda: c.publish(ns, "g", b"new-0"))
        ev = sub.next(timeout=20)
        assert (ev.offset, ev.payload) == (0, b"new-0")
        # Taken right after the new log's first event: the reset before it.
        gaps = sub.take_gaps()
        assert [(g.stream, g.from_offset, g.to_offset, g.reset) for g in gaps] == [("g", 2, 0, True)]
        assert sub.take_gaps() == []


async def test_async_client_reconnects(own_broker, ns):
    c = await own_broker.aclient(request_timeout=2.0)
    try:
        await c.cache_put(ns, "c", "k", b"v")
        own_broker.restart()
        deadline = time.monotonic() + 20
        while True:
            try:
                await c.cache_put(ns, "c", "k", b"w")
                break
            except felix.FelixError as e:
                assert e.retryable and time.monotonic() < deadline
        assert (await c.cache_get(ns, "c", "k")).value == b"w"
    finally:
        await c.close()


async def test_cancelling_a_task_cancels_the_core_operation(aclient, ns):
    consumer = aclient.consumer(ns, "cq", "g")
    task = asyncio.ensure_future(consumer.pull(1, wait=30))

    async def pending_becomes(n: int) -> None:
        # Polled with a deadline well below the pull's 30 s wait: a pull left running fails.
        deadline = time.monotonic() + 10
        while aclient._c.pending_count() != n:
            assert time.monotonic() < deadline, f"pending_count {aclient._c.pending_count()}, want {n}"
            await asyncio.sleep(0.01)

    await pending_becomes(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await pending_becomes(0)
    sub = await aclient.subscribe(ns, "cs")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(sub.next(), 0.2)
    await pending_becomes(0)
    await aclient.publish(ns, "cs", b"still works")
    assert (await sub.next(timeout=5)).payload == b"still works"


async def test_many_concurrent_calls_complete(aclient, ns):
    await aclient.cache_put(ns, "c", "k", b"v")
    got = await asyncio.gather(*(aclient.cache_get(ns, "c", "k") for _ in range(500)))
    assert all(g.value == b"v" for g in got)


async def test_close_fails_later_calls(broker):
    c = await broker.aclient()
    await c.close()
    with pytest.raises(felix.ClosedError):
        await c.ping()


def _wait_child(pid: int, timeout: float = 20.0) -> int:
    """The child's exit code; kills it and fails if it has not exited by the deadline (a child
    that hangs must fail the test, not the whole run)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"forked child still running after {timeout}s")
        time.sleep(0.01)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_client_used_after_fork_raises_forked_error(broker, ns):
    with broker.client() as c:
        c.ping()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                try:
                    c.ping()
                    code = 2
                except felix.ForkedError as e:
                    assert "fork" in str(e) and e.code == "closed"
                    with broker.client() as fresh:  # a new client works in the child
                        fresh.publish(ns, "forked", b"from child")
                    code = 0
            finally:
                os._exit(code)
        assert _wait_child(pid) == 0
        c.ping()  # the parent's client is unaffected


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_children_forked_right_after_a_call_get_working_clients(broker, ns):
    # Right after a call the runtime's background thread is taking the runtime back. A fork
    # then must leave the child no lock it cannot take: with a lock library that keeps
    # parked threads in a process-wide table, one such child in four hung making its client.
    with broker.client() as c:
        for i in range(12):
            c.ping()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    with broker.client(connect_timeout=5.0) as fresh:
                        fresh.publish(ns, "forked", str(i).encode())
                    code = 0
                finally:
                    os._exit(code)
            assert _wait_child(pid) == 0, f"child {i}"
        c.ping()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_parent_and_child_connections_do_not_collide(broker, ns):
    # A child inherits its parent's userspace RNG. Its connection, left open by an abrupt
    # exit, stays known to the broker for a while; the parent's next connection must not
    # reuse its connection ID (the broker routes a handshake by that ID alone).
    with broker.client() as c:
        c.ping()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            orphan = broker.client()
            orphan.publish(ns, "forked", b"from child")
            code = 0
        finally:
            os._exit(code)  # no close: the broker keeps the connection until its idle timeout
    assert _wait_child(pid) == 0
    with broker.client(connect_timeout=2.0) as fresh:
        fresh.ping()
