package controller_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/server/controller"
)

// Each case waits for the next second: they run at once.
func TestDisconnect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name string
		user string
		all  bool
		dead bool
		code plane.ErrorCode // "" for success
	}{
		{name: "a user", user: "ann"},
		{name: "everyone", all: true},
		{name: "the anonymous user", user: ""},
		{name: "a user with a control character", user: "a\x00", code: plane.EINVALID},
		{name: "a terminated backend", user: "ann", dead: true, code: plane.ECONFLICT},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, st, dr, _ := newCore(t)
			c.ConnectTokenTTL = time.Hour
			status := plane.StatusReady
			if tt.dead {
				status = plane.StatusTerminated
			}
			b := &plane.Backend{ID: "b1", ProjectID: 1, DroneID: "d1", Status: status}
			st.addBackend(b)
			before := time.Now()
			err := c.Disconnect(ctx, alice, b, tt.user, tt.all)
			if plane.ErrorCodeOf(err) != tt.code && !(tt.code == "" && err == nil) {
				t.Fatalf("err = %v, want code %q", err, tt.code)
			}
			if tt.code != "" {
				if len(dr.disconnects) != 0 {
					t.Errorf("sent %+v for a refused disconnect", dr.disconnects)
				}
				return
			}
			if len(dr.disconnects) != 1 {
				t.Fatalf("requests sent: %+v", dr.disconnects)
			}
			req := dr.disconnects[0]
			if req.BackendID != "b1" || req.All != tt.all || req.User != tt.user {
				t.Errorf("request %+v", req)
			}
			// Answered once the second it was asked in is over; the cutoff
			// is that second's end plus a token's lifetime.
			next := before.Truncate(time.Second).Add(time.Second)
			if time.Now().Before(next) {
				t.Errorf("answered at %s, before the next second %s", time.Now(), next)
			}
			if want := next.Add(time.Hour); !req.TokensExpiringBefore.Equal(want) {
				t.Errorf("cutoff %s, want %s", req.TokensExpiringBefore, want)
			}
			// A token issued now, after the answer, expires at or past it.
			conn, err := c.Connect(b, tt.user)
			if tt.dead || err != nil {
				return
			}
			if conn.ExpiresAt.Before(req.TokensExpiringBefore) {
				t.Errorf("a token issued after the disconnect expires %s, before the cutoff %s", conn.ExpiresAt, req.TokensExpiringBefore)
			}
			if got := st.activity(plane.ActionBackendDisconnect); !strings.Contains(got, "b1") {
				t.Errorf("activity %q", got)
			}
		})
	}
}

func TestKeepAlive(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name     string
		seconds  int
		lifetime int // seconds from creation
		dead     bool
		code     plane.ErrorCode
		capped   bool // until is the lifetime's end
	}{
		{name: "a minute", seconds: 60},
		{name: "past the lifetime", seconds: 3600, lifetime: 120, capped: true},
		{name: "zero", seconds: 0, code: plane.EINVALID},
		{name: "more than a day", seconds: 86401, code: plane.EINVALID},
		{name: "terminated", seconds: 60, dead: true, code: plane.ECONFLICT},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c, st, dr, _ := newCore(t)
			status := plane.StatusReady
			if tt.dead {
				status = plane.StatusTerminated
			}
			created := time.Now().Add(-time.Minute)
			b := &plane.Backend{ID: "b1", ProjectID: 1, DroneID: "d1", Status: status, CreatedAt: created,
				Limits: plane.Limits{LifetimeSeconds: tt.lifetime}}
			st.addBackend(b)
			start := time.Now()
			kept, err := c.KeepAlive(ctx, alice, b, tt.seconds)
			if tt.code != "" {
				if plane.ErrorCodeOf(err) != tt.code || len(dr.keepAlives) != 0 {
					t.Fatalf("err = %v (sent %d), want code %q and nothing sent", err, len(dr.keepAlives), tt.code)
				}
				return
			}
			if err != nil || len(dr.keepAlives) != 1 {
				t.Fatalf("keepalive: %v, sent %+v", err, dr.keepAlives)
			}
			until := dr.keepAlives[0].Until
			want := start.Add(time.Duration(tt.seconds) * time.Second)
			if tt.capped {
				want = created.Add(time.Duration(tt.lifetime) * time.Second)
				if !until.Equal(want) {
					t.Errorf("until %s, want the lifetime's end %s", until, want)
				}
			} else if d := until.Sub(want); d < -time.Second || d > time.Second {
				t.Errorf("until %s, want about %s", until, want)
			}
			if kept.KeepAliveUntil == nil || !kept.KeepAliveUntil.Equal(until) || kept.KeepAliveBy != alice.Name {
				t.Errorf("stored keep-alive %v by %q", kept.KeepAliveUntil, kept.KeepAliveBy)
			}
		})
	}
}

// fakeEvents holds who is connected, as the store's log says.
type fakeEvents struct {
	mu    sync.Mutex
	conns map[string][]plane.Connection
}

func (e *fakeEvents) FindProjectEvents(context.Context, int64, int64, int) ([]*plane.ProjectEvent, error) {
	return nil, nil
}

func (e *fakeEvents) FindBackendEvents(context.Context, string, int64, int) ([]*plane.ProjectEvent, error) {
	return nil, nil
}

func (e *fakeEvents) FindConnections(_ context.Context, id string) ([]plane.Connection, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.conns[id]), nil
}

// TestReconcileConnections: a user the store holds connected whom the
// drone's stats have not listed for a while is recorded as left; one
// listed, and the users of a drone that lists none while it counts
// connections, are not.
func TestReconcileConnections(t *testing.T) {
	defer controller.SetGhostTimes(50*time.Millisecond, 0)()
	ctx := context.Background()
	c, st, _, _ := newCore(t)
	ev := &fakeEvents{conns: map[string][]plane.Connection{}}
	c.Events = ev
	long := time.Now().Add(-time.Minute)
	st.addBackend(&plane.Backend{ID: "b1", ProjectID: 1, DroneID: "d1", Status: plane.StatusReady})
	ev.conns["b1"] = []plane.Connection{{User: "ann", Since: long}, {User: "bob", Since: long}}
	var left []string
	st.onApply = func(e plane.BackendEvent) {
		if e.Connection != nil && !e.Connection.Joined {
			left = append(left, e.Connection.User)
		}
	}
	stats := plane.BackendStats{BackendID: "b1", Connections: 1, Users: []plane.UserConnections{{User: "ann", Connections: 1}}}
	// A drone of protocol 2: connections, no users.
	c.ReconcileConnections(ctx, plane.BackendStats{BackendID: "b1", Connections: 2})
	c.ReconcileConnections(ctx, stats)
	if len(left) != 0 {
		t.Fatalf("left at once: %v", left)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(left) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		c.ReconcileConnections(ctx, stats)
	}
	if !slices.Equal(left, []string{"bob"}) {
		t.Fatalf("recorded as left: %v, want [bob]", left)
	}
}
