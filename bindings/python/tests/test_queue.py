import felix


def test_pull_ack_and_nack_redelivers(client, ns):
    client.publish_batch(ns, "jobs", [b"j1", b"j2", b"j3"])
    c = client.consumer(ns, "jobs", "workers")
    first = c.pull(10, wait=5)
    assert [(m.payload, m.attempt) for m in first] == [(b"j1", 1), (b"j2", 1), (b"j3", 1)]
    assert c.ack(first[:2]) == 2
    assert c.ack(first[0].offset) == 0
    assert c.nack(first[2], delay=0) == 1
    again = c.pull(10, wait=5)
    assert [(m.payload, m.attempt) for m in again] == [(b"j3", 2)]
    assert c.ack(again) == 1
    assert c.pull(10, wait=0) == []


def test_dead_letters_redrive_and_discard(client, ns):
    client.create_group(ns, "dl", "g", max_deliveries=1)
    client.publish(ns, "dl", b"poison")
    c = client.consumer(ns, "dl", "g")
    [m] = c.pull(1, wait=5)
    assert c.nack([m.offset]) == 1
    [d] = c.dead_letters()
    assert (d.payload, d.attempts, d.reason) == (b"poison", 1, "max_deliveries")
    assert c.redrive() == 1
    [m2] = c.pull(1, wait=5)
    assert (m2.payload, m2.attempt) == (b"poison", 1)
    c.nack(m2)
    assert c.discard([m2.offset]) == 1
    assert c.dead_letters() == []


def test_lease_extend_and_iteration(client, ns):
    client.publish_batch(ns, "it", [b"a", b"b"])
    c = client.consumer(ns, "it", "g")
    got = list(c.messages(batch=10, wait=0.2, idle_timeout=0.5))
    assert [m.payload for m in got] == [b"a", b"b"]
    assert c.extend(got, by=60) == 2
    assert c.ack(got) == 2


async def test_async_consumer(aclient, ns):
    await aclient.publish_batch(ns, "aj", [b"1", b"2"])
    c = aclient.consumer(ns, "aj", "g")
    seen = []
    async for m in c:
        seen.append(m.payload)
        assert await c.ack(m) == 1
        if len(seen) == 2:
            break
    assert seen == [b"1", b"2"]
    assert await c.dead_letters() == []


def test_zero_max_is_invalid(client, ns):
    c = client.consumer(ns, "z", "g")
    try:
        c.pull(0)
    except felix.InvalidArgumentError as e:
        assert e.code == "invalid_argument"
    else:
        raise AssertionError("pull(0) accepted")
