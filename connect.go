package plane

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// ConnectToken lets one user reach one backend through the drone proxy until
// it expires. The controller signs it; drones verify it locally with the
// controller's public key, without a round trip.
type ConnectToken struct {
	BackendID string
	User      string
	ExpiresAt time.Time // second precision
}

// DefaultConnectTokenTTL is how long a connect URL works.
const DefaultConnectTokenTTL = time.Hour

// MaxConnectTokenLen bounds a token read from a request.
const MaxConnectTokenLen = 2048

// connectTokenPrefix versions the format: "pc1." + payload + "." + signature,
// both base64url without padding; the signature covers everything before it.
const connectTokenPrefix = "pc1."

type connectPayload struct {
	B string `json:"b"`
	U string `json:"u,omitempty"`
	E int64  `json:"e"`
}

// SignConnectToken returns t signed with key.
func SignConnectToken(key ed25519.PrivateKey, t ConnectToken) string {
	payload, _ := json.Marshal(connectPayload{B: t.BackendID, U: t.User, E: t.ExpiresAt.Unix()})
	signed := connectTokenPrefix + base64.RawURLEncoding.EncodeToString(payload)
	sig := ed25519.Sign(key, []byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// VerifyConnectToken checks that one of keys signed s (the current key and,
// during a rotation, the others still accepted), and its expiry at now.
// Every failure is EUNAUTHORIZED; "has expired" is said as such so that a
// browser user knows to ask for a fresh link.
func VerifyConnectToken(s string, now time.Time, keys ...ed25519.PublicKey) (ConnectToken, error) {
	invalid := Errorf(EUNAUTHORIZED, "invalid connect token")
	if len(s) > MaxConnectTokenLen || !strings.HasPrefix(s, connectTokenPrefix) {
		return ConnectToken{}, invalid
	}
	// Only the characters the format uses: base64 decoding skips CR and LF,
	// and a token with them inserted must not verify (it ends up in headers).
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return ConnectToken{}, invalid
		}
	}
	dot := strings.LastIndexByte(s, '.')
	if dot < len(connectTokenPrefix) {
		return ConnectToken{}, invalid
	}
	sig, err := base64.RawURLEncoding.DecodeString(s[dot+1:])
	signedBy := func(key ed25519.PublicKey) bool {
		return len(key) == ed25519.PublicKeySize && ed25519.Verify(key, []byte(s[:dot]), sig)
	}
	if err != nil || len(sig) != ed25519.SignatureSize || !slices.ContainsFunc(keys, signedBy) {
		return ConnectToken{}, invalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(s[len(connectTokenPrefix):dot])
	if err != nil {
		return ConnectToken{}, invalid
	}
	var p connectPayload
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || ValidateBackendID(p.B) != nil {
		return ConnectToken{}, invalid
	}
	t := ConnectToken{BackendID: p.B, User: p.U, ExpiresAt: time.Unix(p.E, 0).UTC()}
	if !now.Before(t.ExpiresAt) {
		return t, Errorf(EUNAUTHORIZED, "connect token has expired: ask the app for a fresh link")
	}
	return t, nil
}
