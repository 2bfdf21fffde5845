package felix

// Token callbacks through the C ABI: the Go function is kept behind a cgo.Handle stored in C
// memory (the library's user data), called from a library thread through the exported
// trampoline below, and released when the library frees the user data.

/*
#include <stdlib.h>
#include "felix.h"
extern int32_t felixGoTokenCallback(void *user_data, uint8_t *out, size_t cap, size_t *out_len);
extern void felixGoTokenFree(void *user_data);
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"unsafe"
)

// setTokenCallback makes f the token callback of opts. The library releases the handle
// exactly once, whatever the connect's outcome, provided opts reach felix_client_connect(_start):
// call it only right before that call (a Connect whose ctx ended before would leak the handle).
func setTokenCallback(opts *C.FelixConnectOptions, f func() (string, error)) {
	ud := C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0))))
	*(*C.uintptr_t)(ud) = C.uintptr_t(cgo.NewHandle(f))
	opts.token_callback = C.FelixTokenCallback(C.felixGoTokenCallback)
	opts.token_user_data = ud
	opts.token_user_data_free = C.FelixUserDataFree(C.felixGoTokenFree)
}

//export felixGoTokenCallback
func felixGoTokenCallback(userData unsafe.Pointer, out *C.uint8_t, capacity C.size_t, outLen *C.size_t) (status C.int32_t) {
	buf := unsafe.Slice((*byte)(unsafe.Pointer(out)), int(capacity))
	fail := func(msg string) C.int32_t {
		*outLen = C.size_t(copy(buf, msg))
		return C.FELIX_STATUS_UNAUTHORIZED
	}
	defer func() {
		if r := recover(); r != nil {
			status = fail(fmt.Sprintf("TokenSource panicked: %v", r))
		}
	}()
	f := cgo.Handle(*(*C.uintptr_t)(userData)).Value().(func() (string, error))
	tok, err := f()
	if err != nil {
		return fail("TokenSource: " + err.Error())
	}
	if len(tok) > len(buf) {
		return fail(fmt.Sprintf("TokenSource returned %d bytes, more than %d", len(tok), len(buf)))
	}
	*outLen = C.size_t(copy(buf, tok))
	return C.FELIX_STATUS_OK
}

//export felixGoTokenFree
func felixGoTokenFree(userData unsafe.Pointer) {
	cgo.Handle(*(*C.uintptr_t)(userData)).Delete()
	C.free(userData)
}
