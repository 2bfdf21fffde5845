import asyncio
import threading
import time

import felix


def test_events_arrive_in_publish_order_with_offsets(client, ns):
    sub = client.subscribe(ns, "orders")
    for i in range(20):
        client.publish(ns, "orders", f"m{i}".encode())
    got = [sub.next(timeout=5) for _ in range(20)]
    assert [e.payload for e in got] == [f"m{i}".encode() for i in range(20)]
    assert [e.offset for e in got] == list(range(20))
    assert all(e.stream == "orders" for e in got)


def test_one_batch_fans_out_to_every_subscriber(broker, client, ns):
    with broker.client() as other:
        subs = [client.subscribe(ns, "fan"), client.subscribe(ns, "fan"), other.subscribe(ns, "fan")]
        client.publish_batch(ns, "fan", [b"a", b"b", b"c"], ack=felix.AckMode.PER_MESSAGE)
        for s in subs:
            assert [s.next(timeout=5).payload for _ in range(3)] == [b"a", b"b", b"c"]
        subs[0].close()
        client.publish(ns, "fan", b"d")
        assert subs[1].next(timeout=5).payload == b"d"
        assert subs[2].next(timeout=5).payload == b"d"
        assert subs[0].next(timeout=10) is None  # closed: ended (at once; 10 s is a net)


def test_iteration_with_timeout_stops_when_idle(client, ns):
    # The idle timeout is long enough for a loaded CI to deliver both events within it, and
    # the stop is bounded from both sides: not before the idle timeout, not long after.
    idle = 2.0
    sub = client.subscribe(ns, "s")
    client.publish_batch(ns, "s", [b"1", b"2"], ack="none")
    got, last = [], time.monotonic()
    for e in sub.iter(timeout=idle):
        got.append(e.payload)
        last = time.monotonic()
    idle_for = time.monotonic() - last
    assert got == [b"1", b"2"]
    assert idle - 0.05 <= idle_for < idle + 20, f"stopped {idle_for:.3f}s after the last event"


def test_next_timeout_raises_felix_timeout(client, ns):
    sub = client.subscribe(ns, "quiet")
    start = time.monotonic()
    try:
        sub.next(timeout=0.1)
    except felix.TimeoutError as e:
        assert e.code == "timeout" and e.retryable
    else:
        raise AssertionError("no timeout")
    waited = time.monotonic() - start
    assert 0.1 - 0.01 <= waited < 20, f"next(timeout=0.1) returned after {waited:.3f}s"


def test_wildcard_and_replay_from_earliest(client, ns):
    client.publish(ns, "eu.orders", b"old")
    replay = client.subscribe(ns, "eu.orders", start="earliest")
    assert replay.next(timeout=5).payload == b"old"
    wild = client.subscribe(ns, "eu.>")
    client.publish(ns, "eu.orders.new", b"x")
    ev = wild.next(timeout=5)
    assert (ev.stream, ev.payload) == ("eu.orders.new", b"x")
    assert replay.try_next() is None


def test_blocking_calls_release_the_gil(client, ns):
    # No speed bound: this thread must do Python work while the reader is blocked in next()
    # (which waits up to 60 s, far past any CI delay, for an event only sent afterwards). A
    # call holding the GIL would let this thread run only once next() had returned.
    sub = client.subscribe(ns, "gil")
    started, done = threading.Event(), threading.Event()
    got = []

    def reader():
        started.set()
        got.append(sub.next(timeout=60))
        done.set()

    t = threading.Thread(target=reader)
    t.start()
    assert started.wait(30)
    time.sleep(0.2)  # lets the reader enter next(); it cannot return before the publish
    ticks = sum(1 for _ in range(100_000))
    assert not done.is_set(), "the reader returned before the event was published"
    client.publish(ns, "gil", b"x")
    t.join(30)
    assert done.is_set() and ticks == 100_000 and got[0].payload == b"x"


def test_publisher_batches_and_flushes(client, ns):
    sub = client.subscribe(ns, "pub")
    with client.publisher(ns, "pub") as p:
        for i in range(100):
            p.send(str(i).encode())
        p.publish(b"last")
    assert p.flush() == 0
    assert [sub.next(timeout=5).payload for _ in range(101)][-1] == b"last"


async def test_async_for_receives_in_order(aclient, ns):
    sub = await aclient.subscribe(ns, "a")
    await aclient.publish_batch(ns, "a", [b"1", b"2", b"3"])
    got = []
    async for ev in sub:
        got.append(ev.payload)
        if len(got) == 3:
            break
    assert got == [b"1", b"2", b"3"]
    async with aclient.publisher(ns, "a") as p:
        await asyncio.gather(*(p.send(b"x") for _ in range(10)))
    assert [(await sub.next(timeout=10)).payload for _ in range(10)] == [b"x"] * 10
    assert [e.payload async for e in sub.iter(timeout=0.3)] == []  # and nothing more
