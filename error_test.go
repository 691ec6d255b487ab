package plane_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"plane"
)

func TestErrorCodeAndMessageOf(t *testing.T) {
	notFound := plane.Errorf(plane.ENOTFOUND, "backend %q not found", "abc")
	field := plane.FieldErrorf("port", "must be between 1 and 65535 (got %d)", 0)
	tests := []struct {
		name    string
		err     error
		code    plane.ErrorCode
		message string
	}{
		{"nil", nil, "", ""},
		{"*Error", notFound, plane.ENOTFOUND, `backend "abc" not found`},
		{"field error", field, plane.EINVALID, "port: must be between 1 and 65535 (got 0)"},
		{"wrapped once", fmt.Errorf("finding backend: %w", notFound), plane.ENOTFOUND, `backend "abc" not found`},
		{"wrapped twice", fmt.Errorf("handler: %w", fmt.Errorf("store: %w", field)), plane.EINVALID, "port: must be between 1 and 65535 (got 0)"},
		{"joined", errors.Join(errors.New("first"), notFound), plane.ENOTFOUND, `backend "abc" not found`},
		{"conflict", plane.Errorf(plane.ECONFLICT, "name %q is taken", "demo"), plane.ECONFLICT, `name "demo" is taken`},
		{"unavailable", plane.Errorf(plane.EUNAVAILABLE, "no drone"), plane.EUNAVAILABLE, "no drone"},
		{"plain error", errors.New("sql: database is locked at /var/lib/plane.db"), plane.EINTERNAL, "internal error"},
		{"wrapped plain error", fmt.Errorf("creating backend: %w", errors.New("disk full")), plane.EINTERNAL, "internal error"},
		{"plain error wrapping %v", fmt.Errorf("creating backend: %v", notFound), plane.EINTERNAL, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := plane.ErrorCodeOf(tt.err); got != tt.code {
				t.Errorf("ErrorCodeOf = %q, want %q", got, tt.code)
			}
			if got := plane.ErrorMessageOf(tt.err); got != tt.message {
				t.Errorf("ErrorMessageOf = %q, want %q", got, tt.message)
			}
		})
	}
}

func TestErrorConstructors(t *testing.T) {
	e := plane.Errorf(plane.EFORBIDDEN, "scope %s missing", "images:write")
	if *e != (plane.Error{Code: plane.EFORBIDDEN, Message: "scope images:write missing"}) {
		t.Errorf("Errorf = %+v", *e)
	}
	if got, want := e.Error(), "forbidden: scope images:write missing"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	f := plane.FieldErrorf("key", "longer than %d bytes", 256)
	if *f != (plane.Error{Code: plane.EINVALID, Field: "key", Message: "key: longer than 256 bytes"}) {
		t.Errorf("FieldErrorf = %+v", *f)
	}
}

func TestReplyRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		json    string
		code    plane.ErrorCode // of Err(); "" for nil
		message string
	}{
		{"success", nil, `{}`, "", ""},
		{"invalid", plane.FieldErrorf("image_ref", "is required"), `{"error":{"code":"invalid","message":"image_ref: is required"}}`, plane.EINVALID, "image_ref: is required"},
		{"wrapped not found", fmt.Errorf("terminate: %w", plane.Errorf(plane.ENOTFOUND, "no backend abc")), `{"error":{"code":"not_found","message":"no backend abc"}}`, plane.ENOTFOUND, "no backend abc"},
		{"internal details stay home", errors.New("docker: socket /var/run/docker.sock: permission denied"), `{"error":{"code":"internal","message":"internal error"}}`, plane.EINTERNAL, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := plane.ReplyOf(tt.err)
			data, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != tt.json {
				t.Errorf("json = %s, want %s", data, tt.json)
			}
			var back plane.Reply
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, r) {
				t.Errorf("decoded %+v, want %+v", back, r)
			}
			got := back.Err()
			if tt.code == "" {
				if got != nil {
					t.Fatalf("Err() = %v, want nil", got)
				}
				return
			}
			if plane.ErrorCodeOf(got) != tt.code || plane.ErrorMessageOf(got) != tt.message {
				t.Errorf("Err() = code %q message %q, want %q %q", plane.ErrorCodeOf(got), plane.ErrorMessageOf(got), tt.code, tt.message)
			}
			// The far side sees the same code and message as the near side.
			if plane.ErrorCodeOf(got) != plane.ErrorCodeOf(tt.err) || plane.ErrorMessageOf(got) != plane.ErrorMessageOf(tt.err) {
				t.Errorf("round trip changed the error: %v → %v", tt.err, got)
			}
		})
	}
}

func TestReplyErrWithoutCode(t *testing.T) {
	var r plane.Reply
	if err := json.Unmarshal([]byte(`{"error":{"message":"boom"}}`), &r); err != nil {
		t.Fatal(err)
	}
	err := r.Err()
	if plane.ErrorCodeOf(err) != plane.EINTERNAL || plane.ErrorMessageOf(err) != "boom" {
		t.Errorf("Err() = %v, want an internal error with message boom", err)
	}
	if err := (plane.Reply{}).Err(); err != nil {
		t.Errorf("empty reply: Err() = %v, want nil", err)
	}
}
