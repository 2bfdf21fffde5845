package felix_test

// The operations of a scenario step (README "Steps"), through this package's API.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	felix "github.com/felix-rs/felix/bindings/go"
)

func (r *run) exec(ctx context.Context, s step, own time.Duration, expectError bool) error {
	switch s.op {
	case "connect":
		return r.connect(ctx, s)
	case "close":
		return r.close(s)
	case "publish":
		return r.publish(ctx, s)
	case "subscribe":
		return r.subscribe(ctx, s)
	case "expect_events":
		return r.expectEvents(ctx, s, own, expectError)
	case "expect_no_event":
		return r.expectNoEvent(ctx, s)
	case "create_stream", "create_cache", "create_group":
		return r.create(ctx, s)
	case "queue_pull":
		return r.queuePull(ctx, s)
	case "queue_ack", "queue_nack", "queue_redrive":
		return r.queueSettle(ctx, s)
	case "dead_letters":
		return r.deadLetters(ctx, s)
	case "cache_put":
		return r.cachePut(ctx, s)
	case "cache_get":
		return r.cacheGet(ctx, s)
	case "cache_delete":
		return r.cacheDelete(ctx, s)
	case "cache_get_many":
		return r.cacheGetMany(ctx, s)
	case "wait_until_cache_miss":
		return r.waitUntilCacheMiss(ctx, s, own)
	}
	return fail("unknown op %q", s.op)
}

func (r *run) client(s step) (*felix.Client, error) {
	alias, err := s.strOr("client", "default")
	if err != nil {
		return nil, err
	}
	c, ok := r.clients[alias]
	if !ok {
		return nil, fail("unknown client alias %q (connect it first)", alias)
	}
	return c, nil
}

func (r *run) namespace(s step) (string, error) { return s.strOr("namespace", r.ns) }

// names reads the client, the namespace and the required string keys of a step.
func (r *run) names(s step, keys ...string) (*felix.Client, string, []string, error) {
	c, err := r.client(s)
	if err != nil {
		return nil, "", nil, err
	}
	ns, err := r.namespace(s)
	if err != nil {
		return nil, "", nil, err
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		if out[i], err = s.reqStr(k); err != nil {
			return nil, "", nil, err
		}
	}
	return c, ns, out, nil
}

func (r *run) sub(s step) (*felix.Subscription, error) {
	alias, err := s.reqStr("subscription")
	if err != nil {
		return nil, err
	}
	sub, ok := r.subs[alias]
	if !ok {
		return nil, fail("unknown subscription alias %q", alias)
	}
	return sub, nil
}

// offsetRefs resolves an offset reference (README "Offset references").
func (r *run) offsetRefs(v any) ([]uint64, error) {
	one := func(item any) ([]uint64, error) {
		if _, isNum := item.(interface{ Int64() (int64, error) }); isNum {
			n, err := uintOf(item, "an offset")
			return []uint64{n}, err
		}
		s, ok := item.(string)
		if !ok {
			return nil, fail(`an offset reference is an alias, "alias[i]" or an integer`)
		}
		alias, index := s, -1
		if open := strings.IndexByte(s, '['); open >= 0 && strings.HasSuffix(s, "]") {
			i, err := strconv.Atoi(s[open+1 : len(s)-1])
			if err != nil || i < 0 {
				return nil, fail("bad offset reference %q", s)
			}
			alias, index = s[:open], i
		}
		list, ok := r.offsets[alias]
		if !ok {
			return nil, fail("unknown offset alias %q", alias)
		}
		if index < 0 {
			return list, nil
		}
		if index >= len(list) {
			return nil, fail("offset reference %q: alias %q holds %d offsets", s, alias, len(list))
		}
		return []uint64{list[index]}, nil
	}
	switch t := v.(type) {
	case string:
		return one(t)
	case []any:
		out := []uint64{}
		for _, item := range t {
			o, err := one(item)
			if err != nil {
				return nil, err
			}
			out = append(out, o...)
		}
		return out, nil
	}
	return nil, fail("offsets must be an offset reference or an array of them")
}

func (r *run) version(v any) (uint64, error) {
	if a, ok := v.(string); ok {
		n, ok := r.versions[a]
		if !ok {
			return 0, fail("unknown version alias %q", a)
		}
		return n, nil
	}
	n, err := uintOf(v, "a version reference")
	if err != nil {
		return 0, fail("a version reference is an alias or an integer")
	}
	return n, nil
}

func (r *run) checkVersion(s step, got uint64) error {
	v, ok := s.m["expect_version"]
	if !ok {
		return nil
	}
	rel, isObj := v.(map[string]any)
	if !isObj || len(rel) == 0 {
		return fail("expect_version must be an object with eq, ne, gt and/or lt")
	}
	for _, k := range sortedKeys(rel) {
		want, err := r.version(rel[k])
		if err != nil {
			return err
		}
		var holds bool
		switch k {
		case "eq":
			holds = got == want
		case "ne":
			holds = got != want
		case "gt":
			holds = got > want
		case "lt":
			holds = got < want
		default:
			return fail("unknown version relation %q", k)
		}
		if !holds {
			name, _ := rel[k].(string)
			if name == "" {
				name = "literal"
			}
			return fail("version %d is not %s %d (%s)", got, k, want, name)
		}
	}
	return nil
}

func (r *run) store(s step, f func(alias string)) error {
	alias, ok, err := s.str("as")
	if ok {
		f(alias)
	}
	return err
}

func (r *run) connect(ctx context.Context, s step) error {
	alias, err := s.strOr("as", "default")
	if err != nil {
		return err
	}
	o := r.broker.options()
	if o.Tenant, err = s.strOr("tenant", "default"); err != nil {
		return err
	}
	if o.Token, err = s.strOr("token", ""); err != nil {
		return err
	}
	o.RequestTimeout = 5 * time.Second // as the reference runner's clients
	c, err := felix.Connect(ctx, o)
	if err != nil {
		return err
	}
	if old, ok := r.clients[alias]; ok {
		old.Close()
	}
	r.clients[alias] = c
	return nil
}

func (r *run) close(s step) error {
	client, hasC, err := s.str("client")
	if err != nil {
		return err
	}
	alias, hasS, err := s.str("subscription")
	if err != nil {
		return err
	}
	switch {
	case hasC && !hasS:
		c, ok := r.clients[client]
		if !ok {
			return fail("unknown client alias %q (connect it first)", client)
		}
		return c.Close()
	case hasS && !hasC:
		sub, ok := r.subs[alias]
		if !ok {
			return fail("unknown subscription alias %q", alias)
		}
		delete(r.subs, alias)
		return sub.Close()
	}
	return fail("close needs exactly one of client, subscription")
}

func (r *run) publish(ctx context.Context, s step) error {
	c, ns, names, err := r.names(s, "stream")
	if err != nil {
		return err
	}
	one, hasOne := s.m["payload"]
	many, hasMany, err := s.array("payloads")
	if err != nil {
		return err
	}
	var ps [][]byte
	switch {
	case hasOne && !hasMany:
		p, err := payload(one, "payload")
		if err != nil {
			return err
		}
		ps = [][]byte{p}
	case hasMany && !hasOne:
		ps = [][]byte{}
		for i, v := range many {
			p, err := payload(v, fmt.Sprintf("payloads[%d]", i))
			if err != nil {
				return err
			}
			ps = append(ps, p)
		}
	default:
		return fail("publish needs exactly one of payload, payloads")
	}
	mode, err := s.strOr("ack", "per_batch")
	if err != nil {
		return err
	}
	ack, ok := map[string]felix.AckMode{"per_batch": felix.AckPerBatch, "per_message": felix.AckPerMessage, "none": felix.AckNone}[mode]
	if !ok {
		return fail("unknown ack mode %q", mode)
	}
	return c.PublishBatch(ctx, ns, names[0], ps, ack)
}

func (r *run) subscribe(ctx context.Context, s step) error {
	c, ns, names, err := r.names(s, "as", "stream")
	if err != nil {
		return err
	}
	start := felix.StartLatest
	switch f := s.m["from"].(type) {
	case nil:
		if s.has("from") {
			return fail(`from must be "latest", "earliest" or an offset`)
		}
	case string:
		switch f {
		case "latest":
		case "earliest":
			start = felix.StartEarliest
		default:
			return fail(`from must be "latest", "earliest" or an offset`)
		}
	default:
		o, err := uintOf(f, "from")
		if err != nil {
			return fail(`from must be "latest", "earliest" or an offset`)
		}
		start = felix.StartAt(o)
	}
	sub, err := c.Subscribe(ctx, ns, names[1], start)
	if err != nil {
		return err
	}
	if old, ok := r.subs[names[0]]; ok {
		old.Close()
	}
	r.subs[names[0]] = sub
	return nil
}

// wantEvent is an expected event of expect_events.
type wantEvent struct {
	payload   []byte
	stream    string
	hasStream bool
	offset    uint64
	hasOffset bool
}

func (w wantEvent) matches(e felix.Event) bool {
	return bytes.Equal(w.payload, e.Payload) && (!w.hasStream || w.stream == e.Stream) &&
		(!w.hasOffset || (e.HasOffset && e.Offset == w.offset))
}

func (w wantEvent) show() string {
	stream, offset := "*", "*"
	if w.hasStream {
		stream = w.stream
	}
	if w.hasOffset {
		offset = strconv.FormatUint(w.offset, 10)
	}
	return fmt.Sprintf("%s@%s %s", stream, offset, show(w.payload))
}

func wantEvents(s step) ([]wantEvent, error) {
	ps, hasP, err := s.array("payloads")
	if err != nil {
		return nil, err
	}
	es, hasE, err := s.array("events")
	if err != nil {
		return nil, err
	}
	var want []wantEvent
	switch {
	case hasP && !hasE:
		for i, p := range ps {
			b, err := payload(p, fmt.Sprintf("payloads[%d]", i))
			if err != nil {
				return nil, err
			}
			want = append(want, wantEvent{payload: b})
		}
	case hasE && !hasP:
		for i, e := range es {
			what := fmt.Sprintf("events[%d]", i)
			o, b, err := entry(e, what, "payload", "stream", "offset")
			if err != nil {
				return nil, err
			}
			w := wantEvent{payload: b}
			if v, ok := o["stream"]; ok {
				if w.stream, ok = v.(string); !ok {
					return nil, fail("%s.stream must be a string", what)
				}
				w.hasStream = true
			}
			if v, ok := o["offset"]; ok {
				if w.offset, err = uintOf(v, what+".offset"); err != nil {
					return nil, fail("%s.offset must be an integer", what)
				}
				w.hasOffset = true
			}
			want = append(want, w)
		}
	default:
		return nil, fail("expect_events needs exactly one of payloads, events")
	}
	return want, nil
}

// timedOut tells a Next that ran out of its deadline from an error of the subscription.
func timedOut(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

func (r *run) expectEvents(ctx context.Context, s step, own time.Duration, expectError bool) error {
	want, err := wantEvents(s)
	if err != nil {
		return err
	}
	anyOrder, _, err := s.boolean("any_order")
	if err != nil {
		return err
	}
	sub, err := r.sub(s)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, own)
	defer cancel()
	var got []felix.Event
	progress := func() string {
		seen := make([]string, len(got))
		for i, e := range got {
			seen[i] = showEvent(e)
		}
		return fmt.Sprintf("%d of %d events received [%s]", len(got), len(want), strings.Join(seen, ", "))
	}
	for len(got) < len(want) {
		ev, err := sub.Next(wctx)
		if timedOut(err) {
			return fail("timed out after %d ms: %s", own.Milliseconds(), progress())
		}
		var fe *felix.Error
		if errors.As(err, &fe) {
			return fail("subscription error (%s) %s: %s", fe.Code, fe.Message, progress())
		} else if err != nil {
			return fail("subscription error %v: %s", err, progress())
		}
		if !anyOrder && !want[len(got)].matches(ev) {
			return fail("event %d is %s, expected %s", len(got), showEvent(ev), want[len(got)].show())
		}
		got = append(got, ev)
	}
	if anyOrder {
		used := make([]bool, len(want))
		for _, ev := range got {
			found := false
			for i := range want {
				if !used[i] && want[i].matches(ev) {
					used[i], found = true, true
					break
				}
			}
			if !found {
				var missing []string
				for i := range want {
					if !used[i] {
						missing = append(missing, want[i].show())
					}
				}
				return fail("unexpected event %s (still expected: %s)", showEvent(ev), strings.Join(missing, ", "))
			}
		}
	}
	if !expectError {
		return nil
	}
	ev, err := sub.Next(wctx)
	switch {
	case timedOut(err):
		return fail("timed out after %d ms waiting for the error", own.Milliseconds())
	case err != nil:
		return err // compared with expect_error by the step
	}
	return fail("expected an error, got event %s", showEvent(ev))
}

func (r *run) expectNoEvent(ctx context.Context, s step) error {
	within, ok, err := s.uint("within_ms")
	if err == nil && !ok {
		err = fail("expect_no_event needs within_ms")
	}
	if err != nil {
		return err
	}
	if within == 0 || within > maxNoEventMs {
		return fail("within_ms must be in 1..=%d", maxNoEventMs)
	}
	sub, err := r.sub(s)
	if err != nil {
		return err
	}
	// Next returns an event already buffered at once; none is lost when the wait runs out.
	wctx, cancel := context.WithTimeout(ctx, time.Duration(within)*time.Millisecond)
	defer cancel()
	ev, err := sub.Next(wctx)
	if timedOut(err) && ctx.Err() == nil {
		return nil
	}
	var fe *felix.Error
	if errors.As(err, &fe) {
		return fail("unexpected subscription error (%s) %s", fe.Code, fe.Message)
	} else if err != nil {
		return fail("unexpected subscription error %v", err)
	}
	return fail("unexpected event %s", showEvent(ev))
}
