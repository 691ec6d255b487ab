package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"plane"
	"plane/server/webhook"
)

// The Standard Webhooks specification's published example: its reference
// libraries all sign this message so (svix's and standard-webhooks' tests).
func TestSignSpecVector(t *testing.T) {
	const (
		secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		id     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		body   = `{"test": 2432232314}`
		want   = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	for _, sec := range []string{secret, strings.TrimPrefix(secret, plane.WebhookSecretPrefix)} {
		got, err := webhook.Sign(sec, id, time.Unix(1614265330, 0), []byte(body))
		if err != nil || got != want {
			t.Errorf("Sign with %q: %q, %v; want %q", sec, got, err, want)
		}
	}
}

func TestSignRefuses(t *testing.T) {
	tests := []struct{ name, secret, id string }{
		{"a secret that is not base64", "whsec_not base64!", "msg_1"},
		{"an empty secret", "whsec_", "msg_1"},
		{"an id with a dot", "whsec_c2VjcmV0", "msg.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if sig, err := webhook.Sign(tt.secret, tt.id, time.Now(), []byte("{}")); err == nil {
				t.Fatalf("signed: %q", sig)
			}
		})
	}
}

// New secrets are the specification's format: whsec_ and 32 random bytes.
func TestNewWebhookSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		s, err := plane.NewWebhookSecret()
		if err != nil {
			t.Fatal(err)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if !strings.HasPrefix(s, "whsec_") || err != nil || len(key) != 32 || seen[s] {
			t.Fatalf("secret %q: %v, %d bytes, seen %v", s, err, len(key), seen[s])
		}
		seen[s] = true
	}
}

// verify checks a received message as a receiver would, written from the
// specification rather than from Sign: the three headers, a timestamp
// within five minutes of now, and one of the space-separated "v1,"
// signatures equal, in constant time, to the HMAC-SHA256 of
// "id.timestamp.body" keyed with the secret's base64 key.
func verify(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing headers")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q: %v", ts, err)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %d is %v away", sec, d)
	}
	key, err := base64.StdEncoding.DecodeString(secret[len("whsec_"):])
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	expected := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(raw, expected) {
			return nil
		}
	}
	return errors.New("no signature matches")
}

// The independent verifier accepts the specification's example too, so
// that it checks what a receiver's library would.
func TestVerifierAcceptsSpecVector(t *testing.T) {
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	if err := verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", h, []byte(`{"test": 2432232314}`), time.Unix(1614265330, 0)); err != nil {
		t.Fatal(err)
	}
	if err := verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", h, []byte(`{"test": 2432232315}`), time.Unix(1614265330, 0)); err == nil {
		t.Fatal("a changed body verified")
	}
}
