package felix_test

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

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
