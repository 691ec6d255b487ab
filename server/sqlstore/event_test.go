package sqlstore_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/server/sqlstore"
)

// statusData decodes a backend.status event's data.
func statusData(tb testing.TB, ev *plane.ProjectEvent) plane.BackendStatusData {
	tb.Helper()
	var d plane.BackendStatusData
	if ev.Type != plane.ProjectEventBackendStatus {
		tb.Fatalf("event %d is %s, want backend.status", ev.ID, ev.Type)
	}
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		tb.Fatalf("event %d: %v in %s", ev.ID, err, ev.Data)
	}
	return d
}

func mustEvents(tb testing.TB, db *sqlstore.DB, projectID, after int64, limit int) []*plane.ProjectEvent {
	tb.Helper()
	evs, err := db.FindProjectEvents(context.Background(), projectID, after, limit)
	if err != nil {
		tb.Fatal(err)
	}
	return evs
}

// Every status a backend is stored in (created scheduled, each forward
// move) is logged, once, in order, with what a webhook's consumer needs
// and never the environment; redeliveries and stale moves log nothing.
func TestProjectEvents_status(t *testing.T) { eachStore(t, testProjectEvents_status) }

func testProjectEvents_status(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "events")
	other := MustCreateProject(t, db, "other")
	t0 := ms(time.Now().UnixMilli())
	b, _, err := db.CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "app", ImageRef: "app:1", Env: map[string]string{"SECRET": "s3cret"}, CreatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	mustCreateBackend(t, db, other.ID, "")
	steps := []plane.BackendEvent{
		{BackendID: b.ID, DroneID: "d1", Status: plane.StatusLoading, Time: t0.Add(1 * time.Millisecond)},
		{BackendID: b.ID, Status: plane.StatusReady, Time: t0.Add(3 * time.Millisecond)},
		{BackendID: b.ID, Status: plane.StatusReady, Time: t0.Add(3 * time.Millisecond)},    // redelivered
		{BackendID: b.ID, Status: plane.StatusStarting, Time: t0.Add(2 * time.Millisecond)}, // late: history only
		{BackendID: b.ID, Status: plane.StatusTerminated, Time: t0.Add(4 * time.Millisecond), Reason: plane.ReasonExited, ExitCode: ptr(2)},
		{BackendID: b.ID, Status: plane.StatusTerminated, Time: t0.Add(4 * time.Millisecond), Reason: plane.ReasonExited, ExitCode: ptr(2)},
	}
	for _, e := range steps {
		if _, _, err := db.ApplyBackendEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	evs := mustEvents(t, db, p.ID, 0, 0)
	want := []plane.BackendStatusData{
		{BackendID: b.ID, Status: plane.StatusScheduled, Time: t0},
		{BackendID: b.ID, Status: plane.StatusLoading, Time: t0.Add(time.Millisecond)},
		{BackendID: b.ID, Status: plane.StatusReady, Time: t0.Add(3 * time.Millisecond)},
		{BackendID: b.ID, Status: plane.StatusTerminated, Reason: plane.ReasonExited, Time: t0.Add(4 * time.Millisecond)},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(want), evs)
	}
	for i, ev := range evs {
		got := statusData(t, ev)
		if !got.Time.Equal(want[i].Time) || got.Status != want[i].Status || got.Reason != want[i].Reason || got.BackendID != want[i].BackendID {
			t.Errorf("event %d: %+v, want %+v", i, got, want[i])
		}
		if ev.ProjectID != p.ID || ev.BackendID != b.ID || !ev.Time.Equal(want[i].Time) {
			t.Errorf("event %d: project %d backend %q time %v", i, ev.ProjectID, ev.BackendID, ev.Time)
		}
		if i > 0 && ev.ID <= evs[i-1].ID {
			t.Errorf("ids not rising: %d after %d", ev.ID, evs[i-1].ID)
		}
		if strings.Contains(string(ev.Data), "s3cret") || strings.Contains(string(ev.Data), "env") {
			t.Errorf("event %d carries the environment: %s", i, ev.Data)
		}
	}

	t.Run("after and limit", func(t *testing.T) {
		if got := mustEvents(t, db, p.ID, evs[1].ID, 0); len(got) != 2 || got[0].ID != evs[2].ID || got[1].ID != evs[3].ID {
			t.Errorf("after %d: %+v", evs[1].ID, got)
		}
		if got := mustEvents(t, db, p.ID, 0, 1); len(got) != 1 || got[0].ID != evs[0].ID {
			t.Errorf("limit 1: %+v", got)
		}
		if got := mustEvents(t, db, p.ID, evs[3].ID, 0); len(got) != 0 {
			t.Errorf("after the last: %+v", got)
		}
	})
	t.Run("one backend's", func(t *testing.T) {
		got, err := db.FindBackendEvents(ctx, b.ID, evs[0].ID, 10)
		if err != nil || len(got) != 3 || got[0].ID != evs[1].ID {
			t.Errorf("backend events after the first: %v, %+v", err, got)
		}
	})
	t.Run("another project's are its own", func(t *testing.T) {
		got := mustEvents(t, db, other.ID, 0, 0)
		if len(got) != 1 || got[0].BackendID == b.ID {
			t.Errorf("the other project's log: %+v", got)
		}
	})
}

// The log keeps a project's latest plane.MaxProjectEvents: the append of
// one id in PruneEvery cuts it back, the other projects' logs untouched.
func TestProjectEvents_bounded(t *testing.T) { eachStore(t, testProjectEvents_bounded) }

func testProjectEvents_bounded(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "busy")
	quiet := MustCreateProject(t, db, "quiet")
	b := mustCreateBackend(t, db, p.ID, "")
	mustCreateBackend(t, db, quiet.ID, "")
	total := plane.MaxProjectEvents + 3*sqlstore.PruneEvery
	evs := make([]*plane.ProjectEvent, 0, total)
	for i := range total {
		at := time.UnixMilli(1_700_000_000_000 + int64(i)).UTC()
		evs = append(evs, plane.NewConnectionEvent(p.ID, b.ID, "u", i%2 == 0, 1-i%2, at))
	}
	// The log filled up to its bound at once, then the appends that cut
	// it back: three, at the ids divisible by PruneEvery among the last
	// 3*PruneEvery.
	seeded := plane.MaxProjectEvents
	if err := db.SeedEvents(ctx, evs[:seeded]); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendEvents(ctx, evs[seeded:]); err != nil {
		t.Fatal(err)
	}
	var kept []*plane.ProjectEvent
	for after := int64(0); ; {
		page := mustEvents(t, db, p.ID, after, sqlstore.MaxEventLimit)
		kept = append(kept, page...)
		if len(page) < sqlstore.MaxEventLimit {
			break
		}
		after = page[len(page)-1].ID
	}
	if n := len(kept); n < plane.MaxProjectEvents || n > plane.MaxProjectEvents+sqlstore.PruneEvery {
		t.Fatalf("the log keeps %d events, want %d to %d", n, plane.MaxProjectEvents, plane.MaxProjectEvents+sqlstore.PruneEvery)
	}
	// What is kept is the newest, in order, without a hole.
	newest := evs[len(evs)-len(kept):]
	for i := range kept {
		if kept[i].ID != newest[i].ID {
			t.Fatalf("kept event %d has id %d, want %d", i, kept[i].ID, newest[i].ID)
		}
	}
	if got := mustEvents(t, db, quiet.ID, 0, 0); len(got) != 1 {
		t.Errorf("the quiet project's log holds %d events, want its 1", len(got))
	}
}

// Several controllers append to one project's log at once; a reader that
// follows it by "after the last id I have" still gets every event, once:
// a project's events become visible in the order of their ids.
func TestProjectEvents_concurrentAppends(t *testing.T) {
	eachStore(t, testProjectEvents_concurrentAppends)
}

func testProjectEvents_concurrentAppends(t *testing.T, s store) {
	ctx := context.Background()
	where := s.fresh(t)
	dbs := []*sqlstore.DB{s.mustOpenAt(t, where), s.mustOpenAt(t, where)}
	p := MustCreateProject(t, dbs[0], "race")
	const writers, each = 8, 10
	done, writersDone := make(chan struct{}), make(chan struct{})
	var seen []int64
	var readErr error
	go func() {
		// The reader polls until the writers are done and it has read
		// everything after that.
		defer close(done)
		var after int64
		final := false
		for {
			page, err := dbs[1].FindProjectEvents(ctx, p.ID, after, sqlstore.MaxEventLimit)
			if err != nil {
				readErr = err
				return
			}
			for _, ev := range page {
				seen = append(seen, ev.ID)
				after = ev.ID
			}
			if final && len(page) == 0 {
				return
			}
			select {
			case <-writersDone:
				final = true
			default:
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for range each {
				if _, _, err := dbs[w%2].CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "app", ImageRef: "app:1"}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create: %v", err)
	}
	close(writersDone)
	<-done
	if readErr != nil {
		t.Fatal(readErr)
	}
	var all []int64
	for _, ev := range mustEvents(t, dbs[0], p.ID, 0, sqlstore.MaxEventLimit) {
		all = append(all, ev.ID)
	}
	if len(all) != writers*each || !slices.Equal(seen, all) {
		t.Fatalf("the reader saw %d events %v, the log holds %d %v", len(seen), seen, len(all), all)
	}
}
