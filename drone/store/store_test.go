package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/drone/store"
)

// MustOpen opens a store in a fresh temporary folder, closed at the end of the test.
func MustOpen(tb testing.TB) (*store.Store, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "drone.db")
	return mustOpenPath(tb, path), path
}

func mustOpenPath(tb testing.TB, path string) *store.Store {
	tb.Helper()
	s, err := store.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 678_000_000, time.UTC)

func sampleBackend(id string, status plane.BackendStatus) *store.Backend {
	return &store.Backend{
		Spec: plane.SpawnSpec{
			BackendID:  id,
			Key:        "doc-42",
			ImageRef:   "localhost/demo:latest",
			PullPolicy: plane.PullPolicy("if_not_present"),
			Port:       8080,
			Env:        map[string]string{"MODE": "test"},
			User:       "alice",
			Limits:     plane.Limits{MaxIdleSeconds: 30, LifetimeSeconds: 600, CPUMillis: 500, MemoryMB: 256},
		},
		ContainerID: "c0ffee",
		Address:     "127.0.0.1:32768",
		Status:      status,
		CreatedAt:   t0,
		UpdatedAt:   t0.Add(time.Second),
	}
}

func TestBackendRoundTrip(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()

	b := sampleBackend("b1", plane.StatusReady)
	b.ReadyAt = t0.Add(500 * time.Millisecond)
	if err := s.PutBackend(ctx, b); err != nil {
		t.Fatal(err)
	}
	got, err := s.FindBackend(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("got\n%+v\nwant\n%+v", got, b)
	}

	// Replace: the same ID moves on.
	code := 137
	b.Status, b.Reason, b.ExitCode, b.Error = plane.StatusTerminated, plane.ReasonExited, &code, "killed"
	b.UpdatedAt = t0.Add(time.Minute)
	if err := s.PutBackend(ctx, b); err != nil {
		t.Fatal(err)
	}
	got, err = s.FindBackend(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("after replace got\n%+v\nwant\n%+v", got, b)
	}
}

func TestPutBackendFillsTimes(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	b := sampleBackend("b1", plane.StatusScheduled)
	b.CreatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	before := time.Now().Add(-time.Millisecond)
	if err := s.PutBackend(ctx, b); err != nil {
		t.Fatal(err)
	}
	if b.CreatedAt.Before(before) || b.UpdatedAt.Before(before) {
		t.Fatalf("times not filled in: %v %v", b.CreatedAt, b.UpdatedAt)
	}
	got, _ := s.FindBackend(ctx, "b1")
	if !got.ReadyAt.IsZero() {
		t.Fatalf("ReadyAt = %v, want zero", got.ReadyAt)
	}
	if got.ExitCode != nil {
		t.Fatalf("ExitCode = %v, want nil", *got.ExitCode)
	}
}

func TestPutBackendRejectsBadInput(t *testing.T) {
	s, _ := MustOpen(t)
	for _, b := range []*store.Backend{
		sampleBackend("", plane.StatusReady),
		sampleBackend("b1", "running"),
		{Spec: plane.SpawnSpec{BackendID: "b1"}, Status: plane.StatusTerminated, Reason: "bored"},
	} {
		if err := s.PutBackend(context.Background(), b); plane.ErrorCodeOf(err) != plane.EINVALID {
			t.Errorf("PutBackend(%+v) = %v, want an invalid error", b, err)
		}
	}
}

func TestFindBackendNotFound(t *testing.T) {
	s, _ := MustOpen(t)
	_, err := s.FindBackend(context.Background(), "nope")
	if plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		t.Fatalf("err = %v, want not found", err)
	}
}

func TestBackendStatus(t *testing.T) {
	s, _ := MustOpen(t)
	if err := s.PutBackend(context.Background(), sampleBackend("b1", plane.StatusTerminated)); err != nil {
		t.Fatal(err)
	}
	if st, found := s.BackendStatus("b1"); !found || st != plane.StatusTerminated {
		t.Errorf("BackendStatus(b1) = %q, %v; want terminated", st, found)
	}
	if st, found := s.BackendStatus("nope"); found {
		t.Errorf("BackendStatus(nope) = %q, found", st)
	}
}

func TestLiveBackends(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	for i, st := range plane.Statuses {
		b := sampleBackend(fmt.Sprintf("b%d", i), st)
		b.CreatedAt = t0.Add(-time.Duration(i) * time.Second) // later statuses are older
		if err := s.PutBackend(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	live, err := s.LiveBackends(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, b := range live {
		ids = append(ids, b.Spec.BackendID)
	}
	want := []string{"b5", "b4", "b3", "b2", "b1", "b0"} // all but terminated (b6), oldest first
	if !reflect.DeepEqual(ids, want) {
		t.Fatalf("live = %v, want %v", ids, want)
	}
}

func TestDeleteTerminatedBefore(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	put := func(id string, st plane.BackendStatus, updated time.Time) {
		b := sampleBackend(id, st)
		b.UpdatedAt = updated
		if err := s.PutBackend(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	put("old1", plane.StatusTerminated, t0.Add(-2*time.Hour))
	put("old2", plane.StatusTerminated, t0.Add(-time.Hour-time.Millisecond))
	put("recent", plane.StatusTerminated, t0)
	put("oldlive", plane.StatusReady, t0.Add(-3*time.Hour))

	n, err := s.DeleteTerminatedBefore(ctx, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("deleted %d, want 2", n)
	}
	for id, want := range map[string]bool{"old1": false, "old2": false, "recent": true, "oldlive": true} {
		_, err := s.FindBackend(ctx, id)
		if exists := err == nil; exists != want {
			t.Errorf("%s exists = %v (%v), want %v", id, exists, err, want)
		}
	}
}

// Status changes come out before log lines, each kind in its order;
// TrimLogs drops the oldest lines past a count and never a status change.
func TestOutboxLogs(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	enqueue := func(subject, id string) int64 {
		t.Helper()
		seq, err := s.Enqueue(ctx, subject, id, []byte(id))
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	logs, status := plane.SubjectBackendLogs("b1"), plane.SubjectBackendStatus("b1")
	l1, s1, l2, s2, l3 := enqueue(logs, "l1"), enqueue(status, "s1"), enqueue(logs, "l2"), enqueue(status, "s2"), enqueue(logs, "l3")
	pending, err := s.Pending(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := seqsOf(pending), []int64{s1, s2, l1, l2, l3}; !reflect.DeepEqual(got, want) {
		t.Fatalf("pending = %v, want %v (status changes first)", got, want)
	}
	for _, tc := range []struct {
		keep, dropped int
		left          []int64
	}{
		{keep: 5, dropped: 0, left: []int64{s1, s2, l1, l2, l3}},
		{keep: 2, dropped: 1, left: []int64{s1, s2, l2, l3}},
		{keep: 0, dropped: 2, left: []int64{s1, s2}},
	} {
		n, err := s.TrimLogs(ctx, tc.keep)
		if err != nil || n != tc.dropped {
			t.Fatalf("TrimLogs(%d) = %d, %v; want %d dropped", tc.keep, n, err, tc.dropped)
		}
		pending, _ = s.Pending(ctx, 0)
		if got := seqsOf(pending); !reflect.DeepEqual(got, tc.left) {
			t.Fatalf("after TrimLogs(%d): %v, want %v", tc.keep, got, tc.left)
		}
	}
	if err := s.Ack(ctx, s1, s2); err != nil {
		t.Fatal(err)
	}
	if pending, _ = s.Pending(ctx, 0); len(pending) != 0 {
		t.Fatalf("after acking both: %v", seqsOf(pending))
	}
}

func TestOutbox(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()

	pending, err := s.Pending(ctx, 10)
	if err != nil || len(pending) != 0 {
		t.Fatalf("empty outbox: %v, %v", pending, err)
	}
	var seqs []int64
	for i := range 5 {
		seq, err := s.Enqueue(ctx, plane.SubjectBackendStatus("b1"), fmt.Sprintf("b1-%d", i), []byte(fmt.Sprintf(`{"n":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		if len(seqs) > 0 && seq <= seqs[len(seqs)-1] {
			t.Fatalf("seq %d after %d", seq, seqs[len(seqs)-1])
		}
		seqs = append(seqs, seq)
	}

	pending, err = s.Pending(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 3 {
		t.Fatalf("got %d messages, want 3", len(pending))
	}
	for i, m := range pending {
		if m.Seq != seqs[i] || m.MsgID != fmt.Sprintf("b1-%d", i) || string(m.Data) != fmt.Sprintf(`{"n":%d}`, i) ||
			m.Subject != "plane.backend.b1.status" || m.CreatedAt.IsZero() {
			t.Fatalf("message %d = %+v", i, m)
		}
	}

	// Ack out of order, and twice; the rest stays in order.
	for _, seq := range []int64{seqs[1], seqs[0], seqs[1], 9999} {
		if err := s.Ack(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	pending, _ = s.Pending(ctx, 0)
	if got := seqsOf(pending); !reflect.DeepEqual(got, seqs[2:]) {
		t.Fatalf("pending = %v, want %v", got, seqs[2:])
	}

	for _, seq := range seqs {
		s.Ack(ctx, seq)
	}
	// A sequence number is never reused, even once the outbox is empty.
	seq, err := s.Enqueue(ctx, "x", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if seq <= seqs[len(seqs)-1] {
		t.Fatalf("seq %d reused after acks up to %d", seq, seqs[len(seqs)-1])
	}
	pending, _ = s.Pending(ctx, 0)
	if len(pending) != 1 || pending[0].Data == nil || len(pending[0].Data) != 0 {
		t.Fatalf("empty message came back as %+v", pending)
	}

	if _, err := s.Enqueue(ctx, "", "id", []byte("x")); plane.ErrorCodeOf(err) != plane.EINVALID {
		t.Fatalf("empty subject: err = %v, want invalid", err)
	}
}

func seqsOf(ms []store.OutboxMsg) []int64 {
	var out []int64
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func TestPutBackendAndEnqueue(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()

	b := sampleBackend("b1", plane.StatusLoading)
	seq, err := s.PutBackendAndEnqueue(ctx, b, "plane.backend.b1.status", "b1-loading", []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FindBackend(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
	pending, _ := s.Pending(ctx, 0)
	if len(pending) != 1 || pending[0].Seq != seq {
		t.Fatalf("pending = %+v, want one message %d", pending, seq)
	}

	// A failing message rolls the status change back.
	b.Status = plane.StatusStarting
	if _, err := s.PutBackendAndEnqueue(ctx, b, "", "b1-starting", []byte("{}")); err == nil {
		t.Fatal("want an error for an empty subject")
	}
	got, _ := s.FindBackend(ctx, "b1")
	if got.Status != plane.StatusLoading {
		t.Fatalf("status = %s after a failed transaction, want loading", got.Status)
	}
	// A failing backend writes no message.
	if _, err := s.PutBackendAndEnqueue(ctx, sampleBackend("", plane.StatusReady), "s", "m", nil); err == nil {
		t.Fatal("want an error for a backend without id")
	}
	if pending, _ := s.Pending(ctx, 0); len(pending) != 1 {
		t.Fatalf("%d messages after failed transactions, want 1", len(pending))
	}
}

func TestSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir with spaces?#%", "drone.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b := sampleBackend("b1", plane.StatusReady)
	if err := s.PutBackend(ctx, b); err != nil {
		t.Fatal(err)
	}
	seq, err := s.Enqueue(ctx, "subj", "m1", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at its path: %v", err)
	}

	s = mustOpenPath(t, path)
	got, err := s.FindBackend(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("after reopen got %+v, want %+v", got, b)
	}
	pending, _ := s.Pending(ctx, 0)
	if len(pending) != 1 || pending[0].Seq != seq || string(pending[0].Data) != "hello" {
		t.Fatalf("after reopen pending = %+v", pending)
	}
	if seq2, _ := s.Enqueue(ctx, "subj", "m2", nil); seq2 <= seq {
		t.Fatalf("seq %d after reopen, want > %d", seq2, seq)
	}
}

func TestPragmas(t *testing.T) {
	s, path := MustOpen(t)
	if _, err := s.Enqueue(context.Background(), "s", "m", nil); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	var version int
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || version != store.SchemaVersion {
		t.Fatalf("journal_mode = %q, user_version = %d; want wal, %d", mode, version, store.SchemaVersion)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	s, path := MustOpen(t)
	s.Close()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", store.SchemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	_, err = store.Open(path)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("err = %v, want a schema version error", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := store.Open(""); err == nil {
		t.Fatal("empty path: want an error")
	}
	if _, err := store.Open(filepath.Join(t.TempDir(), "missing", "drone.db")); err == nil {
		t.Fatal("missing folder: want an error")
	}
}

func TestConcurrentEnqueue(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	const workers, each = 20, 25

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seqs = map[int64]bool{}
	)
	for w := range workers {
		wg.Go(func() {
			last := int64(0)
			for i := range each {
				seq, err := s.Enqueue(ctx, "s", fmt.Sprintf("%d-%d", w, i), []byte("x"))
				if err != nil {
					t.Error(err)
					return
				}
				if seq <= last {
					t.Errorf("worker %d: seq %d after %d", w, seq, last)
				}
				last = seq
				mu.Lock()
				seqs[seq] = true
				mu.Unlock()
			}
		})
		// Readers run alongside the writers.
		wg.Go(func() {
			for range each {
				if _, err := s.Pending(ctx, 10); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if len(seqs) != workers*each {
		t.Fatalf("%d distinct seqs, want %d", len(seqs), workers*each)
	}
	pending, err := s.Pending(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != workers*each {
		t.Fatalf("%d pending, want %d", len(pending), workers*each)
	}
	for i := 1; i < len(pending); i++ {
		if pending[i].Seq <= pending[i-1].Seq {
			t.Fatal("pending not in seq order")
		}
	}
}

func TestDraining(t *testing.T) {
	s, path := MustOpen(t)
	ctx := context.Background()
	if d, err := s.Draining(ctx); err != nil || d {
		t.Fatalf("new store: draining %v, %v; want false", d, err)
	}
	for _, want := range []bool{true, true, false, true} {
		if err := s.SetDraining(ctx, want); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Draining(ctx); err != nil || got != want {
			t.Fatalf("draining %v, %v; want %v", got, err, want)
		}
	}
	s.Close()
	if got, err := mustOpenPath(t, path).Draining(ctx); err != nil || !got {
		t.Fatalf("after reopening: draining %v, %v; want true", got, err)
	}
}

// A file written by the first drones (schema 1) is upgraded in place and
// keeps its backends.
func TestOpenUpgradesVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "drone.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE backends (id TEXT PRIMARY KEY, spec TEXT NOT NULL, container_id TEXT NOT NULL DEFAULT '',
		address TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', exit_code INTEGER,
		error TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, ready_at INTEGER, updated_at INTEGER NOT NULL);
		CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL, msg_id TEXT NOT NULL, data BLOB NOT NULL, created_at INTEGER NOT NULL);
		INSERT INTO backends (id, spec, status, created_at, updated_at) VALUES ('b1', '{}', 'ready', 1, 1);
		PRAGMA user_version = 1;`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := mustOpenPath(t, path)
	ctx := context.Background()
	if _, err := s.FindBackend(ctx, "b1"); err != nil {
		t.Fatalf("backend lost in the upgrade: %v", err)
	}
	if err := s.SetDraining(ctx, true); err != nil {
		t.Fatalf("upgraded store: %v", err)
	}
}

// TestOpenFileModes: the store holds backends' environments, so its files
// are its owner's only, also when an older drone created them readable.
func TestOpenFileModes(t *testing.T) {
	for _, tt := range []struct {
		name     string
		existing os.FileMode // 0: no file yet
	}{{"new file", 0}, {"file of an older drone", 0o644}} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "drone.db")
			if tt.existing != 0 {
				mustOpenPath(t, path).Close()
				if err := os.Chmod(path, tt.existing); err != nil {
					t.Fatal(err)
				}
			}
			s := mustOpenPath(t, path)
			if err := s.SetDraining(context.Background(), true); err != nil { // a write: the WAL exists
				t.Fatal(err)
			}
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
				}
			}
		})
	}
}
