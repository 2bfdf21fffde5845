package felix_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	felix "github.com/felix-rs/felix/bindings/go"
)

// The dev broker accepts any token: what is checked is that the TokenSource is what the
// client uses (called before connecting, and the calls then succeed).
func TestTokenSourceIsCalledAndUsed(t *testing.T) {
	var calls atomic.Int32
	o := shared.options()
	o.TokenSource = func() (string, error) {
		calls.Add(1)
		return "token-from-go", nil
	}
	ctx := ctxT(t)
	c, err := felix.Connect(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := calls.Load(); n != 1 {
		t.Fatalf("TokenSource called %d times, want 1", n)
	}
	if _, err := c.CachePut(ctx, "default", unique(t), "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
}

func TestFailingTokenSourceIsUnauthorized(t *testing.T) {
	o := shared.options()
	o.TokenSource = func() (string, error) { return "", errors.New("vault is sealed") }
	_, err := felix.Connect(ctxT(t), o)
	if !errors.Is(err, felix.ErrUnauthorized) {
		t.Fatalf("want ErrUnauthorized, got %v", err)
	}
	if !strings.Contains(err.Error(), "vault is sealed") {
		t.Fatalf("the TokenSource's error is not in %q", err)
	}
	o.TokenSource = func() (string, error) { panic("boom") }
	_, err = felix.Connect(ctxT(t), o)
	if !errors.Is(err, felix.ErrUnauthorized) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("a panicking TokenSource: want ErrUnauthorized mentioning it, got %v", err)
	}
}

// A Connect whose ctx has already ended returns at once; the TokenSource it was given must not
// stay reachable (before the fix, its cgo.Handle was made before the ctx check and never
// released, so the closure and all it held leaked for the life of the process).
func TestConnectWithEndedContextReleasesTheTokenSource(t *testing.T) {
	var released atomic.Bool
	func() {
		held := new([1 << 16]byte) // what a TokenSource holds on to
		runtime.SetFinalizer(held, func(*[1 << 16]byte) { released.Store(true) })
		o := shared.options()
		o.TokenSource = func() (string, error) {
			_ = held[0]
			return "token", nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := felix.Connect(ctx, o); !errors.Is(err, context.Canceled) {
			t.Fatalf("want context.Canceled, got %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !released.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the TokenSource of a Connect with an ended ctx is still reachable (leaked handle)")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// A Connect cancelled while it runs also releases its TokenSource once the C call finishes.
func TestConnectCancelledMidwayReleasesTheTokenSource(t *testing.T) {
	var released atomic.Bool
	entered := make(chan struct{})
	func() {
		held := new([1 << 16]byte)
		runtime.SetFinalizer(held, func(*[1 << 16]byte) { released.Store(true) })
		o := shared.options()
		ctx, cancel := context.WithCancel(context.Background())
		o.TokenSource = func() (string, error) {
			_ = held[0]
			close(entered)
			cancel() // the ctx ends while the C call is in flight
			return "token", nil
		}
		c, err := felix.Connect(ctx, o)
		if err == nil {
			c.Close() // the connect finished before the cancel took effect: fine too
		} else if !errors.Is(err, context.Canceled) {
			t.Fatalf("want context.Canceled or success, got %v", err)
		}
	}()
	<-entered
	deadline := time.Now().Add(10 * time.Second)
	for !released.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the TokenSource of a cancelled Connect is still reachable (leaked handle)")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// TokenExchangeCAFile reaches the exchange: without a TokenExchangeURL it is refused; with
// one, a missing CA file fails the connect with ErrInvalidArgument naming the file.
func TestTokenExchangeCAFile(t *testing.T) {
	o := shared.options()
	o.TokenExchangeCAFile = "/nonexistent/cp-ca.pem"
	_, err := felix.Connect(ctxT(t), o)
	if !errors.Is(err, felix.ErrInvalidArgument) || !strings.Contains(err.Error(), "token_exchange_ca_file") {
		t.Fatalf("a CA file without an exchange URL: want ErrInvalidArgument, got %v", err)
	}
	o.TokenExchangeURL = "https://127.0.0.1:1"
	o.SubjectToken = "oidc-token"
	_, err = felix.Connect(ctxT(t), o)
	if !errors.Is(err, felix.ErrInvalidArgument) || !strings.Contains(err.Error(), "/nonexistent/cp-ca.pem") {
		t.Fatalf("a missing CA file: want ErrInvalidArgument naming it, got %v", err)
	}
}
