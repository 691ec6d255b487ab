package auth

import (
	"sync"
	"time"
)

// Login limits: the dashboard allows LoginMaxFailures failed logins per
// LoginWindow for each client address and for each email.
const (
	LoginMaxFailures = 5
	LoginWindow      = 5 * time.Minute
)

// defaultMaxKeys bounds a Limiter's memory: at most this many keys, each
// holding at most max failure times.
const defaultMaxKeys = 100_000

// Limiter counts failures per key (a client address, an email) in a sliding
// window and refuses a key once it has max failures in the last window. It
// lives in memory: a restart forgets it, which only gives an attacker one
// fresh window.
type Limiter struct {
	max     int
	window  time.Duration
	maxKeys int

	mu        sync.Mutex
	fails     map[string][]time.Time // oldest first, at most max
	lastSweep time.Time
}

// NewLimiter returns a limiter allowing maxFailures failures per window and
// key.
func NewLimiter(maxFailures int, window time.Duration) *Limiter {
	if maxFailures < 1 || window <= 0 {
		panic("auth: NewLimiter needs maxFailures >= 1 and window > 0")
	}
	return &Limiter{max: maxFailures, window: window, maxKeys: defaultMaxKeys, fails: map[string][]time.Time{}}
}

// Allow reports whether key may try again at now; when not, retryAfter says
// how long until it may.
func (l *Limiter) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	f := l.live(key, now)
	if len(f) < l.max {
		return true, 0
	}
	return false, min(max(f[0].Add(l.window).Sub(now), 0), l.window)
}

// Fail records a failed attempt of key at now.
func (l *Limiter) Fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	f := l.live(key, now)
	if f == nil && len(l.fails) >= l.maxKeys {
		l.lastSweep = time.Time{}
		l.sweep(now)
		if len(l.fails) >= l.maxKeys {
			l.evictOne()
		}
	}
	if len(f) == l.max {
		f = append(f[:0], f[1:]...)
	}
	l.fails[key] = append(f, now)
}

// Reset forgets key's failures, as after a successful login.
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, key)
}

// live returns key's failures still inside the window at now, dropping the
// others (and the key when none is left).
func (l *Limiter) live(key string, now time.Time) []time.Time {
	f := l.fails[key]
	n := 0
	for n < len(f) && !f[n].Add(l.window).After(now) {
		n++
	}
	switch {
	case n == len(f):
		delete(l.fails, key)
		return nil
	case n > 0:
		f = append(f[:0], f[n:]...)
		l.fails[key] = f
	}
	return f
}

// sweep drops the keys whose every failure has left the window, at most once
// per window, so that keys seen once do not pile up.
func (l *Limiter) sweep(now time.Time) {
	if d := now.Sub(l.lastSweep); d >= 0 && d < l.window {
		return
	}
	l.lastSweep = now
	for key := range l.fails {
		l.live(key, now)
	}
}

// evictOne makes room for a new key when the table is full of live keys
// (many clients failing at once): it drops the key whose last failure is
// oldest, the one closest to being forgotten anyway.
func (l *Limiter) evictOne() {
	var oldestKey string
	var oldest time.Time
	found := false
	for key, f := range l.fails {
		if last := f[len(f)-1]; !found || last.Before(oldest) {
			oldestKey, oldest, found = key, last, true
		}
	}
	delete(l.fails, oldestKey)
}
