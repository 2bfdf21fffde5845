package felix

// #include "felix.h"
import "C"

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// AckMode is how a publish is acknowledged.
type AckMode uint32

// Acknowledgement modes.
const (
	AckNone       AckMode = C.FELIX_ACK_MODE_NONE        // return once written
	AckPerMessage AckMode = C.FELIX_ACK_MODE_PER_MESSAGE // one ack per message
	AckPerBatch   AckMode = C.FELIX_ACK_MODE_PER_BATCH   // one ack for the batch (default)
)

// Publish publishes one message and waits for the broker's acknowledgement.
func (c *Client) Publish(ctx context.Context, namespace, stream string, payload []byte) error {
	return c.PublishBatch(ctx, namespace, stream, [][]byte{payload}, AckPerBatch)
}

// PublishBatch publishes messages atomically and in order.
func (c *Client) PublishBatch(ctx context.Context, namespace, stream string, payloads [][]byte, ack AckMode) error {
	var pin runtime.Pinner
	defer pin.Unpin()
	ps := cbytesList(&pin, payloads)
	r, err := c.start(ctx, func(p *C.FelixClient, cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_client_publish_start(p, cstr(namespace), cstr(stream), firstOrNil(ps), C.size_t(len(ps)), C.uint32_t(ack), cq, tok, e))
	})
	C.felix_result_free(r)
	return err
}

// PublisherOptions configure a batching Publisher; zero values keep the defaults.
type PublisherOptions struct {
	Ack              AckMode // zero (AckNone) means AckPerBatch here
	MaxBatchMessages int
	MaxBatchBytes    int
	MaxDelay         time.Duration
	QueueCapacity    int
}

// Publisher coalesces concurrent publishes to one stream into batches. Safe for concurrent use.
type Publisher struct {
	mu  sync.RWMutex
	ptr *C.FelixPublisher
}

// Publisher creates a batching publisher for namespace/stream with acknowledgement mode
// o.Ack (the zero value is taken as AckPerBatch).
func (c *Client) Publisher(namespace, stream string, o PublisherOptions) (*Publisher, error) {
	ack := o.Ack
	if ack == AckNone {
		ack = AckPerBatch
	}
	var out *C.FelixPublisher
	err := c.blocking(func(p *C.FelixClient, e **C.FelixError) C.FelixStatus {
		return C.FelixStatus(C.felix_publisher_new(p, cstr(namespace), cstr(stream), C.uint32_t(ack),
			C.uint32_t(max(o.MaxBatchMessages, 0)), C.uint32_t(max(o.MaxBatchBytes, 0)),
			C.uint32_t(o.MaxDelay/time.Microsecond), C.uint32_t(max(o.QueueCapacity, 0)), &out, e))
	})
	if err != nil {
		return nil, err
	}
	pub := &Publisher{ptr: out}
	runtime.SetFinalizer(pub, (*Publisher).Close)
	return pub, nil
}

// Publish publishes one message; it returns when its batch is acknowledged.
func (p *Publisher) Publish(ctx context.Context, payload []byte) error {
	r, err := await(ctx, func(cq *C.FelixCompletionQueue, tok C.uint64_t, e **C.FelixError) C.FelixStatus {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if p.ptr == nil {
			return C.FELIX_STATUS_CLOSED
		}
		return C.FelixStatus(C.felix_publisher_publish_start(p.ptr, cbytes(payload), cq, tok, e))
	})
	runtime.KeepAlive(p)
	runtime.KeepAlive(payload)
	C.felix_result_free(r)
	return err
}

// Close releases the publisher (messages already queued are still sent). Idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	ptr := p.ptr
	p.ptr = nil
	p.mu.Unlock()
	if ptr != nil {
		runtime.SetFinalizer(p, nil)
		C.felix_publisher_free(ptr)
	}
	return nil
}
