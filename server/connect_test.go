package server

import (
	"crypto/ed25519"
	"net/url"
	"strings"
	"testing"
	"time"

	"plane"
)

func TestConnectURL(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		token   string
		want    string
	}{
		{"bare", "http://{id}.plane.localhost:9090/", "pc1.abc.def", "http://b1.plane.localhost:9090/?plane_token=pc1.abc.def"},
		{"escaped", "https://{id}.example.com/", "a+b/c=d&e", "https://b1.example.com/?plane_token=a%2Bb%2Fc%3Dd%26e"},
		{"existing query kept", "https://example.com/{id}/?x=1", "t", "https://example.com/b1/?plane_token=t&x=1"},
		{"stale token replaced", "https://{id}.example.com/?plane_token=old", "new", "https://b1.example.com/?plane_token=new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{BackendURL: func(id string) string { return strings.ReplaceAll(tt.pattern, "{id}", id) }})
			got := s.connectURL("b1", tt.token)
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			u, err := url.Parse(got)
			if err != nil || u.Query().Get(connectTokenParam) != tt.token {
				t.Fatalf("token does not survive a parse: %v %v", u, err)
			}
		})
	}
}

func TestConnectToken(t *testing.T) {
	if _, _, ok := New(Config{}).connectToken("b1", "u"); ok {
		t.Fatal("a server without a key signed a token")
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{ConnectKey: priv})
	if s.ConnectTokenTTL != plane.DefaultConnectTokenTTL {
		t.Fatalf("default TTL %v, want %v", s.ConnectTokenTTL, plane.DefaultConnectTokenTTL)
	}
	tok, exp, ok := s.connectToken("b1", "alice")
	if !ok {
		t.Fatal("no token")
	}
	ct, err := plane.VerifyConnectToken(pub, tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if ct.BackendID != "b1" || ct.User != "alice" || !ct.ExpiresAt.Equal(exp) {
		t.Fatalf("token %+v, expiry said %v", ct, exp)
	}
	if d := time.Until(exp) - plane.DefaultConnectTokenTTL; d > 0 || d < -2*time.Second {
		t.Fatalf("expires %v from now, want about %v", time.Until(exp), plane.DefaultConnectTokenTTL)
	}
}
