package sqlstore_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/server/sqlstore"
)

// What several controllers sharing one store rely on, tried with two
// stores opened on the same database writing at once.

// TestConcurrentStatusMoves: the drones' status changes, applied by two
// controllers at once and in any order (redeliveries included), move a
// backend forward only: it ends terminated, and its history holds each
// step once, in time order.
func TestConcurrentStatusMoves(t *testing.T) { eachStoreAlone(t, testConcurrentStatusMoves) }

func testConcurrentStatusMoves(t *testing.T, s store) {
	ctx := context.Background()
	where := s.fresh(t)
	dbs := []*sqlstore.DB{s.mustOpenAt(t, where), s.mustOpenAt(t, where)}
	p := MustCreateProject(t, dbs[0], "moves")
	const backends = 4
	steps := []plane.BackendStatus{plane.StatusLoading, plane.StatusStarting, plane.StatusWaiting, plane.StatusReady, plane.StatusTerminating, plane.StatusTerminated}
	var ids []string
	for range backends {
		ids = append(ids, mustCreateBackend(t, dbs[0], p.ID, "").ID)
	}
	t0 := time.Now() // the drones' clocks: after each backend was stored
	var events []plane.BackendEvent
	for _, id := range ids {
		for i, st := range steps {
			e := plane.BackendEvent{BackendID: id, Status: st, Time: t0.Add(time.Duration(i+1) * time.Second)}
			if st == plane.StatusTerminated {
				e.Reason = plane.ReasonRequested
			}
			events = append(events, e, e) // each delivered twice
		}
	}
	rand.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })

	var wg sync.WaitGroup
	errs := make(chan error, len(events))
	for i, e := range events {
		wg.Go(func() {
			if _, _, err := dbs[i%2].ApplyBackendEvent(ctx, e); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("apply: %v", err)
	}
	for _, id := range ids {
		b, err := dbs[1].FindBackendByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if b.Status != plane.StatusTerminated {
			t.Errorf("backend %s ended %s, want terminated", id, b.Status)
		}
		var got []plane.BackendStatus
		for i, c := range b.StatusHistory {
			got = append(got, c.Status)
			if i > 0 && c.Time.Before(b.StatusHistory[i-1].Time) {
				t.Errorf("backend %s: history out of time order: %v", id, b.StatusHistory)
			}
		}
		if want := append([]plane.BackendStatus{plane.StatusScheduled}, steps...); !slices.Equal(got, want) {
			t.Errorf("backend %s: history %v, want %v", id, got, want)
		}
	}
}

// TestLoginFailures: failed logins counted through one store are seen
// through the other, newest first, within the window asked for; old ones
// of every key are forgotten as new ones come, and a key can be cleared.
func TestLoginFailures(t *testing.T) { eachStore(t, testLoginFailures) }

func testLoginFailures(t *testing.T, s store) {
	ctx := context.Background()
	where := s.fresh(t)
	a, b := s.mustOpenAt(t, where), s.mustOpenAt(t, where)
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	record := func(db *sqlstore.DB, key string, sec int, forgetBefore time.Time) {
		t.Helper()
		if err := db.RecordLoginFailure(ctx, key, at(sec), forgetBefore); err != nil {
			t.Fatal(err)
		}
	}
	recent := func(db *sqlstore.DB, key string, since time.Time, limit int) []time.Time {
		t.Helper()
		got, err := db.RecentLoginFailures(ctx, key, since, limit)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	var never time.Time
	record(a, "ip:1", 1, never)
	record(b, "ip:1", 2, never)
	record(a, "ip:1", 3, never)
	record(b, "email:x", 2, never)

	if got := recent(b, "ip:1", never, 10); !slices.EqualFunc(got, []time.Time{at(3), at(2), at(1)}, time.Time.Equal) {
		t.Errorf("recent through the other store: %v, want 3 s, 2 s, 1 s", got)
	}
	if got := recent(a, "ip:1", never, 2); !slices.EqualFunc(got, []time.Time{at(3), at(2)}, time.Time.Equal) {
		t.Errorf("the last two: %v", got)
	}
	if got := recent(a, "ip:1", at(2), 10); !slices.EqualFunc(got, []time.Time{at(3)}, time.Time.Equal) {
		t.Errorf("after 2 s (exclusive): %v", got)
	}
	if got := recent(a, "nobody", never, 10); len(got) != 0 {
		t.Errorf("a key never seen: %v", got)
	}

	// A new failure forgets every key's old ones.
	record(b, "ip:2", 10, at(2))
	if got := recent(a, "ip:1", never, 10); !slices.EqualFunc(got, []time.Time{at(3)}, time.Time.Equal) {
		t.Errorf("ip:1 after forgetting up to 2 s: %v", got)
	}
	if got := recent(a, "email:x", never, 10); len(got) != 0 {
		t.Errorf("email:x after forgetting up to 2 s: %v", got)
	}

	if err := a.ClearLoginFailures(ctx, "ip:1"); err != nil {
		t.Fatal(err)
	}
	if got := recent(b, "ip:1", never, 10); len(got) != 0 {
		t.Errorf("ip:1 after clearing: %v", got)
	}
	if got := recent(b, "ip:2", never, 10); len(got) != 1 {
		t.Errorf("clearing ip:1 touched ip:2: %v", got)
	}
}
