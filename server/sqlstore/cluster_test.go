package sqlstore_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"plane"
	"plane/server/sqlstore"
)

// A store makes its cluster identity once: the next call, a reopened store
// and a second store on the same file all get the same one; another file
// gets another.
func TestClusterIdentity(t *testing.T) { eachStore(t, testClusterIdentity) }

func testClusterIdentity(t *testing.T, s store) {
	ctx := context.Background()
	path := s.fresh(t)
	db, err := s.open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	first, err := db.ClusterIdentity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := plane.ValidateClusterID(first.ID); err != nil {
		t.Fatalf("identity %+v: %v", first, err)
	}
	if first.CreatedAt.IsZero() {
		t.Fatalf("identity %+v: no creation time", first)
	}
	again, err := db.ClusterIdentity(ctx)
	if err != nil || again != first {
		t.Fatalf("second call: %+v, %v; want %+v", again, err, first)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	reopened, err := s.mustOpenAt(t, path).ClusterIdentity(ctx)
	if err != nil || reopened != first {
		t.Fatalf("after reopen: %+v, %v; want %+v", reopened, err, first)
	}

	other, err := s.MustOpen(t).ClusterIdentity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == first.ID {
		t.Fatalf("two stores share the identity %q", other.ID)
	}
}

// Controllers that share a fresh store and start at once agree on one
// identity.
func TestClusterIdentityConcurrentFirstStart(t *testing.T) {
	eachStore(t, testClusterIdentityConcurrentFirstStart)
}

func testClusterIdentityConcurrentFirstStart(t *testing.T, s store) {
	ctx := context.Background()
	path := s.fresh(t)
	dbs := []*sqlstore.DB{s.mustOpenAt(t, path), s.mustOpenAt(t, path), s.mustOpenAt(t, path)}
	ids := make([]plane.ClusterIdentity, len(dbs))
	errs := make([]error, len(dbs))
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = db.ClusterIdentity(ctx)
		}()
	}
	wg.Wait()
	for i := range dbs {
		if errs[i] != nil {
			t.Fatalf("store %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("store %d got %+v, store 0 %+v", i, ids[i], ids[0])
		}
	}
}

// The cluster's signing keys: the first controller's are recorded; another
// that signs with one of them, or accepts one of them (a rotation), is
// let in and its keys recorded; one with a key of its own is refused.
func TestRegisterSigningKeys(t *testing.T) { eachStore(t, testRegisterSigningKeys) }

func testRegisterSigningKeys(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	for _, tc := range []struct {
		name   string
		sign   string
		accept []string
		code   plane.ErrorCode
		known  []string // the cluster's keys a refusal names
	}{
		{"the first controller", "old", nil, "", nil},
		{"another with the same key", "old", nil, "", nil},
		{"a key of its own", "mine", nil, plane.EFORBIDDEN, []string{"old"}},
		{"rotation, step 1: accepts the new key", "old", []string{"new"}, "", nil},
		{"rotation, step 2: signs with the new key", "new", []string{"old"}, "", nil},
		{"rotation, step 3: the new key alone", "new", nil, "", nil},
		{"still a key of its own", "mine", []string{"other"}, plane.EFORBIDDEN, []string{"old", "new"}},
		// A refused controller's keys were not recorded.
		{"accepting a refused key", "x", []string{"mine", "other"}, plane.EFORBIDDEN, []string{"old", "new"}},
	} {
		err := db.RegisterSigningKeys(ctx, tc.sign, tc.accept)
		if plane.ErrorCodeOf(err) != tc.code {
			t.Fatalf("%s: %v, want code %q", tc.name, err, tc.code)
		}
		for _, k := range tc.known {
			if !strings.Contains(err.Error(), k) {
				t.Errorf("%s: the refusal %q does not name the cluster's key %s", tc.name, err, k)
			}
		}
	}
}
