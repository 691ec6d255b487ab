package plane_test

import (
	"errors"
	"strings"
	"testing"

	"plane"
)

// ptr returns a pointer to v, for the optional fields of inputs.
func ptr[T any](v T) *T { return &v }

// assertInvalid fails unless err is an EINVALID *plane.Error about field
// (whose message then starts with "field: ") and, when contains is not empty,
// whose message holds contains. An empty field expects an error about no
// field in particular (malformed or oversized bodies).
func assertInvalid(tb testing.TB, err error, field, contains string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("got no error, want an invalid error about field %q", field)
	}
	var e *plane.Error
	if !errors.As(err, &e) {
		tb.Fatalf("error %q is a %T, want a *plane.Error", err, err)
	}
	if e.Code != plane.EINVALID {
		tb.Errorf("code = %q, want %q (error %q)", e.Code, plane.EINVALID, err)
	}
	if e.Field != field {
		tb.Errorf("field = %q, want %q (error %q)", e.Field, field, err)
	}
	if field != "" && !strings.HasPrefix(e.Message, field+": ") {
		tb.Errorf("message %q does not start with the field name %q", e.Message, field+": ")
	}
	if contains != "" && !strings.Contains(e.Message, contains) {
		tb.Errorf("message %q does not contain %q", e.Message, contains)
	}
}
