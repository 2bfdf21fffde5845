package felix

// cgo flags, the ABI check and the completion-queue dispatcher: the only place that knows how
// the static library is found and how asynchronous calls come back.
//
// Linking: by default the package links the static library the workspace builds with
// `cargo build -p felix-ffi` (target/debug/libfelix_ffi.a). Build with `-tags felix_release`
// to link target/release instead (after `cargo build --release -p felix-ffi`), or with
// `-tags felix_custom` and CGO_LDFLAGS="/path/to/libfelix_ffi.a -lpthread -ldl -lm" to link
// a library elsewhere. `go generate` runs the cargo build.
//
// Threads: every call is started with a non-blocking `_start` function. A call made while no
// other is in flight (the common case of one goroutine talking to Felix) is started on a
// deferred queue and waited for with felix_completion_queue_wait_one: the goroutine's thread
// runs the call and drives the library's runtime itself, so request and reply need no
// hand-off between threads. Calls made while another is in flight go through one process-wide
// driven queue (felix_completion_queue_new_driven), served by the dispatch goroutine: see
// dispatch. However many goroutines call Felix at once, at most one OS thread is blocked in C
// for them (plus the library's runtime thread). With GOMAXPROCS=1 a lone call first yields:
// blocked in C it holds the only P, so goroutines about to call would otherwise wait for it
// (see await).

//go:generate cargo build -p felix-ffi --manifest-path ../../Cargo.toml

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo !felix_release,!felix_custom LDFLAGS: ${SRCDIR}/../../target/debug/libfelix_ffi.a -lpthread -ldl -lm
#cgo felix_release,!felix_custom LDFLAGS: ${SRCDIR}/../../target/release/libfelix_ffi.a -lpthread -ldl -lm
#include "felix.h"
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// ABIVersion is the C ABI version this package was written for.
const ABIVersion = 3

// LibraryStamp is set at link time (-ldflags=-X=...LibraryStamp=<hash of libfelix_ffi.a>) by
// test.sh. Go's build cache does not notice a rebuilt static library behind #cgo LDFLAGS and
// would link the old one; a new stamp changes the link and so forces the new library in.
var LibraryStamp string

// initErr is non-nil when the linked library does not match this package; Connect returns it.
var initErr error

var (
	// queue carries completions to dispatch; deferred holds calls their caller runs itself.
	queue     *C.FelixCompletionQueue
	deferred  *C.FelixCompletionQueue
	inflight  atomic.Int32 // calls in flight in this process
	queued    atomic.Int32 // calls started on queue whose completion is not yet handed out
	toRun     atomic.Int32 // goroutines handed a completion that have not resumed yet
	kick      = make(chan struct{}, 1)
	pendingMu sync.Mutex
	pending   = map[uint64]chan completion{}
	nextToken atomic.Uint64
	chanPool  = sync.Pool{New: func() any { return make(chan completion, 1) }}
)

type completion struct {
	status C.FelixStatus
	result *C.FelixResult
	err    *C.FelixError
}

func init() {
	if v := uint32(C.felix_abi_version()); v != ABIVersion || C.FELIX_ABI_VERSION != ABIVersion {
		initErr = fmt.Errorf("felix: the linked libfelix_ffi has C ABI version %d, this Go package needs %d: rebuild the library (cargo build -p felix-ffi) from the same checkout", v, ABIVersion)
		return
	}
	queue = C.felix_completion_queue_new_driven()
	deferred = C.felix_completion_queue_new_deferred()
	go dispatch()
}

// part is how many completions dispatch hands out before it sends the calls their goroutines
// started meanwhile (felix_completion_queue_poll). A whole batch at a time, the broker sat idle
// while every goroutine of the batch ran, then got all their calls at once; in parts, it works
// on the first part's calls while the rest run. Measured at 32 goroutines (bench, client on one
// core): parts of 6, 8, 12 and 16 all beat whole batches, 12–16 the most.
const part = 16

// dispatch hands every completion to the goroutine waiting for its token. While calls are in
// flight it waits in felix_completion_queue_wait, whose thread then drives the library's
// runtime: replies are read and completions produced on this goroutine's thread, with no
// wake-up from another thread, and one return delivers every completion of a turn. It hands
// them out in parts (see part); after each it lets their goroutines run, then sends the calls
// they started with felix_completion_queue_poll (which also takes replies that arrived
// meanwhile). With nothing in flight it parks on kick (no thread blocked).
func dispatch() {
	const max = 128
	var buf [max]C.FelixCompletion
	for range kick {
		for queued.Load() > 0 {
			var n C.size_t
			// A call started during the wait wakes it (driven queue); the bound only makes the
			// loop look at queued again now and then.
			if C.felix_completion_queue_wait(queue, &buf[0], max, 100, &n, nil) != C.FELIX_STATUS_OK {
				return
			}
			total := int(n)
			for off := 0; off < total; {
				end := min(off+part, total)
				handOut(buf[off:end])
				off = end
				if off == total {
					break // the next wait sends what the last part's goroutines started
				}
				if total == max { // make room for what the poll brings
					total = copy(buf[:], buf[off:total])
					off = 0
				}
				// Only a speed-up: a failed poll (it cannot fail but by a bug) leaves the rest
				// of the batch to be handed out all the same.
				var m C.size_t
				if C.felix_completion_queue_poll(queue, &buf[total], C.size_t(max-total), &m, nil) == C.FELIX_STATUS_OK {
					total += int(m)
				}
			}
		}
	}
}

// handOut gives each completion to its goroutine, then lets them run before dispatch goes back
// to C: their next calls, started meanwhile, then leave together (one packet, one wake-up of
// the broker) instead of each waking the dispatcher's wait.
func handOut(done []C.FelixCompletion) {
	toRun.Add(int32(len(done)))
	pendingMu.Lock()
	for i := range done {
		c := &done[i]
		ch := pending[uint64(c.token)]
		delete(pending, uint64(c.token))
		ch <- completion{status: c.status, result: c.result, err: c.error}
	}
	pendingMu.Unlock()
	queued.Add(-int32(len(done)))
	// Gosched alone lets the scheduler pick this goroutine again before all of them ran (it
	// checks the global queue every 61 turns). Bounded in time: a goroutine may be slow to
	// resume (other goroutines running, or one left over from an earlier part).
	runtime.Gosched()
	if toRun.Load() <= 0 {
		return
	}
	for start := time.Now(); toRun.Load() > 0 && time.Since(start) < settle; {
		runtime.Gosched()
	}
}

// settle bounds how long handOut waits for the goroutines it woke to resume.
const settle = 100 * time.Microsecond

// startFn starts one call on queue cq with the given token.
type startFn func(cq *C.FelixCompletionQueue, token C.uint64_t, errp **C.FelixError) C.FelixStatus

// await starts a call and waits for its completion or for ctx. On cancellation the call is
// cancelled in the core and its completion collected, so nothing leaks.
func await(ctx context.Context, start startFn) (*C.FelixResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, ctxError(err)
	}
	// A call alone in flight runs on this thread; with others in flight the runtime is busy
	// serving them, and handing it over to each caller in turn would cost more than it saves.
	n := inflight.Add(1)
	defer inflight.Add(-1)
	if n == 1 && alone() {
		return awaitHere(ctx, start)
	}
	token := nextToken.Add(1)
	ch := chanPool.Get().(chan completion)
	pendingMu.Lock()
	pending[token] = ch
	pendingMu.Unlock()
	if queued.Add(1) == 1 {
		select {
		case kick <- struct{}{}:
		default: // the dispatcher has a kick waiting already
		}
	}
	var cerr *C.FelixError
	if st := start(queue, C.uint64_t(token), &cerr); st != C.FELIX_STATUS_OK {
		queued.Add(-1)
		pendingMu.Lock()
		delete(pending, token)
		pendingMu.Unlock()
		chanPool.Put(ch)
		return nil, takeError(st, cerr)
	}
	var r completion
	if done := ctx.Done(); done == nil {
		r = <-ch // a context that cannot end: skip the select
	} else {
		select {
		case r = <-ch:
		case <-done:
			C.felix_completion_queue_cancel(queue, C.uint64_t(token))
			r = <-ch
		}
	}
	toRun.Add(-1)
	chanPool.Put(ch)
	return finish(ctx, r)
}

// alone says whether a call that is the only one in flight may run on this goroutine's thread
// (awaitHere). With GOMAXPROCS=1 that thread holds the only P while it waits in C, so no other
// goroutine runs until the call ends: goroutines about to call would each find theirs alone in
// turn, and calls from many goroutines would run one at a time (measured: 32 goroutines got
// 21 k gets/s instead of 170 k). So it first yields: if another call started meanwhile, this
// one joins it on the driven queue.
func alone() bool {
	if runtime.GOMAXPROCS(0) > 1 {
		return true
	}
	runtime.Gosched()
	return inflight.Load() == 1
}

// awaitHere runs the call on this goroutine's thread (deferred queue); ctx cancels it from
// another goroutine.
func awaitHere(ctx context.Context, start startFn) (*C.FelixResult, error) {
	token := C.uint64_t(nextToken.Add(1))
	var cerr *C.FelixError
	if st := start(deferred, token, &cerr); st != C.FELIX_STATUS_OK {
		return nil, takeError(st, cerr)
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { C.felix_completion_queue_cancel(deferred, token) })
		defer stop()
	}
	var c C.FelixCompletion
	if st := C.felix_completion_queue_wait_one(deferred, token, &c, &cerr); st != C.FELIX_STATUS_OK {
		return nil, takeError(st, cerr)
	}
	return finish(ctx, completion{status: c.status, result: c.result, err: c.error})
}

// finish turns a completion into the call's outcome; a call cancelled because ctx ended
// reports ctx's error.
func finish(ctx context.Context, r completion) (*C.FelixResult, error) {
	if r.status == C.FELIX_STATUS_OK {
		return r.result, nil
	}
	if r.status == C.FELIX_STATUS_CANCELLED && ctx.Err() != nil {
		C.felix_error_free(r.err)
		return nil, ctxError(ctx.Err())
	}
	return nil, takeError(r.status, r.err)
}

// awaitValue runs a call whose answer is the result's scalar value.
func awaitValue(ctx context.Context, start startFn) (uint64, error) {
	r, err := await(ctx, start)
	if err != nil {
		return 0, err
	}
	defer C.felix_result_free(r)
	if r == nil {
		return 0, nil
	}
	return uint64(r.value), nil
}

// cbytes views a Go string as FelixBytes (valid for the duration of one C call, which copies).
func cstr(s string) C.FelixBytes {
	return C.FelixBytes{ptr: (*C.uint8_t)(unsafe.Pointer(unsafe.StringData(s))), len: C.size_t(len(s))}
}

// cbytes views a Go byte slice as FelixBytes (valid for the duration of one C call).
func cbytes(b []byte) C.FelixBytes {
	return C.FelixBytes{ptr: (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(b))), len: C.size_t(len(b))}
}

// cstrs views strings as a FelixBytes array; the pinner keeps the strings pinned while C reads.
func cstrs(p *runtime.Pinner, ss []string) []C.FelixBytes {
	out := make([]C.FelixBytes, len(ss))
	for i, s := range ss {
		if len(s) > 0 {
			p.Pin(unsafe.StringData(s))
		}
		out[i] = cstr(s)
	}
	return out
}

func cbytesList(p *runtime.Pinner, bs [][]byte) []C.FelixBytes {
	out := make([]C.FelixBytes, len(bs))
	for i, b := range bs {
		if len(b) > 0 {
			p.Pin(unsafe.SliceData(b))
		}
		out[i] = cbytes(b)
	}
	return out
}

func firstOrNil(bs []C.FelixBytes) *C.FelixBytes {
	if len(bs) == 0 {
		return nil
	}
	return &bs[0]
}

// items views a result's items.
func items(r *C.FelixResult) []C.FelixItem {
	if r == nil || r.len == 0 {
		return nil
	}
	return unsafe.Slice(r.items, int(r.len))
}

func goBytes(b C.FelixBytes) []byte {
	if b.len == 0 {
		return []byte{}
	}
	return C.GoBytes(unsafe.Pointer(b.ptr), C.int(b.len))
}

func goString(b C.FelixBytes) string {
	if b.len == 0 {
		return ""
	}
	return C.GoStringN((*C.char)(unsafe.Pointer(b.ptr)), C.int(b.len))
}
