package auth_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"plane/auth"
)

func TestLimiter(t *testing.T) {
	type step struct {
		op        string // "fail", "allow" or "reset"
		key       string
		at        time.Duration // past t0
		wantOK    bool          // for "allow"
		wantRetry time.Duration // for "allow"
	}
	fail := func(key string, at time.Duration) step { return step{op: "fail", key: key, at: at} }
	allow := func(key string, at time.Duration) step { return step{op: "allow", key: key, at: at, wantOK: true} }
	refuse := func(key string, at, retry time.Duration) step {
		return step{op: "allow", key: key, at: at, wantRetry: retry}
	}
	reset := func(key string) step { return step{op: "reset", key: key} }
	const m = time.Minute

	tests := []struct {
		name  string
		steps []step
	}{
		{"fresh key", []step{allow("a", 0)}},
		{"refused at the limit, per key", []step{
			fail("a", 0), fail("a", m), allow("a", 2*m),
			fail("a", 2*m), refuse("a", 2*m, 3*m), allow("b", 2*m),
		}},
		{"allowed again once the oldest failure leaves the window", []step{
			fail("a", 0), fail("a", m), fail("a", 2*m),
			refuse("a", 5*m-time.Second, time.Second), allow("a", 5*m),
			fail("a", 5*m), refuse("a", 5*m, m), allow("a", 6*m),
		}},
		{"only the last failures count", []step{
			fail("a", 0), fail("a", time.Second), fail("a", 2*time.Second), fail("a", 3*time.Second), fail("a", 4*time.Second),
			refuse("a", 5*m+time.Second, time.Second), allow("a", 5*m+2*time.Second),
		}},
		{"reset forgets", []step{
			fail("a", 0), fail("a", 0), fail("a", 0), refuse("a", 0, 5*m),
			reset("a"), allow("a", 0), reset("never seen"),
		}},
		{"clock set back", []step{
			fail("a", 10*m), fail("a", 10*m), fail("a", 10*m), refuse("a", 0, 5*m),
		}},
		{"empty key is a key", []step{
			fail("", 0), fail("", 0), fail("", 0), refuse("", 0, 5*m), allow("a", 0),
		}},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := auth.NewLimiter(newFakeUsers(), 3, 5*time.Minute)
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				switch s.op {
				case "fail":
					must(t, l.Fail(ctx, s.key, now))
				case "reset":
					must(t, l.Reset(ctx, s.key))
				case "allow":
					ok, retry, err := l.Allow(ctx, s.key, now)
					must(t, err)
					if ok != s.wantOK || retry != s.wantRetry {
						t.Fatalf("step %d: Allow(%q, +%v) = %v, %v; want %v, %v", i, s.key, s.at, ok, retry, s.wantOK, s.wantRetry)
					}
				}
			}
		})
	}
}

func TestLimiterConcurrent(t *testing.T) {
	ctx := context.Background()
	l := auth.NewLimiter(newFakeUsers(), auth.LoginMaxFailures, auth.LoginWindow)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			at := t0.Add(time.Duration(i) * time.Millisecond)
			_, _, _ = l.Allow(ctx, "ip", at)
			_ = l.Fail(ctx, "ip", at)
		})
	}
	wg.Wait()
	if ok, _, err := l.Allow(ctx, "ip", t0.Add(time.Second)); ok || err != nil {
		t.Fatal("allowed after 50 failures")
	}
}

func TestNewLimiterRejectsNonsense(t *testing.T) {
	for _, tt := range []struct {
		max    int
		window time.Duration
	}{{0, time.Minute}, {-1, time.Minute}, {5, 0}, {5, -time.Second}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewLimiter(%d, %v) did not panic", tt.max, tt.window)
				}
			}()
			auth.NewLimiter(newFakeUsers(), tt.max, tt.window)
		}()
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
