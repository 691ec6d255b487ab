package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"plane"
	"plane/api"
)

// The client against the real API is tested in cmd/plane (the command line
// drives a real controller); these cases cover what a server can answer
// that no real one does.

func TestNewClient(t *testing.T) {
	for _, tt := range []struct {
		url, token string
		ok         bool
	}{
		{"http://127.0.0.1:8080", "t", true},
		{"https://plane.example/", "t", true},
		{"http://127.0.0.1:8080", "", false},
		{"127.0.0.1:8080", "t", false},
		{"ftp://plane.example", "t", false},
		{"http://", "t", false},
		{"http://%zz", "t", false},
	} {
		if _, err := api.NewClient(tt.url, tt.token, nil); (err == nil) != tt.ok {
			t.Errorf("NewClient(%q, %q): %v, want ok %v", tt.url, tt.token, err, tt.ok)
		}
	}
}

func TestClientErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		body   string
		want   *plane.Error // nil: a plain error naming the status
	}{
		{"API error", 404, `{"error":{"code":"not_found","message":"backend \"x\" not found"}}`,
			&plane.Error{Code: plane.ENOTFOUND, Message: `backend "x" not found`}},
		{"field error", 400, `{"error":{"code":"invalid","message":"must be positive","field":"max_idle_seconds"}}`,
			&plane.Error{Code: plane.EINVALID, Message: "must be positive", Field: "max_idle_seconds"}},
		{"not JSON", 502, `<html>bad gateway</html>`, nil},
		{"empty message", 500, `{"error":{"code":"internal"}}`, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer tok" {
					t.Errorf("Authorization %q", r.Header.Get("Authorization"))
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c, err := api.NewClient(srv.URL, "tok", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Backend(context.Background(), "x")
			var pe *plane.Error
			switch {
			case tt.want == nil && err == nil:
				t.Fatal("no error")
			case tt.want == nil && errors.As(err, &pe):
				t.Fatalf("got API error %v from a body that is none", pe)
			case tt.want != nil && (!errors.As(err, &pe) || *pe != *tt.want):
				t.Fatalf("err = %#v, want %#v", err, tt.want)
			}
		})
	}
}
