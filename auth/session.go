package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"

	"plane"
)

// secretBytes is the entropy of session and invite secrets (256 bits).
const secretBytes = 32

// secretEncoding writes secrets for cookies and links. Strict decoding
// accepts exactly one spelling of each secret.
var secretEncoding = base64.RawURLEncoding.Strict()

// secretLen is the length of an encoded secret (43 characters).
var secretLen = secretEncoding.EncodedLen(secretBytes)

// Messages of the session errors a browser can cause.
const (
	msgNoSession      = "not signed in"
	msgInvalidSession = "session is invalid or has expired: sign in again"
)

// NewSecret returns a random secret for a session cookie or an invite link,
// and the hash to store in its place (plane.Session.ID,
// plane.Invite.TokenHash).
func NewSecret() (secret, hash string, err error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("new secret: %w", err)
	}
	secret = secretEncoding.EncodeToString(b)
	return secret, HashSecret(secret), nil
}

// HashSecret returns the hex SHA-256 of secret: what the store keeps, so a
// copy of the store signs no one in. A fast hash is enough for 256 random
// bits.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// validSecret reports whether s is spelled as NewSecret spells secrets, so
// that garbage from a cookie never reaches the store.
func validSecret(s string) bool {
	if len(s) != secretLen {
		return false
	}
	b, err := secretEncoding.DecodeString(s)
	return err == nil && len(b) == secretBytes
}

// Sessions signs browsers in and out. The cookie holds the secret; the store
// holds its hash.
type Sessions struct {
	Users plane.UserService
	TTL   time.Duration    // plane.SessionTTL when zero
	Now   func() time.Time // time.Now when nil
}

// Create starts a session for userID and returns the secret to set as the
// cookie.
func (s *Sessions) Create(ctx context.Context, userID int64) (string, *plane.Session, error) {
	secret, hash, err := NewSecret()
	if err != nil {
		return "", nil, err
	}
	ttl := s.TTL
	if ttl <= 0 {
		ttl = plane.SessionTTL
	}
	now := s.now()
	sess := &plane.Session{ID: hash, UserID: userID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := s.Users.CreateSession(ctx, sess); err != nil {
		return "", nil, fmt.Errorf("create session: %w", err)
	}
	return secret, sess, nil
}

// Lookup returns the signed-in user of the cookie's secret. A missing,
// malformed, unknown or expired secret, or one whose user is gone, is an
// plane.EUNAUTHORIZED error; a store failure is returned wrapped.
func (s *Sessions) Lookup(ctx context.Context, secret string) (*plane.User, *plane.Session, error) {
	if secret == "" {
		return nil, nil, plane.Errorf(plane.EUNAUTHORIZED, msgNoSession)
	}
	if !validSecret(secret) {
		return nil, nil, plane.Errorf(plane.EUNAUTHORIZED, msgInvalidSession)
	}
	sess, err := s.Users.FindSession(ctx, HashSecret(secret))
	if err := storeErr(err, sess == nil, "find session"); err != nil {
		return nil, nil, err
	}
	// The store drops expired sessions by its own clock; this clock decides.
	if !s.now().Before(sess.ExpiresAt) {
		return nil, nil, plane.Errorf(plane.EUNAUTHORIZED, msgInvalidSession)
	}
	u, err := s.Users.FindUserByID(ctx, sess.UserID)
	if err := storeErr(err, u == nil, "find session user"); err != nil {
		return nil, nil, err
	}
	return u, sess, nil
}

// storeErr maps the outcome of a store lookup for Lookup: a missing record
// (a deleted session or user) is the browser's EUNAUTHORIZED, any other
// failure is the store's, wrapped with what was being done.
func storeErr(err error, missing bool, doing string) error {
	switch {
	case plane.ErrorCodeOf(err) == plane.ENOTFOUND, err == nil && missing:
		return plane.Errorf(plane.EUNAUTHORIZED, msgInvalidSession)
	case err != nil:
		return fmt.Errorf("%s: %w", doing, err)
	}
	return nil
}

// Rotate ends the session of oldSecret, if there is one, and starts a new one
// for userID. Login calls it so that a secret planted in the browser before
// sign-in (session fixation) never becomes a signed-in session.
func (s *Sessions) Rotate(ctx context.Context, oldSecret string, userID int64) (string, *plane.Session, error) {
	if err := s.Delete(ctx, oldSecret); err != nil {
		return "", nil, err
	}
	return s.Create(ctx, userID)
}

// Delete ends the session of secret. Signing out twice, or with a cookie
// that names no session, is not an error.
func (s *Sessions) Delete(ctx context.Context, secret string) error {
	if !validSecret(secret) {
		return nil
	}
	err := s.Users.DeleteSession(ctx, HashSecret(secret))
	if err != nil && plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

func (s *Sessions) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}
