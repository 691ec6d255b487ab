package sqlstore_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/server/sqlstore"
)

// mustCreateBackend stores a backend of the project with the given key.
func mustCreateBackend(tb testing.TB, db *sqlstore.DB, projectID int64, key string) *plane.Backend {
	tb.Helper()
	b, created, err := db.CreateBackend(context.Background(), &plane.Backend{ProjectID: projectID, Image: "app", ImageRef: "app:1", Key: key})
	if err != nil || !created {
		tb.Fatalf("create backend with key %q: created %v, %v", key, created, err)
	}
	return b
}

// mustApply applies an event that must move the backend forward.
func mustApply(tb testing.TB, db *sqlstore.DB, e plane.BackendEvent) *plane.Backend {
	tb.Helper()
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Status == plane.StatusTerminated && e.Reason == "" {
		e.Reason = plane.ReasonRequested
	}
	b, applied, err := db.ApplyBackendEvent(context.Background(), e)
	if err != nil || !applied {
		tb.Fatalf("apply %s to %s: applied %v, %v", e.Status, e.BackendID, applied, err)
	}
	return b
}

func TestCreateBackend(t *testing.T) { eachStore(t, testCreateBackend) }

func testCreateBackend(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "backends")
	taken := mustCreateBackend(t, db, p.ID, "")

	tests := []struct {
		name    string
		backend plane.Backend
		code    plane.ErrorCode
		field   string
	}{
		{
			name: "every field",
			backend: plane.Backend{
				ID: "given1", ProjectID: p.ID, Image: "app", ImageRef: "registry.local/app:2", Key: "room-1",
				DroneID: "drone-a", Address: "127.0.0.1:32768", Env: map[string]string{"A": "1"}, User: "alice",
				Limits:    plane.Limits{MaxIdleSeconds: 30, LifetimeSeconds: 600, CPUMillis: 250, MemoryMB: 64, SuspendSeconds: 900},
				CreatedAt: time.UnixMilli(1_700_000_000_123).Add(456 * time.Microsecond),
			},
		},
		{name: "generated id", backend: plane.Backend{ProjectID: p.ID, Image: "app", ImageRef: "app:1"}},
		{
			name: "status, outcome and suspension are reset",
			backend: plane.Backend{
				ProjectID: p.ID, Image: "app", ImageRef: "app:1", Status: plane.StatusReady,
				TerminationReason: plane.ReasonFailed, ExitCode: ptr(1), Error: "stale",
				SuspendedAt: ptr(time.Now()), ResumedAt: ptr(time.Now()),
			},
		},
		{name: "taken id", backend: plane.Backend{ID: taken.ID, ProjectID: p.ID, Image: "app", ImageRef: "app:1"}, code: plane.ECONFLICT, field: "id"},
		{name: "taken id with a free key", backend: plane.Backend{ID: taken.ID, ProjectID: p.ID, Image: "app", ImageRef: "app:1", Key: "free"}, code: plane.ECONFLICT, field: "id"},
		{name: "unknown project", backend: plane.Backend{ProjectID: 999, Image: "app", ImageRef: "app:1"}, code: plane.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now().Truncate(time.Millisecond)
			in := tt.backend
			b, created, err := db.CreateBackend(ctx, &in)
			wantCode(t, err, tt.code)
			if tt.field != "" {
				wantField(t, err, tt.field)
			}
			if err != nil {
				if b != nil || created {
					t.Fatalf("failed create returned %+v, %v", b, created)
				}
				return
			}
			if !created {
				t.Fatal("created == false")
			}
			if err := plane.ValidateBackendID(b.ID); err != nil || (tt.backend.ID != "" && b.ID != tt.backend.ID) {
				t.Fatalf("id %q (%v), want %q or a generated one", b.ID, err, tt.backend.ID)
			}
			if b.Status != plane.StatusScheduled || b.TerminationReason != "" || b.ExitCode != nil || b.Error != "" || b.SuspendedAt != nil || b.ResumedAt != nil {
				t.Fatalf("status %q, outcome %q %v %q, suspended %v resumed %v: want a fresh scheduled backend",
					b.Status, b.TerminationReason, b.ExitCode, b.Error, b.SuspendedAt, b.ResumedAt)
			}
			wantCreated := ms(tt.backend.CreatedAt.UnixMilli())
			if tt.backend.CreatedAt.IsZero() {
				if b.CreatedAt.Before(start) || b.CreatedAt.After(time.Now()) {
					t.Fatalf("created at %v, want now", b.CreatedAt)
				}
				wantCreated = b.CreatedAt
			}
			if !b.CreatedAt.Equal(wantCreated) || !b.UpdatedAt.Equal(wantCreated) {
				t.Fatalf("created at %v, updated at %v, want %v at millisecond precision", b.CreatedAt, b.UpdatedAt, wantCreated)
			}
			wantHistory := []plane.StatusChange{{Status: plane.StatusScheduled, Time: wantCreated}}
			if !reflect.DeepEqual(b.StatusHistory, wantHistory) {
				t.Fatalf("history %+v, want %+v", b.StatusHistory, wantHistory)
			}
			got, err := db.FindBackendByID(ctx, b.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, b) {
				t.Fatalf("stored\n%+v\nreturned\n%+v", got, b)
			}
		})
	}
}

func TestCreateBackend_key(t *testing.T) { eachStore(t, testCreateBackend_key) }

func testCreateBackend_key(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "keys")
	other := MustCreateProject(t, db, "other")
	holder := mustCreateBackend(t, db, p.ID, "room")
	holder = mustApply(t, db, plane.BackendEvent{BackendID: holder.ID, Status: plane.StatusReady, Address: "127.0.0.1:1"})

	t.Run("a live holder is returned", func(t *testing.T) {
		in := &plane.Backend{ProjectID: p.ID, Image: "other", ImageRef: "other:1", Key: "room"}
		got, created, err := db.CreateBackend(ctx, in)
		if err != nil || created {
			t.Fatalf("created %v, %v; want the holder", created, err)
		}
		if !reflect.DeepEqual(got, holder) {
			t.Fatalf("got\n%+v\nwant the holder\n%+v", got, holder)
		}
		if in.ID != "" {
			t.Fatalf("input got ID %q though nothing was stored", in.ID)
		}
	})
	t.Run("keys are per project", func(t *testing.T) {
		b := mustCreateBackend(t, db, other.ID, "room")
		if b.ID == holder.ID {
			t.Fatal("same backend across projects")
		}
	})
	t.Run("keyless backends never clash", func(t *testing.T) {
		a, b := mustCreateBackend(t, db, p.ID, ""), mustCreateBackend(t, db, p.ID, "")
		if a.ID == b.ID {
			t.Fatal("same ID twice")
		}
	})
	t.Run("a terminating holder still holds the key", func(t *testing.T) {
		mustApply(t, db, plane.BackendEvent{BackendID: holder.ID, Status: plane.StatusTerminating})
		got, created, err := db.CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "app", ImageRef: "app:1", Key: "room"})
		if err != nil || created || got.ID != holder.ID {
			t.Fatalf("got %+v, created %v, %v; want the holder", got, created, err)
		}
	})
	t.Run("a terminated holder frees the key", func(t *testing.T) {
		mustApply(t, db, plane.BackendEvent{BackendID: holder.ID, Status: plane.StatusTerminated, Reason: plane.ReasonIdle})
		next := mustCreateBackend(t, db, p.ID, "room")
		if next.ID == holder.ID {
			t.Fatal("terminated backend returned")
		}
		again, created, err := db.CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "app", ImageRef: "app:1", Key: "room"})
		if err != nil || created || again.ID != next.ID {
			t.Fatalf("got %+v, created %v, %v; want the new holder %s", again, created, err, next.ID)
		}
	})
}

// TestCreateBackend_concurrentKey spawns with one key from many goroutines:
// exactly one backend is created and every caller gets it.
func TestCreateBackend_concurrentKey(t *testing.T) { eachStore(t, testCreateBackend_concurrentKey) }

func testCreateBackend_concurrentKey(t *testing.T, s store) {
	ctx := context.Background()
	// Two stores on one database: two controllers (or two processes on
	// one sqlite file) spawning the same key at once.
	where := s.fresh(t)
	dbs := []*sqlstore.DB{s.mustOpenAt(t, where), s.mustOpenAt(t, where)}
	db := dbs[0]
	p := MustCreateProject(t, db, "race")

	const n = 20
	type result struct {
		b       *plane.Backend
		created bool
		err     error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			b, created, err := dbs[i%2].CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "app", ImageRef: "app:1", Key: "one"})
			results[i] = result{b, created, err}
		})
	}
	close(start)
	wg.Wait()

	var id string
	createdCount := 0
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("call %d: %v", i, r.err)
		}
		if r.created {
			createdCount++
		}
		if id == "" {
			id = r.b.ID
		}
		if r.b.ID != id {
			t.Fatalf("call %d got backend %s, another got %s", i, r.b.ID, id)
		}
	}
	if createdCount != 1 {
		t.Fatalf("%d created, want exactly 1", createdCount)
	}
	other := mustCreateBackend(t, db, p.ID, "two")
	if other.ID == id {
		t.Fatal("another key got the same backend")
	}
	all, err := db.FindBackends(ctx, plane.BackendFilter{ProjectID: &p.ID})
	if err != nil || len(all) != 2 {
		t.Fatalf("%d backends stored (%v), want 2", len(all), err)
	}
}

func TestApplyBackendEvent(t *testing.T) { eachStore(t, testApplyBackendEvent) }

func testApplyBackendEvent(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "events")
	t0 := ms(1_700_000_000_000)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	type step struct {
		event   plane.BackendEvent // BackendID is filled in
		applied bool
	}
	tests := []struct {
		name  string
		steps []step
		want  plane.Backend // the fields checked after the last step
		hist  []plane.StatusChange
	}{
		{
			name: "whole lifecycle",
			steps: []step{
				{plane.BackendEvent{Status: plane.StatusLoading, Time: at(1), DroneID: "d1"}, true},
				{plane.BackendEvent{Status: plane.StatusStarting, Time: at(2)}, true},
				{plane.BackendEvent{Status: plane.StatusWaiting, Time: at(3), Address: "127.0.0.1:40000"}, true},
				{plane.BackendEvent{Status: plane.StatusReady, Time: at(4)}, true},
				{plane.BackendEvent{Status: plane.StatusTerminating, Time: at(5)}, true},
				{plane.BackendEvent{Status: plane.StatusTerminated, Time: at(6), Reason: plane.ReasonExited, ExitCode: ptr(3), Error: "boom"}, true},
			},
			want: plane.Backend{Status: plane.StatusTerminated, DroneID: "d1", Address: "127.0.0.1:40000", TerminationReason: plane.ReasonExited, ExitCode: ptr(3), Error: "boom"},
			hist: []plane.StatusChange{
				sc(plane.StatusScheduled, t0), sc(plane.StatusLoading, at(1)), sc(plane.StatusStarting, at(2)),
				sc(plane.StatusWaiting, at(3)), sc(plane.StatusReady, at(4)), sc(plane.StatusTerminating, at(5)), sc(plane.StatusTerminated, at(6)),
			},
		},
		{
			name: "backward and repeated moves do not move the backend; a missing step fills the history",
			steps: []step{
				{plane.BackendEvent{Status: plane.StatusReady, Time: at(2), Address: "127.0.0.1:1"}, true},
				{plane.BackendEvent{Status: plane.StatusReady, Time: at(3), Address: "127.0.0.1:2"}, false},
				{plane.BackendEvent{Status: plane.StatusStarting, Time: at(1), DroneID: "late"}, false},
				{plane.BackendEvent{Status: plane.StatusScheduled, Time: at(4)}, false},
			},
			want: plane.Backend{Status: plane.StatusReady, Address: "127.0.0.1:1"},
			hist: []plane.StatusChange{sc(plane.StatusScheduled, t0), sc(plane.StatusStarting, at(1)), sc(plane.StatusReady, at(2))},
		},
		{
			name: "a redelivered step that arrives late is recorded in time order",
			steps: []step{
				{plane.BackendEvent{Status: plane.StatusStarting, Time: at(2), DroneID: "d1"}, true},
				{plane.BackendEvent{Status: plane.StatusLoading, Time: at(1)}, false},
				{plane.BackendEvent{Status: plane.StatusLoading, Time: at(1)}, false}, // and again
				{plane.BackendEvent{Status: plane.StatusReady, Time: at(3)}, true},
			},
			want: plane.Backend{Status: plane.StatusReady, DroneID: "d1"},
			hist: []plane.StatusChange{sc(plane.StatusScheduled, t0), sc(plane.StatusLoading, at(1)), sc(plane.StatusStarting, at(2)), sc(plane.StatusReady, at(3))},
		},
		{
			name: "a terminated backend stays so",
			steps: []step{
				{plane.BackendEvent{Status: plane.StatusTerminated, Time: at(1), Reason: plane.ReasonFailed, Error: "pull failed"}, true},
				{plane.BackendEvent{Status: plane.StatusTerminated, Time: at(2), Reason: plane.ReasonLost}, false},
				{plane.BackendEvent{Status: plane.StatusReady, Time: at(3)}, false},
			},
			want: plane.Backend{Status: plane.StatusTerminated, TerminationReason: plane.ReasonFailed, Error: "pull failed"},
			hist: []plane.StatusChange{sc(plane.StatusScheduled, t0), sc(plane.StatusTerminated, at(1))},
		},
		{
			name: "outcome only kept when terminated",
			steps: []step{
				{plane.BackendEvent{Status: plane.StatusLoading, Time: at(1), Error: "transient"}, true},
			},
			want: plane.Backend{Status: plane.StatusLoading},
			hist: []plane.StatusChange{sc(plane.StatusScheduled, t0), sc(plane.StatusLoading, at(1))},
		},
		{
			name: "history is ordered by time",
			steps: []step{
				// A drone clock behind the controller's dates a later step earlier.
				{plane.BackendEvent{Status: plane.StatusLoading, Time: t0.Add(-time.Second)}, true},
				{plane.BackendEvent{Status: plane.StatusStarting, Time: t0.Add(-time.Second)}, true},
			},
			want: plane.Backend{Status: plane.StatusStarting},
			hist: []plane.StatusChange{sc(plane.StatusLoading, t0.Add(-time.Second)), sc(plane.StatusStarting, t0.Add(-time.Second)), sc(plane.StatusScheduled, t0)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			created, _, err := db.CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "app", ImageRef: "app:1", CreatedAt: t0})
			if err != nil {
				t.Fatal(err)
			}
			var b *plane.Backend
			for i, s := range tt.steps {
				s.event.BackendID = created.ID
				before, err := db.FindBackendByID(ctx, created.ID)
				if err != nil {
					t.Fatal(err)
				}
				var applied bool
				b, applied, err = db.ApplyBackendEvent(ctx, s.event)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if applied != s.applied {
					t.Fatalf("step %d (%s): applied %v, want %v", i, s.event.Status, applied, s.applied)
				}
				if !applied && !sameButHistory(b, before) {
					t.Fatalf("step %d: ignored event changed the backend:\n%+v\nwas\n%+v", i, b, before)
				}
				if applied && b.UpdatedAt.Before(before.UpdatedAt) {
					t.Fatalf("step %d: updated at moved back", i)
				}
			}
			got := plane.Backend{Status: b.Status, DroneID: b.DroneID, Address: b.Address, TerminationReason: b.TerminationReason, ExitCode: b.ExitCode, Error: b.Error}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if !reflect.DeepEqual(b.StatusHistory, tt.hist) {
				t.Fatalf("history %+v, want %+v", b.StatusHistory, tt.hist)
			}
			stored, err := db.FindBackendByID(ctx, b.ID)
			if err != nil || !reflect.DeepEqual(stored, b) {
				t.Fatalf("stored\n%+v (%v)\nreturned\n%+v", stored, err, b)
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		b := mustCreateBackend(t, db, p.ID, "")
		for _, tc := range []struct {
			name  string
			event plane.BackendEvent
			code  plane.ErrorCode
		}{
			{"unknown backend", plane.BackendEvent{BackendID: "nosuchbackend", Status: plane.StatusReady, Time: t0}, plane.ENOTFOUND},
			{"unknown status", plane.BackendEvent{BackendID: b.ID, Status: "flying", Time: t0}, plane.EINVALID},
			{"no time", plane.BackendEvent{BackendID: b.ID, Status: plane.StatusReady}, plane.EINVALID},
			{"terminated without reason", plane.BackendEvent{BackendID: b.ID, Status: plane.StatusTerminated, Time: t0}, plane.EINVALID},
			{"bad id", plane.BackendEvent{BackendID: "Bad ID", Status: plane.StatusReady, Time: t0}, plane.EINVALID},
			{"suspension of an unknown backend", plane.BackendEvent{BackendID: "nosuchbackend", Status: plane.StatusReady, Time: t0, Suspended: ptr(true)}, plane.ENOTFOUND},
			{"suspension with a status other than ready", plane.BackendEvent{BackendID: b.ID, Status: plane.StatusWaiting, Time: t0, Suspended: ptr(true)}, plane.EINVALID},
			{"resume without a time", plane.BackendEvent{BackendID: b.ID, Status: plane.StatusReady, Suspended: ptr(false)}, plane.EINVALID},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, applied, err := db.ApplyBackendEvent(ctx, tc.event)
				wantCode(t, err, tc.code)
				if got != nil || applied {
					t.Fatalf("got %+v, applied %v", got, applied)
				}
			})
		}
		if got, err := db.FindBackendByID(ctx, b.ID); err != nil || got.Status != plane.StatusScheduled || len(got.StatusHistory) != 1 {
			t.Fatalf("after refused events: %+v, %v", got, err)
		}
	})
}

// TestApplyBackendEvent_suspension: a ready backend's suspensions and
// resumes are recorded at their times, each only forward, without touching
// its status or history; a backend that is not ready takes none.
func TestApplyBackendEvent_suspension(t *testing.T) { eachStore(t, testApplyBackendEvent_suspension) }

func testApplyBackendEvent_suspension(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "suspend")
	t0 := ms(1_700_000_000_000)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	suspend := func(id string, sec int, suspended bool) plane.BackendEvent {
		return plane.BackendEvent{BackendID: id, Status: plane.StatusReady, Time: at(sec), Suspended: &suspended}
	}
	created, _, err := db.CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "app", ImageRef: "app:1", CreatedAt: t0,
		Limits: plane.Limits{MaxIdleSeconds: 60, SuspendSeconds: 600}})
	if err != nil {
		t.Fatal(err)
	}
	id := created.ID

	// apply applies e and checks that it was applied or not, that it left
	// the status and the history alone, and that the store holds what it
	// returned.
	apply := func(t *testing.T, e plane.BackendEvent, want bool) *plane.Backend {
		t.Helper()
		before, err := db.FindBackendByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		b, applied, err := db.ApplyBackendEvent(ctx, e)
		if err != nil || applied != want {
			t.Fatalf("suspended %v at %v: applied %v, %v; want applied %v", *e.Suspended, e.Time, applied, err, want)
		}
		if !applied && !reflect.DeepEqual(b, before) {
			t.Fatalf("an event not applied changed the backend:\n%+v\nwas\n%+v", b, before)
		}
		if b.Status != before.Status || !reflect.DeepEqual(b.StatusHistory, before.StatusHistory) || b.UpdatedAt.Before(before.UpdatedAt) {
			t.Fatalf("status %s, history %v, updated at %v; were %s, %v, %v", b.Status, b.StatusHistory, b.UpdatedAt, before.Status, before.StatusHistory, before.UpdatedAt)
		}
		if stored, err := db.FindBackendByID(ctx, id); err != nil || !reflect.DeepEqual(stored, b) {
			t.Fatalf("stored\n%+v (%v)\nreturned\n%+v", stored, err, b)
		}
		return b
	}
	// want checks the recorded times (0: none) and whether it is suspended.
	want := func(t *testing.T, b *plane.Backend, suspendedAt, resumedAt int, suspended bool) {
		t.Helper()
		wantAt := func(sec int) *time.Time {
			if sec == 0 {
				return nil
			}
			return ptr(at(sec))
		}
		if !reflect.DeepEqual(b.SuspendedAt, wantAt(suspendedAt)) || !reflect.DeepEqual(b.ResumedAt, wantAt(resumedAt)) || b.Suspended() != suspended {
			t.Fatalf("suspended at %v, resumed at %v, suspended %v; want %v, %v, %v",
				b.SuspendedAt, b.ResumedAt, b.Suspended(), wantAt(suspendedAt), wantAt(resumedAt), suspended)
		}
	}

	t.Run("not ready yet: ignored", func(t *testing.T) {
		mustApply(t, db, plane.BackendEvent{BackendID: id, Status: plane.StatusWaiting, Time: at(1)})
		want(t, apply(t, suspend(id, 2, true), false), 0, 0, false)
		want(t, apply(t, suspend(id, 2, false), false), 0, 0, false)
	})
	mustApply(t, db, plane.BackendEvent{BackendID: id, Status: plane.StatusReady, Time: at(3)})
	t.Run("suspended", func(t *testing.T) {
		b := apply(t, suspend(id, 10, true), true)
		want(t, b, 10, 0, true)
		if b.Limits != (plane.Limits{MaxIdleSeconds: 60, SuspendSeconds: 600}) {
			t.Fatalf("limits %+v", b.Limits)
		}
	})
	t.Run("redelivered or older: ignored", func(t *testing.T) {
		want(t, apply(t, suspend(id, 10, true), false), 10, 0, true)
		want(t, apply(t, suspend(id, 5, true), false), 10, 0, true)
	})
	t.Run("resumed", func(t *testing.T) {
		want(t, apply(t, suspend(id, 20, false), true), 10, 20, false)
		want(t, apply(t, suspend(id, 20, false), false), 10, 20, false)
		want(t, apply(t, suspend(id, 15, false), false), 10, 20, false)
	})
	t.Run("suspended again", func(t *testing.T) {
		want(t, apply(t, suspend(id, 30, true), true), 30, 20, true)
	})
	t.Run("a resume that overtakes its suspension", func(t *testing.T) {
		want(t, apply(t, suspend(id, 40, false), true), 30, 40, false)
		want(t, apply(t, suspend(id, 35, true), true), 35, 40, false)
	})
	t.Run("terminated: ignored, times kept", func(t *testing.T) {
		mustApply(t, db, plane.BackendEvent{BackendID: id, Status: plane.StatusTerminated, Reason: plane.ReasonIdle, Time: at(50)})
		want(t, apply(t, suspend(id, 60, true), false), 35, 40, false)
		want(t, apply(t, suspend(id, 60, false), false), 35, 40, false)
	})
}

func TestFindBackends(t *testing.T) { eachStore(t, testFindBackends) }

func testFindBackends(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p1 := MustCreateProject(t, db, "one")
	p2 := MustCreateProject(t, db, "two")
	t0 := ms(1_700_000_000_000)

	create := func(p *plane.Project, id, image, key, drone string, age int) *plane.Backend {
		t.Helper()
		b, created, err := db.CreateBackend(ctx, &plane.Backend{
			ID: id, ProjectID: p.ID, Image: image, ImageRef: image + ":1", Key: key, DroneID: drone,
			CreatedAt: t0.Add(-time.Duration(age) * time.Minute),
		})
		if err != nil || !created {
			t.Fatalf("create %s: %v %v", id, created, err)
		}
		return b
	}
	// Created oldest first, listed newest first.
	a := create(p1, "a", "app", "ka", "d1", 5)
	b := create(p1, "b", "web", "", "d1", 4)
	c := create(p2, "c", "app", "kc", "d2", 3)
	d := create(p1, "d", "app", "ka2", "", 2)
	e := create(p2, "e", "web", "ka", "d1", 1)
	a = mustApply(t, db, plane.BackendEvent{BackendID: a.ID, Status: plane.StatusReady, Time: t0})
	c = mustApply(t, db, plane.BackendEvent{BackendID: c.ID, Status: plane.StatusTerminated, Reason: plane.ReasonIdle, Time: t0})

	tests := []struct {
		name   string
		filter plane.BackendFilter
		want   []*plane.Backend
	}{
		{"all", plane.BackendFilter{}, []*plane.Backend{e, d, c, b, a}},
		{"project", plane.BackendFilter{ProjectID: &p1.ID}, []*plane.Backend{d, b, a}},
		{"unknown project", plane.BackendFilter{ProjectID: ptr(int64(999))}, []*plane.Backend{}},
		{"id", plane.BackendFilter{ID: ptr("c")}, []*plane.Backend{c}},
		{"key", plane.BackendFilter{Key: ptr("ka")}, []*plane.Backend{e, a}},
		{"empty key", plane.BackendFilter{Key: ptr("")}, []*plane.Backend{b}},
		{"project and key", plane.BackendFilter{ProjectID: &p1.ID, Key: ptr("ka")}, []*plane.Backend{a}},
		{"drone", plane.BackendFilter{DroneID: ptr("d1")}, []*plane.Backend{e, b, a}},
		{"no drone", plane.BackendFilter{DroneID: ptr("")}, []*plane.Backend{d}},
		{"image", plane.BackendFilter{Image: ptr("web")}, []*plane.Backend{e, b}},
		{"image of a project", plane.BackendFilter{ProjectID: &p1.ID, Image: ptr("web")}, []*plane.Backend{b}},
		{"live of an image", plane.BackendFilter{Image: ptr("app"), Live: ptr(true)}, []*plane.Backend{d, a}},
		{"unknown image", plane.BackendFilter{Image: ptr("db")}, []*plane.Backend{}},
		{"live", plane.BackendFilter{Live: ptr(true)}, []*plane.Backend{e, d, b, a}},
		{"terminated", plane.BackendFilter{Live: ptr(false)}, []*plane.Backend{c}},
		{"live on a drone of a project", plane.BackendFilter{ProjectID: &p2.ID, DroneID: ptr("d2"), Live: ptr(true)}, []*plane.Backend{}},
		{"limit", plane.BackendFilter{Limit: 2}, []*plane.Backend{e, d}},
		{"negative limit is the default", plane.BackendFilter{Limit: -1}, []*plane.Backend{e, d, c, b, a}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.FindBackends(ctx, tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %s, want %s", backendIDs(got), backendIDs(tt.want))
			}
		})
	}

	t.Run("not found by id", func(t *testing.T) {
		_, err := db.FindBackendByID(ctx, "nosuch")
		wantCode(t, err, plane.ENOTFOUND)
	})
}

func TestFindBackends_limits(t *testing.T) { eachStore(t, testFindBackends_limits) }

func testFindBackends_limits(t *testing.T, s store) {
	if testing.Short() {
		t.Skip("creates more than a thousand backends")
	}
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "many")
	for range sqlstore.MaxBackendLimit + 1 {
		mustCreateBackend(t, db, p.ID, "")
	}
	for _, tt := range []struct {
		limit, want int
	}{
		{0, sqlstore.DefaultBackendLimit},
		{7, 7},
		{sqlstore.MaxBackendLimit, sqlstore.MaxBackendLimit},
		{sqlstore.MaxBackendLimit + 500, sqlstore.MaxBackendLimit},
	} {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			got, err := db.FindBackends(ctx, plane.BackendFilter{Limit: tt.limit})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Fatalf("%d backends, want %d", len(got), tt.want)
			}
			for _, b := range got {
				if len(b.StatusHistory) != 1 {
					t.Fatalf("backend %s has history %+v", b.ID, b.StatusHistory)
				}
			}
		})
	}
}

func TestCountLiveBackendsByDrone(t *testing.T) { eachStore(t, testCountLiveBackendsByDrone) }

func testCountLiveBackendsByDrone(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "count")

	if got, err := db.CountLiveBackendsByDrone(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v, %v", got, err)
	}
	for _, drone := range []string{"d1", "d1", "d2", ""} {
		if _, _, err := db.CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "app", ImageRef: "app:1", DroneID: drone}); err != nil {
			t.Fatal(err)
		}
	}
	// A backend placed by its first event, and a terminated one.
	placed := mustCreateBackend(t, db, p.ID, "")
	mustApply(t, db, plane.BackendEvent{BackendID: placed.ID, Status: plane.StatusLoading, DroneID: "d3"})
	gone := mustCreateBackend(t, db, p.ID, "")
	mustApply(t, db, plane.BackendEvent{BackendID: gone.ID, Status: plane.StatusTerminated, DroneID: "d2", Reason: plane.ReasonLost})

	got, err := db.CountLiveBackendsByDrone(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"d1": 2, "d2": 1, "d3": 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// sc is one entry of a status history.
func sc(s plane.BackendStatus, at time.Time) plane.StatusChange {
	return plane.StatusChange{Status: s, Time: at}
}

func backendIDs(backends []*plane.Backend) []string {
	ids := []string{}
	for _, b := range backends {
		ids = append(ids, b.ID)
	}
	return ids
}

// sameButHistory reports whether a and b are equal but for their histories,
// to which an event that does not move a backend may add a missing step.
func sameButHistory(a, b *plane.Backend) bool {
	x, y := *a, *b
	x.StatusHistory, y.StatusHistory = nil, nil
	return reflect.DeepEqual(x, y)
}
