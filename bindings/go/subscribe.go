package felix

// #include "felix.h"
import "C"

import (
	"context"
	"runtime"
	"sync"
)

// Event is one delivered event.
type Event struct {
	Stream    string
	Offset    uint64
	HasOffset bool
	Payload   []byte
}

// Gap is a range of offsets [From, To) in Stream lost across a reconnect. With Reset, the
// broker recreated the stream's log (an in-memory broker restarted): From is an offset of the
// old log, whose events from there on that were not delivered are lost (how many is unknown),
// and To the offset of the new log where delivery goes on.
type Gap struct {
	Stream   string
	From, To uint64
	Reset    bool
}

// Start says where a subscription starts.
type Start struct {
	kind   C.uint32_t
	offset uint64
}

// Starting points.
var (
	StartLatest   = Start{kind: C.FELIX_START_LATEST}   // only new events
	StartEarliest = Start{kind: C.FELIX_START_EARLIEST} // the oldest event still held
)

// StartAt starts at offset.
func StartAt(offset uint64) Start { return Start{kind: C.FELIX_START_OFFSET, offset: offset} }

// Subscription is a live subscription. Next and Chan may be used from any goroutine.
type Subscription struct {
	mu     sync.RWMutex // guards ptr
	ptr    *C.FelixSubscription
	bufMu  sync.Mutex // serialises Next and guards buf
	buf    []Event
	chOnce sync.Once
	ch     chan Event
	errMu  sync.Mutex
	err    error
	cancel context.CancelFunc
}

// batch is how many buffered events one Next call moves from the core at most.
const batch = 256

// Subscribe subscribes to namespace/stream (`*` and `>` wildcards match several streams). It
// returns once the broker accepted the subscription.
func (c *Client) Subscribe(ctx context.Context, namespace, stream string, from Start) (*Subscription, error) {
	r, err := c.start(ctx, func(p *C.FelixClient, cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_subscribe_start(p, cstr(namespace), cstr(stream), from.kind, C.uint64_t(from.offset), cq, tok, e))
	})
	if err != nil {
		return nil, err
	}
	p := C.felix_result_take_subscription(r)
	C.felix_result_free(r)
	s := &Subscription{ptr: p}
	runtime.SetFinalizer(s, (*Subscription).Close)
	return s, nil
}

// Next returns the next event, waiting until one arrives, ctx ends (an error matching
// ctx.Err(); no event is lost), or the subscription ends (ErrClosed, or the error that ended it,
// e.g. ErrSlowConsumer).
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	s.bufMu.Lock()
	defer s.bufMu.Unlock()
	if len(s.buf) == 0 {
		r, err := await(ctx, func(cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
			s.mu.RLock()
			defer s.mu.RUnlock()
			if s.ptr == nil {
				return C.FELIX_STATUS_CLOSED
			}
			return C.FelixStatus(C.felix_subscription_next_start(s.ptr, batch, cq, tok, e))
		})
		runtime.KeepAlive(s)
		if err != nil {
			return Event{}, err
		}
		for _, it := range items(r) {
			s.buf = append(s.buf, Event{Stream: goString(it.text), Offset: uint64(it.offset),
				HasOffset: bool(it.present), Payload: goBytes(it.payload)})
		}
		C.felix_result_free(r)
		if len(s.buf) == 0 {
			return Event{}, &Error{Code: CodeInternal, Message: "empty event batch"}
		}
	}
	ev := s.buf[0]
	s.buf[0] = Event{}
	s.buf = s.buf[1:]
	return ev, nil
}

// Chan returns a channel of events fed by a goroutine calling Next; it is closed when the
// subscription ends or is closed, after which Err tells why. Every call returns the same
// channel; mixing Chan and Next splits the events between them.
func (s *Subscription) Chan() <-chan Event {
	s.chOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.errMu.Lock()
		s.cancel = cancel
		s.errMu.Unlock()
		s.ch = make(chan Event, 64)
		go func() {
			defer close(s.ch)
			for {
				ev, err := s.Next(ctx)
				if err != nil {
					s.errMu.Lock()
					s.err = err
					s.errMu.Unlock()
					return
				}
				select {
				case s.ch <- ev:
				case <-ctx.Done():
					return
				}
			}
		}()
	})
	return s.ch
}

// Err is why the Chan channel was closed (nil while it is open).
func (s *Subscription) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Gaps returns the gaps recorded since the last call (events lost across a reconnect or a
// broker restart). They come in order: the gaps Gaps returns right after Next gave an event
// precede that event.
func (s *Subscription) Gaps() ([]Gap, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ptr == nil {
		return nil, closedError("subscription")
	}
	var r *C.FelixResult
	var e *C.FelixError
	if st := C.felix_subscription_take_gaps(s.ptr, &r, &e); st != C.FELIX_STATUS_OK {
		return nil, takeError(st, e)
	}
	defer C.felix_result_free(r)
	var out []Gap
	for _, it := range items(r) {
		out = append(out, Gap{Stream: goString(it.text), From: uint64(it.offset), To: uint64(it.end), Reset: bool(it.present)})
	}
	return out, nil
}

// Close ends the subscription; a Next waiting on it returns ErrClosed. Idempotent.
func (s *Subscription) Close() error {
	s.mu.Lock()
	p := s.ptr
	s.ptr = nil
	s.mu.Unlock()
	s.errMu.Lock()
	if s.cancel != nil {
		s.cancel()
	}
	s.errMu.Unlock()
	if p != nil {
		runtime.SetFinalizer(s, nil)
		C.felix_subscription_free(p)
	}
	return nil
}
