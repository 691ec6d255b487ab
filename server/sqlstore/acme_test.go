package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/server/sqlstore"
)

// The ACME state is read and written whole and atomically: a failed update
// stores nothing, and updates from two stores on one database at once all
// land (the controllers of a cluster, each answering drones).
func TestACMEState(t *testing.T) { eachStore(t, testACMEState) }

func testACMEState(t *testing.T, s store) {
	ctx := context.Background()
	where := s.fresh(t)
	dbs := []*sqlstore.DB{s.mustOpenAt(t, where), s.mustOpenAt(t, where)}
	st, err := dbs[0].FindACMEState(ctx)
	if err != nil || st.Holder != "" || len(st.Values) != 0 {
		t.Fatalf("a new store's state: %+v, %v; want empty", st, err)
	}
	until := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := dbs[0].UpdateACMEState(ctx, func(st *plane.ACMEState) error {
		st.Holder, st.Until, st.Values = "d1", until, map[string]string{"v0": "d1"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("refused")
	if err := dbs[1].UpdateACMEState(ctx, func(st *plane.ACMEState) error {
		st.Holder = "d2"
		return refused
	}); !errors.Is(err, refused) {
		t.Fatalf("a failed update returned %v", err)
	}
	st, err = dbs[1].FindACMEState(ctx)
	if err != nil || st.Holder != "d1" || !st.Until.Equal(until) || st.Values["v0"] != "d1" {
		t.Fatalf("state after a failed update: %+v, %v", st, err)
	}

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- dbs[i%2].UpdateACMEState(ctx, func(st *plane.ACMEState) error {
				st.Values[fmt.Sprint("v", i+1)] = "d1"
				return nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st, err := dbs[0].FindACMEState(ctx); err != nil || len(st.Values) != n+1 {
		t.Fatalf("after %d concurrent additions: %d values (%v), want %d", n, len(st.Values), err, n+1)
	}
}
