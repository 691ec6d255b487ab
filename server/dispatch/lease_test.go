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
