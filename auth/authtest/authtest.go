// Package authtest holds an in-memory store of failed logins for the unit
// tests of auth.Limiter and of its users; the store's own (sqlite and
// Postgres) is tested in server/sqlstore.
package authtest

import (
	"context"
	"slices"
	"sync"
	"time"
)

// LoginFailures keeps failed logins in memory; its zero value is ready.
type LoginFailures struct {
	mu   sync.Mutex
	list []failure
}

type failure struct {
	key string
	at  time.Time
}

func (f *LoginFailures) RecentLoginFailures(_ context.Context, key string, since time.Time, limit int) ([]time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Time
	for _, lf := range f.list {
		if lf.key == key && lf.at.After(since) {
			out = append(out, lf.at)
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return b.Compare(a) })
	return out[:min(len(out), limit)], nil
}

func (f *LoginFailures) RecordLoginFailure(_ context.Context, key string, at, forgetBefore time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = slices.DeleteFunc(f.list, func(lf failure) bool { return !lf.at.After(forgetBefore) })
	f.list = append(f.list, failure{key, at})
	return nil
}

func (f *LoginFailures) ClearLoginFailures(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = slices.DeleteFunc(f.list, func(lf failure) bool { return lf.key == key })
	return nil
}
