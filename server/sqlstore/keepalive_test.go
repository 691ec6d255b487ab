package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"plane"
)

func TestSetKeepAlive(t *testing.T) { eachStore(t, testSetKeepAlive) }

// testSetKeepAlive: a keep-alive is stored with who asked, read back with
// the backend, replaced by a later one, refused once the backend is
// terminated and unknown for an unknown backend.
func testSetKeepAlive(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "keepalive")
	b := mustCreateBackend(t, db, p.ID, "")
	if b.KeepAliveUntil != nil || b.KeepAliveBy != "" {
		t.Fatalf("a new backend has a keep-alive: %v by %q", b.KeepAliveUntil, b.KeepAliveBy)
	}
	first := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	for i, tt := range []struct {
		until time.Time
		by    string
	}{{first, "token ci"}, {first.Add(time.Hour), "ann@example.com"}} {
		got, err := db.SetKeepAlive(ctx, b.ID, tt.until, tt.by)
		if err != nil || got.KeepAliveUntil == nil || !got.KeepAliveUntil.Equal(tt.until) || got.KeepAliveBy != tt.by {
			t.Fatalf("keep-alive %d: %+v, %v", i, got, err)
		}
		read, err := db.FindBackendByID(ctx, b.ID)
		if err != nil || read.KeepAliveUntil == nil || !read.KeepAliveUntil.Equal(tt.until) || read.KeepAliveBy != tt.by {
			t.Fatalf("read back %d: %v by %q, %v", i, read.KeepAliveUntil, read.KeepAliveBy, err)
		}
	}
	mustApply(t, db, plane.BackendEvent{BackendID: b.ID, Status: plane.StatusTerminated})
	if _, err := db.SetKeepAlive(ctx, b.ID, first, "late"); plane.ErrorCodeOf(err) != plane.ECONFLICT {
		t.Errorf("keep-alive of a terminated backend: %v, want conflict", err)
	}
	if _, err := db.SetKeepAlive(ctx, "nosuchbackend", first, "x"); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		t.Errorf("keep-alive of an unknown backend: %v, want not found", err)
	}
}
