package auth

import (
	"context"
	"fmt"
	"time"
)

// Login limits: the dashboard allows LoginMaxFailures failed logins per
// LoginWindow for each client address and for each email.
const (
	LoginMaxFailures = 5
	LoginWindow      = 5 * time.Minute
)

// Limiter counts failures per key (a client address, an email) in a sliding
// window and refuses a key once it has max failures in the last window. The
// failures are in the store, so that a client cannot get a fresh count by
// reaching another controller of the cluster, nor by a restart.
type Limiter struct {
	store  LoginFailures
	max    int
	window time.Duration
}

// LoginFailures is where a Limiter counts: the store (plane.UserService).
type LoginFailures interface {
	RecentLoginFailures(ctx context.Context, key string, since time.Time, limit int) ([]time.Time, error)
	RecordLoginFailure(ctx context.Context, key string, at, forgetBefore time.Time) error
	ClearLoginFailures(ctx context.Context, key string) error
}

// NewLimiter returns a limiter allowing maxFailures failures per window and
// key, counted in store.
func NewLimiter(store LoginFailures, maxFailures int, window time.Duration) *Limiter {
	if maxFailures < 1 || window <= 0 {
		panic("auth: NewLimiter needs maxFailures >= 1 and window > 0")
	}
	return &Limiter{store: store, max: maxFailures, window: window}
}

// Allow reports whether key may try again at now; when not, retryAfter says
// how long until it may.
func (l *Limiter) Allow(ctx context.Context, key string, now time.Time) (ok bool, retryAfter time.Duration, err error) {
	f, err := l.store.RecentLoginFailures(ctx, key, now.Add(-l.window), l.max)
	if err != nil {
		return false, 0, fmt.Errorf("count failed logins: %w", err)
	}
	if len(f) < l.max {
		return true, 0, nil
	}
	// The oldest of the last max failures leaves the window first. A clock
	// set back never makes the wait longer than one window.
	oldest := f[len(f)-1]
	return false, min(max(oldest.Add(l.window).Sub(now), 0), l.window), nil
}

// Fail records a failed attempt of key at now, and forgets the failures of
// every key that have left the window.
func (l *Limiter) Fail(ctx context.Context, key string, now time.Time) error {
	if err := l.store.RecordLoginFailure(ctx, key, now, now.Add(-l.window)); err != nil {
		return fmt.Errorf("record failed login: %w", err)
	}
	return nil
}

// Reset forgets key's failures, as after a successful login.
func (l *Limiter) Reset(ctx context.Context, key string) error {
	if err := l.store.ClearLoginFailures(ctx, key); err != nil {
		return fmt.Errorf("forget failed logins: %w", err)
	}
	return nil
}
