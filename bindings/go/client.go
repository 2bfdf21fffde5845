// Package felix is the Go client of Felix, a low-latency QUIC broker for pub/sub streams,
// work queues and a cache. It is a thin cgo layer over the one Rust client core (through the
// C ABI in include/felix.h): protocol, pooling, reconnect and batching live there.
//
//	c, err := felix.Connect(ctx, felix.Options{Addresses: []string{"127.0.0.1:5000"}, CAFile: "/tmp/felix-dev-<uid>/ca.pem"})
//	defer c.Close()
//	_, err = c.CachePut(ctx, "default", "sessions", "alice", []byte("v"), time.Minute)
//
// Every method takes a context: cancelling it (or its deadline) cancels the call in the core
// and returns an *Error with CodeCancelled (or CodeTimeout) that also matches the context
// error with errors.Is. All types are safe for concurrent use. Close releases a resource; it
// is idempotent, and a finalizer closes resources that were dropped without it. Any use after
// Close fails with ErrClosed.
package felix

/*
#include <stdlib.h>
#include "felix.h"
*/
import "C"

import (
	"context"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Options configure Connect. Zero values keep the defaults.
type Options struct {
	Addresses   []string // broker host:port list; default 127.0.0.1:5000
	ServerName  string   // TLS name to verify; default "localhost"
	CAFile      string   // CA PEM file; default /tmp/felix-dev-<uid>/ca.pem
	CAPEM       []byte   // CA PEM contents (wins over CAFile)
	InsecureDev bool     // accept any certificate (development only)
	Token       string   // bearer token (static)
	// TokenSource returns a fresh token: called before connecting and again before each token
	// expires (its JWT exp, or every TokenRefreshInterval), on a library thread (it may block;
	// it must be safe to call from any goroutine). An error fails the fetch with
	// CodeUnauthorized; the current token serves until it expires. Overrides Token. With
	// TokenExchangeURL it returns the OIDC token to exchange instead.
	TokenSource func() (string, error)
	// TokenExchangeURL is the control plane: exchange an OIDC token (TokenSource,
	// SubjectToken or SubjectTokenFile) there for Felix tokens (RFC 8693).
	TokenExchangeURL string
	SubjectToken     string // the OIDC token to exchange
	// SubjectTokenFile holds the OIDC token, read at each exchange (a Kubernetes projected
	// ServiceAccount token).
	SubjectTokenFile string
	// TokenExchangeCAFile is a PEM file of the CA(s) an https TokenExchangeURL's certificate
	// must chain to (a control plane with a private CA); empty: the public web roots. Needs
	// TokenExchangeURL (ErrInvalidArgument without it).
	TokenExchangeCAFile string
	// TokenRefreshInterval refreshes a changing token at least this often (0: only before
	// its exp).
	TokenRefreshInterval time.Duration
	ClientCertFile       string        // PEM certificate chain for mTLS
	ClientKeyFile        string        // PEM private key of ClientCertFile
	Tenant               string        // default "default"
	Connections          int           // QUIC connections in the pool (default 1)
	StreamsPerConnection int           // request streams per connection (default 4)
	ConnectTimeout       time.Duration // default 5s
	RequestTimeout       time.Duration // default 10s
	SubscriptionBuffer   int           // events buffered per subscription (default 1024)
}

// Client is a connection pool to a Felix broker. Safe for concurrent use.
type Client struct {
	mu  sync.RWMutex
	ptr *C.FelixClient
}

func ms(d time.Duration) C.uint32_t {
	if d <= 0 {
		return 0
	}
	if d < time.Millisecond {
		return 1
	}
	return C.uint32_t(d / time.Millisecond)
}

// Connect connects to a broker.
func Connect(ctx context.Context, o Options) (*Client, error) {
	if initErr != nil {
		return nil, initErr
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	addrs := cstrs(&pin, o.Addresses)
	if len(addrs) > 0 {
		pin.Pin(&addrs[0])
	}
	// The options struct lives in C memory: it holds pointers to (pinned) Go memory.
	opts := (*C.FelixConnectOptions)(C.malloc(C.size_t(unsafe.Sizeof(C.FelixConnectOptions{}))))
	defer C.free(unsafe.Pointer(opts))
	C.felix_connect_options_init(opts)
	opts.addresses = firstOrNil(addrs)
	opts.addresses_len = C.size_t(len(addrs))
	strs := cstrs(&pin, []string{o.ServerName, o.CAFile, o.Token, o.Tenant,
		o.TokenExchangeURL, o.SubjectToken, o.SubjectTokenFile, o.ClientCertFile, o.ClientKeyFile,
		o.TokenExchangeCAFile})
	opts.server_name, opts.ca_file, opts.token, opts.tenant = strs[0], strs[1], strs[2], strs[3]
	opts.token_exchange_url, opts.subject_token, opts.subject_token_file = strs[4], strs[5], strs[6]
	opts.client_cert_file, opts.client_key_file = strs[7], strs[8]
	opts.token_exchange_ca_file = strs[9]
	opts.token_refresh_interval_ms = ms(o.TokenRefreshInterval)
	if len(o.CAPEM) > 0 {
		pin.Pin(&o.CAPEM[0])
		opts.ca_pem = cbytes(o.CAPEM)
	}
	opts.insecure_dev = C.bool(o.InsecureDev)
	opts.connections = C.uint32_t(max(o.Connections, 0))
	opts.streams_per_connection = C.uint32_t(max(o.StreamsPerConnection, 0))
	opts.connect_timeout_ms = ms(o.ConnectTimeout)
	opts.request_timeout_ms = ms(o.RequestTimeout)
	opts.subscription_buffer = C.uint32_t(max(o.SubscriptionBuffer, 0))
	r, err := await(ctx, func(cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		// Only here: the library releases the callback's handle once it has the options. Made
		// earlier, a ctx that ended before the start (await returns without calling this)
		// would leak the handle and everything the TokenSource holds.
		if o.TokenSource != nil {
			setTokenCallback(opts, o.TokenSource)
		}
		return C.FelixStatus(C.felix_client_connect_start(opts, cq, tok, e))
	})
	if err != nil {
		return nil, err
	}
	p := C.felix_result_take_client(r)
	C.felix_result_free(r)
	c := &Client{ptr: p}
	runtime.SetFinalizer(c, (*Client).Close)
	return c, nil
}

// Close closes the client: calls in flight fail with ErrClosed, and so does every later call
// on it and on its consumers, publishers and subscriptions. Closing twice is a no-op.
func (c *Client) Close() error {
	c.mu.Lock()
	p := c.ptr
	c.ptr = nil
	c.mu.Unlock()
	if p != nil {
		runtime.SetFinalizer(c, nil)
		C.felix_client_free(p)
	}
	return nil
}

// start runs fn with the live handle (or fails with ErrClosed) and waits for the completion.
func (c *Client) start(ctx context.Context, fn func(p *C.FelixClient, cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus) (*C.FelixResult, error) {
	r, err := await(ctx, func(cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		c.mu.RLock()
		defer c.mu.RUnlock()
		if c.ptr == nil {
			return C.FELIX_STATUS_CLOSED
		}
		return fn(c.ptr, cq, tok, e)
	})
	runtime.KeepAlive(c)
	return r, err
}

// blocking runs a blocking C call with the live handle.
func (c *Client) blocking(fn func(p *C.FelixClient, e **C.FelixError) C.FelixStatus) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.ptr == nil {
		return closedError("client")
	}
	var e *C.FelixError
	st := fn(c.ptr, &e)
	runtime.KeepAlive(c)
	return takeError(st, e)
}

// Ping measures a round trip to the broker.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	us, err := awaitValue(ctx, func(cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		c.mu.RLock()
		defer c.mu.RUnlock()
		if c.ptr == nil {
			return C.FELIX_STATUS_CLOSED
		}
		return C.FelixStatus(C.felix_client_ping_start(c.ptr, cq, tok, e))
	})
	runtime.KeepAlive(c)
	return time.Duration(us) * time.Microsecond, err
}

// FullPolicy is what a subscriber's queue does when full.
type FullPolicy uint32

// Full policies (zero keeps the broker's default).
const (
	FullPolicyDefault FullPolicy = iota
	FullPolicyBlock
	FullPolicyDropNewest
	FullPolicyDropOldest
	FullPolicyDisconnect
)

// StreamSettings configure CreateStream; zero values keep the broker's defaults.
type StreamSettings struct {
	MaxRecords       uint64
	MaxBytes         uint64
	SubscriberBuffer uint32
	FullPolicy       FullPolicy
}

// CreateStream creates a stream (idempotent for equal settings). Admin calls block one OS
// thread while they run; ctx is checked before the call.
func (c *Client) CreateStream(ctx context.Context, namespace, stream string, s StreamSettings) error {
	if err := ctx.Err(); err != nil {
		return ctxError(err)
	}
	cs := C.FelixStreamSettings{max_records: C.uint64_t(s.MaxRecords), max_bytes: C.uint64_t(s.MaxBytes),
		subscriber_buffer: C.uint32_t(s.SubscriberBuffer), full_policy: C.uint32_t(s.FullPolicy)}
	return c.blocking(func(p *C.FelixClient, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_client_create_stream(p, cstr(namespace), cstr(stream), &cs, e))
	})
}

// CreateCache creates a cache with a byte budget and default TTL (zero: broker defaults).
func (c *Client) CreateCache(ctx context.Context, namespace, cache string, maxBytes uint64, defaultTTL time.Duration) error {
	if err := ctx.Err(); err != nil {
		return ctxError(err)
	}
	return c.blocking(func(p *C.FelixClient, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_client_create_cache(p, cstr(namespace), cstr(cache), C.uint64_t(maxBytes), C.uint64_t(defaultTTL/time.Millisecond), e))
	})
}

// GroupSettings configure CreateGroup; zero values keep the broker's defaults.
type GroupSettings struct {
	FromLatest    bool
	AckTimeout    time.Duration
	MaxDeliveries uint32
}

// CreateGroup creates a consumer group; an existing group is left unchanged.
func (c *Client) CreateGroup(ctx context.Context, namespace, stream, group string, s GroupSettings) error {
	if err := ctx.Err(); err != nil {
		return ctxError(err)
	}
	return c.blocking(func(p *C.FelixClient, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_client_create_group(p, cstr(namespace), cstr(stream), cstr(group), C.bool(s.FromLatest),
			C.uint64_t(s.AckTimeout/time.Millisecond), C.uint32_t(s.MaxDeliveries), e))
	})
}
