package dispatch

import (
	"testing"
	"time"

	"plane"
)

// Of two controllers on one NATS, one holds the lease and runs the
// singleton duties; when it closes, the other takes over.
func TestLease(t *testing.T) {
	t.Parallel() // it waits for renewals
	nc := startNATS(t)
	open := func(holder string) *Dispatcher {
		t.Helper()
		d, _ := newDispatcher(newStore(nil, nil), connect(t, nc.ConnectedUrl()))
		d.HolderID, d.LeaseTTL, d.Now = holder, 600*time.Millisecond, time.Now
		if err := d.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		return d
	}
	a := open("a")
	b := open("b")
	t.Cleanup(b.Close)
	if !a.Leader() || b.Leader() || !a.singleton() || b.singleton() {
		t.Fatalf("a leads %v, b leads %v: want a alone", a.Leader(), b.Leader())
	}
	// Renewed in time, it stays a's.
	time.Sleep(2 * a.LeaseTTL) // a renews every third of it
	if !a.Leader() || b.Leader() {
		t.Fatalf("after renewals: a leads %v, b leads %v", a.Leader(), b.Leader())
	}
	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !b.Leader() {
		if time.Now().After(deadline) {
			t.Fatal("b did not take the lease over")
		}
		time.Sleep(10 * time.Millisecond)
	}
	kv, err := b.js.KeyValue(t.Context(), plane.ClusterBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), plane.ClusterLeaseKey)
	if err != nil || string(e.Value()) == "" {
		t.Fatalf("lease key: %v", err)
	}
}

// Clocks set apart: a controller whose clock runs 10 s ahead never takes
// the lease of a holder that keeps renewing it (the holder's expiry means
// nothing on its clock); when the holder dies without giving it up, it
// takes over once the record has not changed for a TTL on its own clock.
func TestLeaseClockSkew(t *testing.T) {
	t.Parallel() // it waits for renewals
	nc := startNATS(t)
	open := func(holder string, skew time.Duration) *Dispatcher {
		t.Helper()
		d, _ := newDispatcher(newStore(nil, nil), connect(t, nc.ConnectedUrl()))
		d.HolderID, d.LeaseTTL = holder, 600*time.Millisecond
		d.Now = func() time.Time { return time.Now().Add(skew) }
		if err := d.Open(t.Context()); err != nil {
			t.Fatal(err)
		}
		return d
	}
	a := open("a", 0)
	b := open("ahead", 10*time.Second)
	t.Cleanup(b.Close)
	deadline := time.Now().Add(4 * a.LeaseTTL)
	for time.Now().Before(deadline) {
		if b.Leader() || !a.Leader() {
			t.Fatalf("a leads %v, the controller ahead leads %v: a renews, so it keeps it", a.Leader(), b.Leader())
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.NC.Close() // dies: no renewal, no release
	died := time.Now()
	for !b.Leader() {
		if time.Since(died) > 5*time.Second {
			t.Fatal("the controller ahead did not take the dead holder's lease")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if took := time.Since(died); took < a.LeaseTTL/2 {
		t.Errorf("took the lease %s after the holder died, before it could be stale", took)
	}
	a.Close()
}
