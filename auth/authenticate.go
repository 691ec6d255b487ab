package auth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"plane"
)

// TouchInterval is how often at most a token's last use is written to the
// store: a busy token would otherwise cost a write per request.
const TouchInterval = time.Minute

// maxTokenLen bounds the bearer strings worth parsing; real tokens are a few
// hundred bytes.
const maxTokenLen = 4096

// maxTouched bounds the in-memory map of recent touches.
const maxTouched = 10000

// User-facing messages. They say what the caller can act on and nothing about
// why a token failed to parse or verify.
const (
	msgMissing = "missing API token"
	msgInvalid = "invalid token"
	msgExpired = "token has expired"
	msgRevoked = "token has been revoked"
)

// Authenticator verifies API tokens against the signing key and the token
// records. It must not be copied after first use.
type Authenticator struct {
	// Key verifies tokens; Accept are the other keys whose tokens are
	// still good (a rotation of the signing key).
	Key    ed25519.PublicKey
	Accept []ed25519.PublicKey
	Tokens plane.TokenService
	Now    func() time.Time // time.Now when nil
	Logger *slog.Logger     // slog.Default() when nil

	mu      sync.Mutex
	touched map[string]time.Time // token ID → time of the last TouchToken
}

// Authenticate returns the record of the API token bearer (with or without a
// leading "Bearer "). Every failure the caller can cause is an
// plane.EUNAUTHORIZED error; a store failure is returned as an internal error.
func (a *Authenticator) Authenticate(ctx context.Context, bearer string) (*plane.Token, error) {
	raw := strings.TrimSpace(bearer)
	if len(raw) >= 6 && strings.EqualFold(raw[:6], "bearer") && (len(raw) == 6 || raw[6] == ' ' || raw[6] == '\t') {
		raw = strings.TrimSpace(raw[6:])
	}
	if raw == "" {
		return nil, plane.Errorf(plane.EUNAUTHORIZED, msgMissing)
	}
	if len(raw) > maxTokenLen {
		return nil, plane.Errorf(plane.EUNAUTHORIZED, msgInvalid)
	}
	if len(a.Key) != ed25519.PublicKeySize || a.Tokens == nil {
		return nil, errors.New("authenticate: authenticator needs a verification key and a token service")
	}
	now := a.now()

	var claims apiClaims
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	_, err := parser.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		// WithValidMethods already checks alg; checking the type too keeps a
		// future option change from ever handing the key to another method.
		if _, ok := t.Method.(*jwt.SigningMethodEd25519); !ok {
			return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
		}
		keys := jwt.VerificationKeySet{Keys: []jwt.VerificationKey{a.Key}}
		for _, k := range a.Accept {
			keys.Keys = append(keys.Keys, k)
		}
		return keys, nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, plane.Errorf(plane.EUNAUTHORIZED, msgExpired)
	case err != nil:
		return nil, plane.Errorf(plane.EUNAUTHORIZED, msgInvalid)
	}
	if claims.Type != TokenTypeAPI || claims.ID == "" || len(claims.ID) > maxTokenIDLen {
		return nil, plane.Errorf(plane.EUNAUTHORIZED, msgInvalid)
	}
	projectID, err := strconv.ParseInt(claims.Subject, 10, 64)
	if err != nil || projectID <= 0 {
		return nil, plane.Errorf(plane.EUNAUTHORIZED, msgInvalid)
	}

	rec, err := a.Tokens.FindTokenByID(ctx, claims.ID)
	switch {
	case plane.ErrorCodeOf(err) == plane.ENOTFOUND:
		// A validly signed token without a record: deleted, or issued by a
		// store since wiped. Either way it no longer exists.
		return nil, plane.Errorf(plane.EUNAUTHORIZED, msgInvalid)
	case err != nil:
		return nil, fmt.Errorf("authenticate: find token: %w", err)
	case rec == nil:
		return nil, plane.Errorf(plane.EUNAUTHORIZED, msgInvalid)
	}
	if rec.RevokedAt != nil {
		return nil, plane.Errorf(plane.EUNAUTHORIZED, msgRevoked)
	}
	if !rec.Usable(now) {
		return nil, plane.Errorf(plane.EUNAUTHORIZED, msgExpired)
	}
	if rec.ID != claims.ID || rec.ProjectID != projectID {
		return nil, plane.Errorf(plane.EUNAUTHORIZED, msgInvalid)
	}

	a.touch(ctx, rec, now)
	return rec, nil
}

// touch records the use of rec in the store unless it was recorded less than
// TouchInterval ago, by this process or (as LastUsedAt shows) another one. A
// failed write does not fail the request: last use is informational.
func (a *Authenticator) touch(ctx context.Context, rec *plane.Token, now time.Time) {
	recent := func(t time.Time) bool { d := now.Sub(t); return d >= 0 && d < TouchInterval }

	a.mu.Lock()
	if last, ok := a.touched[rec.ID]; ok && recent(last) {
		a.mu.Unlock()
		return
	}
	if a.touched == nil {
		a.touched = make(map[string]time.Time)
	}
	if len(a.touched) >= maxTouched {
		for id, t := range a.touched {
			if !recent(t) {
				delete(a.touched, id)
			}
		}
		if len(a.touched) >= maxTouched {
			clear(a.touched) // worst case: one extra write per token
		}
	}
	if rec.LastUsedAt != nil && recent(*rec.LastUsedAt) {
		a.touched[rec.ID] = *rec.LastUsedAt
		a.mu.Unlock()
		return
	}
	a.touched[rec.ID] = now
	a.mu.Unlock()

	if err := a.Tokens.TouchToken(ctx, rec.ID, now); err != nil {
		a.mu.Lock()
		if t, ok := a.touched[rec.ID]; ok && t.Equal(now) {
			delete(a.touched, rec.ID) // retry on the next use
		}
		a.mu.Unlock()
		if ctx.Err() == nil {
			a.logger().Warn("record token use", "token", rec.ID, "err", err)
		}
		return
	}
	at := now
	rec.LastUsedAt = &at
}

func (a *Authenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Authenticator) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}
