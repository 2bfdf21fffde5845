package felix_test

// The create, queue and cache operations of a scenario step.

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	felix "github.com/felix-rs/felix/bindings/go"
)

func ms(n uint64) time.Duration { return time.Duration(n) * time.Millisecond }

func (r *run) create(ctx context.Context, s step) error {
	name := map[string]string{"create_stream": "stream", "create_cache": "cache", "create_group": "stream"}[s.op]
	c, ns, names, err := r.names(s, name)
	if err != nil {
		return err
	}
	switch s.op {
	case "create_stream":
		var st felix.StreamSettings
		policy, ok, err := s.str("full_policy")
		if err != nil {
			return err
		}
		if ok {
			p, known := map[string]felix.FullPolicy{"block": felix.FullPolicyBlock, "drop_newest": felix.FullPolicyDropNewest,
				"drop_oldest": felix.FullPolicyDropOldest, "disconnect": felix.FullPolicyDisconnect}[policy]
			if !known {
				return fail("unknown full_policy %q", policy)
			}
			st.FullPolicy = p
		}
		if st.MaxRecords, err = s.uintOr("max_records", 0); err != nil {
			return err
		}
		if st.MaxBytes, err = s.uintOr("max_bytes", 0); err != nil {
			return err
		}
		if st.SubscriberBuffer, err = s.u32("subscriber_buffer", 0); err != nil {
			return err
		}
		return c.CreateStream(ctx, ns, names[0], st)
	case "create_cache":
		maxBytes, err := s.uintOr("max_bytes", 0)
		if err != nil {
			return err
		}
		ttl, err := s.uintOr("default_ttl_ms", 0)
		if err != nil {
			return err
		}
		return c.CreateCache(ctx, ns, names[0], maxBytes, ms(ttl))
	}
	group, err := s.reqStr("group")
	if err != nil {
		return err
	}
	var g felix.GroupSettings
	switch from, _, err := s.str("from"); {
	case err != nil:
		return err
	case from == "latest":
		g.FromLatest = true
	case from != "" && from != "earliest":
		return fail("unknown group start %q", from)
	}
	ack, err := s.uintOr("ack_timeout_ms", 0)
	if err != nil {
		return err
	}
	g.AckTimeout = ms(ack)
	if g.MaxDeliveries, err = s.u32("max_deliveries", 0); err != nil {
		return err
	}
	return c.CreateGroup(ctx, ns, names[0], group, g)
}

// consumer opens the step's consumer; the caller closes it.
func (r *run) consumer(s step) (*felix.Consumer, error) {
	c, ns, names, err := r.names(s, "stream", "group")
	if err != nil {
		return nil, err
	}
	return c.Consumer(ns, names[0], names[1])
}

func (r *run) queuePull(ctx context.Context, s step) error {
	max, err := s.u32("max", 100)
	if err != nil {
		return err
	}
	wait, err := s.uintOr("wait_ms", 0)
	if err != nil {
		return err
	}
	want, hasWant, err := s.array("expect")
	if err != nil {
		return err
	}
	q, err := r.consumer(s)
	if err != nil {
		return err
	}
	defer q.Close()
	got, err := q.Pull(ctx, int(max), ms(wait))
	if err != nil {
		return err
	}
	shown := func() string {
		v := make([]string, len(got))
		for i, m := range got {
			v[i] = fmt.Sprintf("%s@%d attempt %d", show(m.Payload), m.Offset, m.Attempt)
		}
		return "[" + strings.Join(v, ", ") + "]"
	}
	if hasWant {
		if len(want) != len(got) {
			return fail("pulled %d messages, expected %d: %s", len(got), len(want), shown())
		}
		for i, w := range want {
			o, p, err := entry(w, fmt.Sprintf("expect[%d]", i), "payload", "attempt")
			if err != nil {
				return err
			}
			attempt, wantAttempt := "*", uint64(0)
			if a, ok := o["attempt"]; ok {
				if wantAttempt, err = uintOf(a, ""); err != nil {
					return fail("expect[%d].attempt must be an integer", i)
				}
				attempt = fmt.Sprint(wantAttempt)
			}
			m := got[i]
			if !bytes.Equal(p, m.Payload) || (attempt != "*" && wantAttempt != uint64(m.Attempt)) {
				return fail("message %d is %s attempt %d, expected %s attempt %s; pulled %s",
					i, show(m.Payload), m.Attempt, show(p), attempt, shown())
			}
		}
	}
	return r.store(s, func(a string) {
		offs := make([]uint64, len(got))
		for i, m := range got {
			offs[i] = m.Offset
		}
		r.offsets[a] = offs
	})
}

func (r *run) queueSettle(ctx context.Context, s step) error {
	var offsets []uint64
	v, has := s.m["offsets"]
	if has {
		var err error
		if offsets, err = r.offsetRefs(v); err != nil {
			return err
		}
	} else if s.op != "queue_redrive" {
		return fail("%s needs offsets", s.op)
	}
	delay, err := s.uintOr("delay_ms", 0)
	if err != nil {
		return err
	}
	q, err := r.consumer(s)
	if err != nil {
		return err
	}
	defer q.Close()
	var n uint64
	switch s.op {
	case "queue_ack":
		n, err = q.Ack(ctx, offsets...)
	case "queue_nack":
		n, err = q.Nack(ctx, ms(delay), offsets...)
	default:
		if has && len(offsets) == 0 {
			return fail("queue_redrive with an empty offsets list cannot be expressed (none means all here)")
		}
		n, err = q.Redrive(ctx, offsets...)
	}
	if err != nil {
		return err
	}
	if want, ok, err := s.uint("expect_count"); err != nil {
		return err
	} else if ok && want != n {
		return fail("count is %d, expected %d", n, want)
	}
	return nil
}

func (r *run) deadLetters(ctx context.Context, s step) error {
	max, err := s.u32("max", 100)
	if err != nil {
		return err
	}
	want, hasWant, err := s.array("expect")
	if err != nil {
		return err
	}
	q, err := r.consumer(s)
	if err != nil {
		return err
	}
	defer q.Close()
	got, err := q.DeadLetters(ctx, int(max))
	if err != nil {
		return err
	}
	if !hasWant {
		return fail("dead_letters needs expect")
	}
	shown := func() string {
		v := make([]string, len(got))
		for i, d := range got {
			v[i] = fmt.Sprintf("%s@%d attempts %d %s", show(d.Payload), d.Offset, d.Attempts, d.Reason)
		}
		return "[" + strings.Join(v, ", ") + "]"
	}
	if len(want) != len(got) {
		return fail("%d dead letters, expected %d: %s", len(got), len(want), shown())
	}
	for i, w := range want {
		o, p, err := entry(w, fmt.Sprintf("expect[%d]", i), "payload", "attempts", "reason")
		if err != nil {
			return err
		}
		d := got[i]
		ok := bytes.Equal(p, d.Payload)
		if a, has := o["attempts"]; has {
			n, err := uintOf(a, "")
			if err != nil {
				return fail("expect[%d].attempts must be an integer", i)
			}
			ok = ok && n == uint64(d.Attempts)
		}
		if v, has := o["reason"]; has {
			reason, isStr := v.(string)
			if !isStr {
				return fail("expect[%d].reason must be a string", i)
			}
			ok = ok && reason == d.Reason
		}
		if !ok {
			return fail("dead letter %d does not match %v; got %s", i, w, shown())
		}
	}
	return r.store(s, func(a string) {
		offs := make([]uint64, len(got))
		for i, d := range got {
			offs[i] = d.Offset
		}
		r.offsets[a] = offs
	})
}

func (r *run) cachePut(ctx context.Context, s step) error {
	c, ns, names, err := r.names(s, "cache", "key")
	if err != nil {
		return err
	}
	v, ok := s.m["value"]
	if !ok {
		return fail("cache_put needs value")
	}
	value, err := payload(v, "value")
	if err != nil {
		return err
	}
	ttl, err := s.uintOr("ttl_ms", 0)
	if err != nil {
		return err
	}
	ifAbsent, _, err := s.boolean("if_absent")
	if err != nil {
		return err
	}
	var version uint64
	switch iv, hasIV := s.m["if_version"]; {
	case ifAbsent && hasIV:
		return fail("if_absent and if_version are exclusive")
	case ifAbsent:
		version, err = c.CachePutIfAbsent(ctx, ns, names[0], names[1], value, ms(ttl))
	case hasIV:
		want, verr := r.version(iv)
		if verr != nil {
			return verr
		}
		version, err = c.CachePutIfVersion(ctx, ns, names[0], names[1], value, ms(ttl), want)
	default:
		version, err = c.CachePut(ctx, ns, names[0], names[1], value, ms(ttl))
	}
	if err != nil {
		return err
	}
	if err := r.checkVersion(s, version); err != nil {
		return err
	}
	return r.store(s, func(a string) { r.versions[a] = version })
}

func (r *run) cacheGet(ctx context.Context, s step) error {
	c, ns, names, err := r.names(s, "cache", "key")
	if err != nil {
		return err
	}
	wv, hasWant := s.m["expect"]
	want, wantHit, err := payloadOrNull(wv, "expect")
	if err != nil {
		return err
	}
	got, found, err := c.CacheGet(ctx, ns, names[0], names[1])
	if err != nil {
		return err
	}
	if !hasWant {
		return fail("cache_get needs expect (a value, or null for a miss)")
	}
	switch {
	case !wantHit && !found:
		if s.has("expect_version") || s.has("as") {
			return fail("expect_version and as need a hit")
		}
		return nil
	case wantHit && found && bytes.Equal(want, got.Value):
		if err := r.checkVersion(s, got.Version); err != nil {
			return err
		}
		return r.store(s, func(a string) { r.versions[a] = got.Version })
	}
	g, w := "a miss", "a miss"
	if found {
		g = fmt.Sprintf("%s (version %d)", show(got.Value), got.Version)
	}
	if wantHit {
		w = show(want)
	}
	return fail("got %s, expected %s", g, w)
}

func (r *run) cacheDelete(ctx context.Context, s step) error {
	c, ns, names, err := r.names(s, "cache", "key")
	if err != nil {
		return err
	}
	want, hasWant, err := s.boolean("expect_existed")
	if err != nil {
		return err
	}
	existed, err := c.CacheDelete(ctx, ns, names[0], names[1])
	if err != nil {
		return err
	}
	if hasWant && want != existed {
		return fail("delete reported existed = %t, expected %t", existed, want)
	}
	return nil
}

func (r *run) cacheGetMany(ctx context.Context, s step) error {
	c, ns, names, err := r.names(s, "cache")
	if err != nil {
		return err
	}
	ks, err := s.reqArray("keys")
	if err != nil {
		return err
	}
	keys := make([]string, len(ks))
	for i, k := range ks {
		var ok bool
		if keys[i], ok = k.(string); !ok {
			return fail("keys must be strings")
		}
	}
	wv, hasWant, err := s.array("expect")
	if err != nil {
		return err
	}
	type want struct {
		v   []byte
		hit bool
	}
	wants := make([]want, len(wv))
	for i, w := range wv {
		if wants[i].v, wants[i].hit, err = payloadOrNull(w, fmt.Sprintf("expect[%d]", i)); err != nil {
			return err
		}
	}
	if hasWant && len(wants) != len(keys) {
		return fail("expect needs one entry per key")
	}
	got, err := c.CacheGetMany(ctx, ns, names[0], keys)
	if err != nil {
		return err
	}
	if !hasWant {
		return fail("cache_get_many needs expect")
	}
	if len(got) != len(keys) {
		return fail("%d results for %d keys", len(got), len(keys))
	}
	for i, w := range wants {
		g := got[i]
		if w.hit == (g != nil) && (g == nil || bytes.Equal(w.v, g.Value)) {
			continue
		}
		gs, ws := "a miss", "a miss"
		if g != nil {
			gs = show(g.Value)
		}
		if w.hit {
			ws = show(w.v)
		}
		return fail("key %q: got %s, expected %s", keys[i], gs, ws)
	}
	return nil
}

func (r *run) waitUntilCacheMiss(ctx context.Context, s step, own time.Duration) error {
	c, ns, names, err := r.names(s, "cache", "key")
	if err != nil {
		return err
	}
	deadline := time.Now().Add(own)
	for {
		v, found, err := c.CacheGet(ctx, ns, names[0], names[1])
		if err != nil {
			return err
		}
		if !found {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fail("%q still holds %s after %d ms", names[1], show(v.Value), own.Milliseconds())
		}
		time.Sleep(5 * time.Millisecond) // the README's "a few ms apart"
	}
}
