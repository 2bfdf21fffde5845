package felix

// #include "felix.h"
import "C"

import (
	"context"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Message is a leased queue delivery.
type Message struct {
	Offset  uint64 // the id to Ack/Nack
	Payload []byte
	Attempt uint32 // 1 on first delivery
	Lease   time.Duration
}

// DeadLetter is a message that exhausted its deliveries or was rejected.
type DeadLetter struct {
	Offset   uint64
	Payload  []byte
	Attempts uint32
	Reason   string
}

// Consumer is a member of a consumer group on one stream. Safe for concurrent use.
type Consumer struct {
	mu  sync.RWMutex
	ptr *C.FelixConsumer
}

// Consumer returns a consumer in group on namespace/stream (no I/O).
func (c *Client) Consumer(namespace, stream, group string) (*Consumer, error) {
	var out *C.FelixConsumer
	err := c.blocking(func(p *C.FelixClient, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_consumer_new(p, cstr(namespace), cstr(stream), cstr(group), &out, e))
	})
	if err != nil {
		return nil, err
	}
	q := &Consumer{ptr: out}
	runtime.SetFinalizer(q, (*Consumer).Close)
	return q, nil
}

// Close releases the consumer (its leases run out on the broker). Idempotent.
func (q *Consumer) Close() error {
	q.mu.Lock()
	p := q.ptr
	q.ptr = nil
	q.mu.Unlock()
	if p != nil {
		runtime.SetFinalizer(q, nil)
		C.felix_consumer_free(p)
	}
	return nil
}

func (q *Consumer) start(ctx context.Context, fn func(p *C.FelixConsumer, cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus) (*C.FelixResult, error) {
	r, err := await(ctx, func(cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		q.mu.RLock()
		defer q.mu.RUnlock()
		if q.ptr == nil {
			return C.FELIX_STATUS_CLOSED
		}
		return fn(q.ptr, cq, tok, e)
	})
	runtime.KeepAlive(q)
	return r, err
}

// Pull takes up to max messages, waiting up to wait for the first (long poll).
func (q *Consumer) Pull(ctx context.Context, max int, wait time.Duration) ([]Message, error) {
	r, err := q.start(ctx, func(p *C.FelixConsumer, cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_consumer_pull_start(p, C.uint32_t(max), C.uint64_t(wait/time.Millisecond), cq, tok, e))
	})
	if err != nil {
		return nil, err
	}
	defer C.felix_result_free(r)
	its := items(r)
	out := make([]Message, 0, len(its))
	for _, it := range its {
		out = append(out, Message{Offset: uint64(it.offset), Payload: goBytes(it.payload),
			Attempt: uint32(it.attempt), Lease: time.Duration(it.lease_ms) * time.Millisecond})
	}
	return out, nil
}

// DeadLetters lists up to max dead letters, oldest first.
func (q *Consumer) DeadLetters(ctx context.Context, max int) ([]DeadLetter, error) {
	r, err := q.start(ctx, func(p *C.FelixConsumer, cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_consumer_dead_letters_start(p, C.uint32_t(max), cq, tok, e))
	})
	if err != nil {
		return nil, err
	}
	defer C.felix_result_free(r)
	var out []DeadLetter
	for _, it := range items(r) {
		out = append(out, DeadLetter{Offset: uint64(it.offset), Payload: goBytes(it.payload),
			Attempts: uint32(it.attempt), Reason: goString(it.text)})
	}
	return out, nil
}

func (q *Consumer) settle(ctx context.Context, op C.uint32_t, offsets []uint64, all bool, arg time.Duration) (uint64, error) {
	var ptr *C.uint64_t
	if len(offsets) > 0 {
		ptr = (*C.uint64_t)(unsafe.Pointer(&offsets[0]))
	} else if !all {
		var none [1]C.uint64_t // non-NULL, zero length: "no offsets" rather than "all"
		ptr = &none[0]
	}
	r, err := q.start(ctx, func(p *C.FelixConsumer, cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_consumer_settle_start(p, op, ptr, C.size_t(len(offsets)), C.uint64_t(arg/time.Millisecond), cq, tok, e))
	})
	runtime.KeepAlive(offsets)
	if err != nil {
		return 0, err
	}
	defer C.felix_result_free(r)
	return uint64(r.value), nil
}

// Ack acknowledges messages; returns how many were settled.
func (q *Consumer) Ack(ctx context.Context, offsets ...uint64) (uint64, error) {
	return q.settle(ctx, C.FELIX_SETTLE_ACK, offsets, false, 0)
}

// Nack gives messages back for redelivery after delay.
func (q *Consumer) Nack(ctx context.Context, delay time.Duration, offsets ...uint64) (uint64, error) {
	return q.settle(ctx, C.FELIX_SETTLE_NACK, offsets, false, delay)
}

// Extend extends the leases of messages by d.
func (q *Consumer) Extend(ctx context.Context, d time.Duration, offsets ...uint64) (uint64, error) {
	return q.settle(ctx, C.FELIX_SETTLE_EXTEND, offsets, false, d)
}

// Redrive moves dead letters back for delivery: the given offsets, or all when none are given.
func (q *Consumer) Redrive(ctx context.Context, offsets ...uint64) (uint64, error) {
	return q.settle(ctx, C.FELIX_SETTLE_REDRIVE, offsets, true, 0)
}

// Discard drops dead letters: the given offsets, or all when none are given.
func (q *Consumer) Discard(ctx context.Context, offsets ...uint64) (uint64, error) {
	return q.settle(ctx, C.FELIX_SETTLE_DISCARD, offsets, true, 0)
}
