package plane

import (
	"errors"
	"fmt"
)

// ErrorCode classifies an error for clients. The HTTP status for each code
// lives in one table in package server.
type ErrorCode string

const (
	EINVALID      ErrorCode = "invalid"
	EUNAUTHORIZED ErrorCode = "unauthorized"
	EFORBIDDEN    ErrorCode = "forbidden"
	ENOTFOUND     ErrorCode = "not_found"
	ECONFLICT     ErrorCode = "conflict"
	EUNAVAILABLE  ErrorCode = "unavailable"
	EINTERNAL     ErrorCode = "internal"
)

// Error is an error meant for users: its message is safe to show. Field names
// the offending input field, when there is one.
type Error struct {
	Code    ErrorCode
	Message string
	Field   string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldErrorf returns an EINVALID error about one input field; the message
// starts with the field name so that users see at once what to fix.
func FieldErrorf(field, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
}

// ErrorCodeOf returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error, and "" for nil.
func ErrorCodeOf(err error) ErrorCode {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessageOf returns the user-facing message of err. Internal errors get
// a generic message: their details are for logs, never for clients.
func ErrorMessageOf(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
