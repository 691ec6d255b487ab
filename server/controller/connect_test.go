package controller_test

import (
	"crypto/ed25519"
	"net/url"
	"strings"
	"testing"
	"time"

	"plane"
	"plane/server/controller"
)

func TestConnectURL(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	live := &plane.Backend{ID: "b1", Status: plane.StatusReady}
	tests := []struct {
		name    string
		pattern string
		want    string // with TOKEN for the token
	}{
		{"bare", "http://{id}.plane.localhost:9090/", "http://b1.plane.localhost:9090/?plane_token=TOKEN"},
		{"existing query kept", "https://example.com/{id}/?x=1", "https://example.com/b1/?plane_token=TOKEN&x=1"},
		{"stale token replaced", "https://{id}.example.com/?plane_token=old", "https://b1.example.com/?plane_token=TOKEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &controller.Core{ConnectKey: priv, URLPattern: func(id string) string { return strings.ReplaceAll(tt.pattern, "{id}", id) }}
			conn, err := c.Connect(live, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.ReplaceAll(tt.want, "TOKEN", url.QueryEscape(conn.Token)); conn.URL != want {
				t.Fatalf("got %q, want %q", conn.URL, want)
			}
			u, err := url.Parse(conn.URL)
			if err != nil || u.Query().Get(controller.ConnectTokenParam) != conn.Token {
				t.Fatalf("token does not survive a parse: %v %v", u, err)
			}
		})
	}
}

func TestConnect(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	live := &plane.Backend{ID: "b1", Status: plane.StatusReady}
	if _, err := (&controller.Core{}).Connect(live, "u"); plane.ErrorCodeOf(err) != plane.EUNAVAILABLE {
		t.Fatalf("a core without a key: %v", err)
	}
	c := &controller.Core{ConnectKey: priv, URLPattern: func(id string) string { return "http://" + id + ".plane.localhost/" }}
	if _, err := c.Connect(&plane.Backend{ID: "b2", Status: plane.StatusTerminated}, "u"); plane.ErrorCodeOf(err) != plane.ECONFLICT {
		t.Fatalf("a terminated backend: %v", err)
	}
	conn, err := c.Connect(live, "alice")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := plane.VerifyConnectToken(conn.Token, time.Now(), pub)
	if err != nil {
		t.Fatal(err)
	}
	if ct.BackendID != "b1" || ct.User != "alice" || !ct.ExpiresAt.Equal(conn.ExpiresAt) {
		t.Fatalf("token %+v, expiry said %v", ct, conn.ExpiresAt)
	}
	if d := time.Until(conn.ExpiresAt) - plane.DefaultConnectTokenTTL; d > 0 || d < -2*time.Second {
		t.Fatalf("expires %v from now, want about %v", time.Until(conn.ExpiresAt), plane.DefaultConnectTokenTTL)
	}
}
