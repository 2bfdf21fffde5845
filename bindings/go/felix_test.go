package felix_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	felix "github.com/felix-rs/felix/bindings/go"
)

func TestPubSubPreservesOrder(t *testing.T) {
	c, ctx, st := connect(t, shared), ctxT(t), unique(t)
	sub, err := c.Subscribe(ctx, "default", st, felix.StartLatest)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := 0; i < 50; i++ {
		if err := c.Publish(ctx, "default", st, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	batch := [][]byte{[]byte("50"), []byte("51"), []byte("52")}
	if err := c.PublishBatch(ctx, "default", st, batch, felix.AckPerMessage); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 53; i++ {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(ev.Payload) != strconv.Itoa(i) || ev.Offset != uint64(i) || ev.Stream != st {
			t.Fatalf("event %d: got %q offset %d stream %q", i, ev.Payload, ev.Offset, ev.Stream)
		}
	}
}

func TestEverySubscriberGetsEveryEvent(t *testing.T) {
	c, ctx, st := connect(t, shared), ctxT(t), unique(t)
	var subs []*felix.Subscription
	for i := 0; i < 3; i++ {
		s, err := c.Subscribe(ctx, "default", st, felix.StartLatest)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		subs = append(subs, s)
	}
	pub, err := c.Publisher("default", st, felix.PublisherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := 0; i < 20; i++ {
		if err := pub.Publish(ctx, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for n, s := range subs {
		ch := s.Chan()
		for i := 0; i < 20; i++ {
			select {
			case ev := <-ch:
				if string(ev.Payload) != fmt.Sprint(i) {
					t.Fatalf("subscriber %d event %d: %q", n, i, ev.Payload)
				}
			case <-ctx.Done():
				t.Fatalf("subscriber %d: timed out at %d", n, i)
			}
		}
	}
	subs[0].Close()
	if _, open := <-subs[0].Chan(); open {
		// drain anything buffered until the channel closes
		for range subs[0].Chan() {
		}
	}
	if !errors.Is(subs[0].Err(), felix.ErrClosed) && !errors.Is(subs[0].Err(), context.Canceled) {
		t.Fatalf("Err after Close: %v", subs[0].Err())
	}
}

func TestQueueAckNackRedeliveryAndDeadLetters(t *testing.T) {
	c, ctx, st := connect(t, shared), ctxT(t), unique(t)
	if err := c.CreateGroup(ctx, "default", st, "g", felix.GroupSettings{MaxDeliveries: 2}); err != nil {
		t.Fatal(err)
	}
	q, err := c.Consumer("default", st, "g")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := c.PublishBatch(ctx, "default", st, [][]byte{[]byte("a"), []byte("b")}, felix.AckPerBatch); err != nil {
		t.Fatal(err)
	}
	msgs, err := q.Pull(ctx, 10, 2*time.Second)
	if err != nil || len(msgs) != 2 || msgs[0].Attempt != 1 || string(msgs[1].Payload) != "b" {
		t.Fatalf("pull: %v %+v", err, msgs)
	}
	if n, err := q.Ack(ctx, msgs[0].Offset); err != nil || n != 1 {
		t.Fatalf("ack: %d %v", n, err)
	}
	if n, err := q.Extend(ctx, time.Second, msgs[1].Offset); err != nil || n != 1 {
		t.Fatalf("extend: %d %v", n, err)
	}
	if _, err := q.Nack(ctx, 0, msgs[1].Offset); err != nil {
		t.Fatal(err)
	}
	again, err := q.Pull(ctx, 10, 2*time.Second)
	if err != nil || len(again) != 1 || again[0].Offset != msgs[1].Offset || again[0].Attempt != 2 {
		t.Fatalf("redelivery: %v %+v", err, again)
	}
	// Second failed delivery of "b" exhausts max_deliveries: it becomes a dead letter.
	if _, err := q.Nack(ctx, 0, again[0].Offset); err != nil {
		t.Fatal(err)
	}
	var dls []felix.DeadLetter
	eventually(t, 5*time.Second, "dead letter listed", func() bool {
		dls, err = q.DeadLetters(ctx, 10)
		return err == nil && len(dls) == 1
	})
	if string(dls[0].Payload) != "b" || dls[0].Reason == "" {
		t.Fatalf("dead letter: %+v", dls[0])
	}
	if n, err := q.Redrive(ctx); err != nil || n != 1 {
		t.Fatalf("redrive: %d %v", n, err)
	}
	back, err := q.Pull(ctx, 10, 2*time.Second)
	if err != nil || len(back) != 1 || string(back[0].Payload) != "b" {
		t.Fatalf("after redrive: %v %+v", err, back)
	}
	if _, err := q.Ack(ctx, back[0].Offset); err != nil {
		t.Fatal(err)
	}
	if n, err := q.Discard(ctx); err != nil || n != 0 {
		t.Fatalf("discard: %d %v", n, err)
	}
}

func TestCacheTTLExpires(t *testing.T) {
	c, ctx, cache := connect(t, shared), ctxT(t), unique(t)
	if _, err := c.CachePut(ctx, "default", cache, "k", []byte("v"), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	v, found, err := c.CacheGet(ctx, "default", cache, "k")
	if err != nil || !found || string(v.Value) != "v" {
		t.Fatalf("get: %v %v %q", err, found, v.Value)
	}
	eventually(t, 10*time.Second, "entry expired", func() bool {
		_, found, err := c.CacheGet(ctx, "default", cache, "k")
		return err == nil && !found
	})
}

func TestCacheConditionalPutsDeleteAndGetMany(t *testing.T) {
	c, ctx, cache := connect(t, shared), ctxT(t), unique(t)
	v1, err := c.CachePutIfAbsent(ctx, "default", cache, "k", []byte("one"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CachePutIfAbsent(ctx, "default", cache, "k", []byte("two"), 0); !errors.Is(err, felix.ErrConflict) {
		t.Fatalf("second put-if-absent: %v", err)
	}
	if _, err := c.CachePutIfVersion(ctx, "default", cache, "k", []byte("x"), 0, v1+100); !errors.Is(err, felix.ErrConflict) {
		t.Fatalf("stale CAS: %v", err)
	}
	if _, err := c.CachePutIfVersion(ctx, "default", cache, "k", []byte("three"), 0, v1); err != nil {
		t.Fatalf("CAS: %v", err)
	}
	vals, err := c.CacheGetMany(ctx, "default", cache, []string{"k", "missing"})
	if err != nil || len(vals) != 2 || string(vals[0].Value) != "three" || vals[1] != nil {
		t.Fatalf("get many: %v %+v", err, vals)
	}
	if existed, err := c.CacheDelete(ctx, "default", cache, "k"); err != nil || !existed {
		t.Fatalf("delete: %v %v", existed, err)
	}
	if existed, err := c.CacheDelete(ctx, "default", cache, "k"); err != nil || existed {
		t.Fatalf("second delete: %v %v", existed, err)
	}
	big := bytes.Repeat([]byte("x"), 100_000)
	if _, err := c.CachePut(ctx, "default", cache, "big", big, 0); err != nil {
		t.Fatal(err)
	}
	if v, _, err := c.CacheGet(ctx, "default", cache, "big"); err != nil || !bytes.Equal(v.Value, big) {
		t.Fatalf("big value round trip: %v", err)
	}
}

func TestReconnectsAfterBrokerRestart(t *testing.T) {
	b, err := startBroker()
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(b.dir)
	defer b.stop()
	// Its own context, longer than ctxT's: a restart on a loaded machine plus the 20 s wait
	// below must not run into a test-wide deadline that then fails every call.
	c, ctx := connect(t, b), restartCtx(t)
	if _, err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	b.stop()
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	defer func() {
		if t.Failed() {
			t.Logf("last error of the retried call: %v", lastErr)
		}
	}()
	eventually(t, 20*time.Second, "cache put after restart", func() bool {
		_, lastErr = c.CachePut(ctx, "default", "restart", "k", []byte("v"), 0)
		return lastErr == nil
	})
	if v, found, err := c.CacheGet(ctx, "default", "restart", "k"); err != nil || !found || string(v.Value) != "v" {
		t.Fatalf("get after restart: %v %v", found, err)
	}
}

func TestBrokerRestartIsReportedAsResetGap(t *testing.T) {
	b, err := startBroker()
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(b.dir)
	defer b.stop()
	c, ctx, st := connect(t, b), restartCtx(t), unique(t)
	sub, err := c.Subscribe(ctx, "default", st, felix.StartLatest)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := 0; i < 2; i++ {
		if err := c.Publish(ctx, "default", st, []byte(fmt.Sprint("old-", i))); err != nil {
			t.Fatal(err)
		}
		if ev, err := sub.Next(ctx); err != nil || ev.Offset != uint64(i) {
			t.Fatalf("old event %d: %+v %v", i, ev, err)
		}
	}
	b.stop()
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	defer func() {
		if t.Failed() {
			t.Logf("last error of the retried publish: %v", lastErr)
		}
	}()
	eventually(t, 20*time.Second, "publish after restart", func() bool {
		lastErr = c.Publish(ctx, "default", st, []byte("new-0"))
		return lastErr == nil
	})
	// A deadline of its own for the first event: whatever the restart took of ctx.
	nctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ev, err := sub.Next(nctx)
	if err != nil || ev.Offset != 0 || string(ev.Payload) != "new-0" {
		t.Fatalf("first event after the restart: %+v %v", ev, err)
	}
	gaps, err := sub.Gaps()
	if err != nil {
		t.Fatal(err)
	}
	want := []felix.Gap{{Stream: st, From: 2, To: 0, Reset: true}}
	if fmt.Sprint(gaps) != fmt.Sprint(want) {
		t.Fatalf("gaps before the new log's first event: %+v, want %+v", gaps, want)
	}
}

func TestContextCancellationAndDeadline(t *testing.T) {
	c, st := connect(t, shared), unique(t)
	q, err := c.Consumer("default", st, "g")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	start := time.Now()
	_, err = q.Pull(ctx, 1, 10*time.Second)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, felix.ErrCancelled) {
		t.Fatalf("cancelled pull: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("cancellation took %v", time.Since(start))
	}
	sub, err := c.Subscribe(ctxT(t), "default", st, felix.StartLatest)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	dctx, dcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer dcancel()
	if _, err := sub.Next(dctx); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, felix.ErrTimeout) {
		t.Fatalf("deadline Next: %v", err)
	}
	// The subscription and the client still work after cancelled calls.
	if err := c.Publish(ctxT(t), "default", st, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if ev, err := sub.Next(ctxT(t)); err != nil || string(ev.Payload) != "after" {
		t.Fatalf("next after cancel: %v %q", err, ev.Payload)
	}
	done, dc := context.WithCancel(context.Background())
	dc()
	if _, _, err := c.CacheGet(done, "default", "c", "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("already-cancelled ctx: %v", err)
	}
}

func expectCode(t *testing.T, what string, err error, want error) {
	t.Helper()
	var fe *felix.Error
	if !errors.Is(err, want) || !errors.As(err, &fe) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
	if fe.Retryable != fe.Code.Retryable() || fe.Message == "" {
		t.Fatalf("%s: bad error fields %+v", what, fe)
	}
}

func TestErrorCodes(t *testing.T) {
	ctx := ctxT(t)
	t.Run("bad address is unavailable", func(t *testing.T) {
		o := shared.options()
		o.Addresses = []string{"127.0.0.1:0", "not-an-address"}
		o.ConnectTimeout = time.Second
		_, err := felix.Connect(ctx, o)
		expectCode(t, "connect", err, felix.ErrUnavailable)
		var fe *felix.Error
		errors.As(err, &fe)
		if !fe.Retryable {
			t.Fatal("unavailable must be retryable")
		}
	})
	t.Run("bad token is unauthorized", func(t *testing.T) {
		// Tokens reach the broker through its environment, never its command line.
		t.Setenv("FELIX_AUTH_TOKENS", "default:good-token,acme:acme-token")
		b, err := startBroker()
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(b.dir)
		defer b.stop()
		o := b.options()
		o.Token = "bad-token"
		c, err := felix.Connect(ctx, o)
		if err == nil {
			_, _, err = c.CacheGet(ctx, "default", "c", "k")
			c.Close()
		}
		expectCode(t, "bad token", err, felix.ErrUnauthorized)
		o.Token = "acme-token" // valid, but for another tenant
		c, err = felix.Connect(ctx, o)
		if err == nil {
			_, _, err = c.CacheGet(ctx, "default", "c", "k")
			c.Close()
		}
		expectCode(t, "another tenant's token", err, felix.ErrUnauthorized)
		o.Token = "good-token"
		good, err := felix.Connect(ctx, o)
		if err != nil {
			t.Fatalf("good token: %v", err)
		}
		good.Close()
	})
	t.Run("oversized payload is frame_too_large", func(t *testing.T) {
		b, err := startBroker("--max-frame-bytes", "65536")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(b.dir)
		defer b.stop()
		c := connect(t, b)
		err = c.Publish(ctx, "default", "big", make([]byte, 200_000))
		expectCode(t, "publish", err, felix.ErrFrameTooLarge)
		_, err = c.CachePut(ctx, "default", "big", "k", make([]byte, 200_000), 0)
		expectCode(t, "cache put", err, felix.ErrFrameTooLarge)
		if _, err := c.CachePut(ctx, "default", "big", "k", []byte("small"), 0); err != nil {
			t.Fatalf("connection unusable after oversized payload: %v", err)
		}
	})
	t.Run("invalid names are invalid_argument", func(t *testing.T) {
		c := connect(t, shared)
		_, _, err := c.CacheGet(ctx, "default", "", "k")
		expectCode(t, "empty cache name", err, felix.ErrInvalidArgument)
		_, _, err = c.CacheGet(ctx, "default", "c", "\xff\xfe")
		expectCode(t, "invalid UTF-8 key", err, felix.ErrInvalidArgument)
		err = c.Publish(ctx, "", "s", []byte("x"))
		expectCode(t, "empty namespace", err, felix.ErrInvalidArgument)
		_, err = c.Subscribe(ctx, "default", "", felix.StartLatest)
		expectCode(t, "empty stream", err, felix.ErrInvalidArgument)
		_, err = c.Consumer("default", "s", "")
		expectCode(t, "empty group", err, felix.ErrInvalidArgument)
		q, _ := c.Consumer("default", "s", "g")
		_, err = q.Pull(ctx, 0, 0)
		expectCode(t, "pull 0", err, felix.ErrInvalidArgument)
		q.Close()
		if _, err := c.Ping(ctx); err != nil {
			t.Fatalf("client unusable after bad input: %v", err)
		}
	})
	t.Run("conflict", func(t *testing.T) {
		c := connect(t, shared)
		c.CachePut(ctx, "default", "conf", "k", []byte("v"), 0)
		_, err := c.CachePutIfAbsent(ctx, "default", "conf", "k", []byte("v"), 0)
		expectCode(t, "put-if-absent", err, felix.ErrConflict)
	})
}

func TestCloseIsIdempotentAndUseAfterCloseFails(t *testing.T) {
	ctx, st := ctxT(t), unique(t)
	c, err := felix.Connect(ctx, shared.options())
	if err != nil {
		t.Fatal(err)
	}
	other := connect(t, shared)
	sub, err := c.Subscribe(ctx, "default", st, felix.StartLatest)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := c.Consumer("default", st, "g")
	pub, _ := c.Publisher("default", st, felix.PublisherOptions{})
	// A Next waiting when the subscription is closed returns ErrClosed.
	waiting := make(chan error, 1)
	go func() { _, err := sub.Next(ctx); waiting <- err }()
	time.Sleep(20 * time.Millisecond) // let Next start waiting (either order must work)
	for i := 0; i < 2; i++ {
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-waiting; !errors.Is(err, felix.ErrClosed) {
		t.Fatalf("Next during Close: %v", err)
	}
	if _, err := sub.Next(ctx); !errors.Is(err, felix.ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := c.CacheGet(ctx, "default", "c", "k"); !errors.Is(err, felix.ErrClosed) {
		t.Fatalf("get after Close: %v", err)
	}
	if err := c.Publish(ctx, "default", st, []byte("x")); !errors.Is(err, felix.ErrClosed) {
		t.Fatalf("publish after Close: %v", err)
	}
	if _, err := c.Subscribe(ctx, "default", st, felix.StartLatest); !errors.Is(err, felix.ErrClosed) {
		t.Fatalf("subscribe after Close: %v", err)
	}
	if _, err := q.Pull(ctx, 1, 0); !errors.Is(err, felix.ErrClosed) {
		t.Fatalf("consumer of a closed client: %v", err)
	}
	if err := pub.Publish(ctx, []byte("x")); !errors.Is(err, felix.ErrClosed) {
		t.Fatalf("publisher of a closed client: %v", err)
	}
	q.Close()
	q.Close()
	if _, err := q.Pull(ctx, 1, 0); !errors.Is(err, felix.ErrClosed) {
		t.Fatalf("pull after Close: %v", err)
	}
	pub.Close()
	pub.Close()
	if _, err := c.Consumer("default", st, "g"); !errors.Is(err, felix.ErrClosed) {
		t.Fatalf("consumer after Close: %v", err)
	}
	// Other connections are unaffected.
	if _, err := other.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func threads() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Threads:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return -1
}

func TestThousandGoroutinesDoNotCreateThousandThreads(t *testing.T) {
	c, ctx, cache := connect(t, shared), ctxT(t), unique(t)
	if _, err := c.CachePut(ctx, "default", cache, "k", []byte("value"), 0); err != nil {
		t.Fatal(err)
	}
	before, createdBefore := threads(), pprof.Lookup("threadcreate").Count()
	const goroutines, each = 1000, 20
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	start := time.Now()
	peak := 0
	var peakMu sync.Mutex
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, found, err := c.CacheGet(ctx, "default", cache, "k"); err != nil || !found {
					errs <- fmt.Errorf("get: %v found=%v", err, found)
					return
				}
			}
			peakMu.Lock()
			peak = max(peak, threads())
			peakMu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	after, createdAfter := threads(), pprof.Lookup("threadcreate").Count()
	ops := goroutines * each
	t.Logf("1000 goroutines x %d cache gets: %d ops in %v = %.0f ops/s; OS threads %d before, peak %d, %d after (threadcreate %d -> %d)",
		each, ops, elapsed.Round(time.Millisecond), float64(ops)/elapsed.Seconds(), before, peak, after, createdBefore, createdAfter)
	if peak-before > 64 || createdAfter-createdBefore > 64 {
		t.Fatalf("thread explosion: %d threads before, peak %d", before, peak)
	}
}

// Many goroutines' calls come back to their own goroutines: batches larger than the
// dispatcher's parts (so it polls between them) on the default GOMAXPROCS and on one P. On one
// P a lone call also yields before it waits in C on its own thread (where it would hold the
// only P): goroutines about to call join it on the driven queue instead of each running alone
// in turn. (That convoy shows in the bench, which runs the client on one CPU: 32 goroutines
// fell to 21 k gets/s in it.) On one P too: lone calls, and a call ended by its deadline
// while it waits in the broker.
func TestManyGoroutinesGetTheirOwnRepliesOnAnyNumberOfProcessors(t *testing.T) {
	c, ctx, cache := connect(t, shared), ctxT(t), unique(t)
	many := func() {
		const goroutines, each = 48, 40
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				key := fmt.Sprintf("g%d", g)
				for i := 0; i < each; i++ {
					want := fmt.Sprintf("%d/%d", g, i)
					if _, err := c.CachePut(ctx, "default", cache, key, []byte(want), 0); err != nil {
						errs <- fmt.Errorf("put: %v", err)
						return
					}
					if v, found, err := c.CacheGet(ctx, "default", cache, key); err != nil || !found || string(v.Value) != want {
						errs <- fmt.Errorf("get %s: %v found=%v %q, want %q", key, err, found, v.Value, want)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	many()

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	many()
	if _, err := c.CachePut(ctx, "default", cache, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if v, found, err := c.CacheGet(ctx, "default", cache, "k"); err != nil || !found || string(v.Value) != "v" {
			t.Fatalf("lone get: %v found=%v %q", err, found, v.Value)
		}
	}
	// A pull ended by its deadline while it waits in the broker, with other calls in flight
	// (so it runs among the dispatcher's calls, not alone on its own thread).
	q, err := c.Consumer("default", unique(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	stop, looped := make(chan struct{}), make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				looped <- nil
				return
			default:
			}
			if _, _, err := c.CacheGet(ctx, "default", cache, "k"); err != nil {
				looped <- err
				return
			}
		}
	}()
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := q.Pull(short, 1, 10*time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pull past its deadline: %v", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("a pull with a 100 ms deadline returned after %v", waited)
	}
	close(stop)
	if err := <-looped; err != nil {
		t.Fatal(err)
	}
}

func TestGoExampleRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds another module")
	}
	cmd := exec.Command("go", "run", ".", shared.addr, shared.ca())
	cmd.Dir = "../../examples/go"
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "example ok") || !strings.Contains(string(out), "event: order-2") {
		t.Fatalf("examples/go: %v\n%s", err, out)
	}
}
