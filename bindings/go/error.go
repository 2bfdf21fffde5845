package felix

// #include "felix.h"
import "C"

import (
	"context"
	"errors"
	"fmt"
)

// Code is a stable Felix error code, the same number and name in every language.
type Code uint16

// The stable error codes (docs/wire-protocol.md, section 6).
const (
	CodeInvalidArgument Code = 1
	CodeNotFound        Code = 2
	CodeAlreadyExists   Code = 3
	CodeConflict        Code = 4
	CodeUnauthorized    Code = 5
	CodeForbidden       Code = 6
	CodeOverloaded      Code = 7
	CodeFrameTooLarge   Code = 8
	CodeUnsupported     Code = 9
	CodeTimeout         Code = 10
	CodeUnavailable     Code = 11
	CodeProtocol        Code = 12
	CodeSlowConsumer    Code = 13
	CodeCancelled       Code = 14
	CodeClosed          Code = 15
	CodeInternal        Code = 16
	CodeQuotaExceeded   Code = 17
	CodeStorage         Code = 18
)

var codeNames = [...]string{"ok", "invalid_argument", "not_found", "already_exists", "conflict",
	"unauthorized", "forbidden", "overloaded", "frame_too_large", "unsupported", "timeout",
	"unavailable", "protocol", "slow_consumer", "cancelled", "closed", "internal",
	"quota_exceeded", "storage"}

// String is the stable snake_case name ("not_found").
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint16(c))
}

// Retryable reports whether a call failing with this code may succeed later.
func (c Code) Retryable() bool {
	return c == CodeOverloaded || c == CodeTimeout || c == CodeUnavailable ||
		c == CodeQuotaExceeded || c == CodeStorage
}

// Error is every error Felix returns. Match a kind with errors.Is(err, felix.ErrNotFound) or
// read the details with errors.As(err, &fe).
type Error struct {
	Code      Code
	Message   string
	Retryable bool
	cause     error
}

func (e *Error) Error() string { return e.Code.String() + ": " + e.Message }

// Is matches any *Error with the same code (so the Err* sentinels match).
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

// Unwrap gives the context error behind a cancellation or deadline.
func (e *Error) Unwrap() error { return e.cause }

func sentinel(c Code) *Error { return &Error{Code: c, Message: c.String(), Retryable: c.Retryable()} }

// Sentinels, one per code, for errors.Is.
var (
	ErrInvalidArgument = sentinel(CodeInvalidArgument)
	ErrNotFound        = sentinel(CodeNotFound)
	ErrAlreadyExists   = sentinel(CodeAlreadyExists)
	ErrConflict        = sentinel(CodeConflict)
	ErrUnauthorized    = sentinel(CodeUnauthorized)
	ErrForbidden       = sentinel(CodeForbidden)
	ErrOverloaded      = sentinel(CodeOverloaded)
	ErrFrameTooLarge   = sentinel(CodeFrameTooLarge)
	ErrUnsupported     = sentinel(CodeUnsupported)
	ErrTimeout         = sentinel(CodeTimeout)
	ErrUnavailable     = sentinel(CodeUnavailable)
	ErrProtocol        = sentinel(CodeProtocol)
	ErrSlowConsumer    = sentinel(CodeSlowConsumer)
	ErrCancelled       = sentinel(CodeCancelled)
	ErrClosed          = sentinel(CodeClosed)
	ErrInternal        = sentinel(CodeInternal)
	ErrQuotaExceeded   = sentinel(CodeQuotaExceeded)
	ErrStorage         = sentinel(CodeStorage)
)

// takeError turns a status and an owned C error into a Go error, freeing the C error.
func takeError(st C.FelixStatus, e *C.FelixError) error {
	if st == C.FELIX_STATUS_OK {
		return nil
	}
	code := Code(st)
	msg := code.String()
	if e != nil {
		msg = C.GoStringN(e.message, C.int(e.message_len))
		C.felix_error_free(e)
	}
	return &Error{Code: code, Message: msg, Retryable: code.Retryable()}
}

// ctxError maps a context error: cancellation to CodeCancelled, deadline to CodeTimeout; both
// unwrap to the context error (errors.Is(err, context.Canceled) holds).
func ctxError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: CodeTimeout, Message: "context deadline exceeded", Retryable: true, cause: err}
	}
	return &Error{Code: CodeCancelled, Message: "context cancelled", cause: err}
}

func closedError(what string) error {
	return &Error{Code: CodeClosed, Message: what + " was closed"}
}
