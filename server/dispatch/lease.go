package dispatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"plane"
)

// The singleton duties of a cluster — the liveness sweep and the
// reconciliation of heartbeats with the store — run on one controller at a
// time: the one holding the lease, a key of the cluster's bucket
// (plane.ClusterLeaseKey) that it renews every third of LeaseTTL. Another
// controller takes the lease over once it has not been renewed for
// LeaseTTL, judged by that controller's clock; a controller that closes
// gives it up at once. The status stream's consumer needs no lease: it is
// durable and shared, and every change is applied once whichever
// controller takes it.
//
// Whether another controller's lease is stale is judged on this
// controller's own clock: by how long its record has not changed since this
// controller saw it change, not by the expiry the holder wrote, so that
// clocks set apart by seconds neither take a healthy holder's lease nor
// keep a dead one's. With the default, a holder renews every 5/3 s; when it
// dies, another controller sees its last renewal within a tick, takes over
// 5 s later, at its next tick: within about 8.5 s, inside the 10 s an
// operator is promised.
const DefaultLeaseTTL = 5 * time.Second

// leaseRecord is the lease's value.
type leaseRecord struct {
	Holder    string    `json:"holder"`
	ExpiresAt time.Time `json:"expires_at"`
}

// lease is a controller's view of the lease.
type lease struct {
	mu    sync.Mutex
	held  bool
	until time.Time
	// The last revision of another holder's record seen, and when, by
	// this controller's clock.
	seenRev uint64
	seenAt  time.Time
}

// newHolderID names a controller in the lease.
func newHolderID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Leader reports whether this controller holds the lease now.
func (d *Dispatcher) Leader() bool {
	d.lease.mu.Lock()
	defer d.lease.mu.Unlock()
	return d.lease.held && d.Now().Before(d.lease.until)
}

// leaseLoop renews (or takes) the lease every third of LeaseTTL until ctx
// ends, then gives it up. Open made the first try.
func (d *Dispatcher) leaseLoop(ctx context.Context, kv jetstream.KeyValue) {
	t := time.NewTicker(d.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			d.releaseLease(kv)
			return
		case <-t.C:
		}
		if err := d.renewLease(ctx, kv); err != nil && ctx.Err() == nil {
			d.Logger.Warn("cluster lease", "err", err)
		}
	}
}

// renewLease takes the lease when it is free or expired, or renews it when
// this controller holds it; either write is conditional on the revision
// read, so that of two controllers trying at once one wins.
func (d *Dispatcher) renewLease(ctx context.Context, kv jetstream.KeyValue) error {
	now := d.Now()
	rec, _ := json.Marshal(leaseRecord{Holder: d.HolderID, ExpiresAt: now.Add(d.LeaseTTL)})
	e, err := kv.Get(ctx, plane.ClusterLeaseKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = kv.Create(ctx, plane.ClusterLeaseKey, rec)
	case err != nil:
	default:
		var cur leaseRecord
		if jerr := json.Unmarshal(e.Value(), &cur); jerr == nil && cur.Holder != d.HolderID && cur.Holder != "" && !d.leaseStale(e.Revision(), now) {
			d.setLease(false, time.Time{}, cur.Holder)
			return nil // another controller's, and renewed lately
		}
		_, err = kv.Update(ctx, plane.ClusterLeaseKey, rec, e.Revision())
	}
	if err != nil {
		d.setLease(false, time.Time{}, "")
		return err
	}
	d.setLease(true, now.Add(d.LeaseTTL), d.HolderID)
	return nil
}

// leaseStale reports whether another holder's record, at revision rev, has
// not changed for LeaseTTL by this controller's clock.
func (d *Dispatcher) leaseStale(rev uint64, now time.Time) bool {
	d.lease.mu.Lock()
	defer d.lease.mu.Unlock()
	if rev != d.lease.seenRev {
		d.lease.seenRev, d.lease.seenAt = rev, now
	}
	return now.Sub(d.lease.seenAt) >= d.LeaseTTL
}

// setLease records the outcome of a try, and logs a change of hands once.
func (d *Dispatcher) setLease(held bool, until time.Time, holder string) {
	d.lease.mu.Lock()
	was := d.lease.held
	d.lease.held, d.lease.until = held, until
	d.lease.mu.Unlock()
	switch {
	case held && !was:
		d.Logger.Info("this controller holds the cluster lease: it runs the sweep and reconciliation", "holder", d.HolderID)
	case !held && was:
		d.Logger.Warn("this controller lost the cluster lease", "holder", holder)
	}
}

// releaseLease deletes the lease if the store says this controller holds
// it (whatever the last try here saw), so that another takes over without
// waiting for it to expire.
func (d *Dispatcher) releaseLease(kv jetstream.KeyValue) {
	d.lease.mu.Lock()
	d.lease.held = false
	d.lease.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e, err := kv.Get(ctx, plane.ClusterLeaseKey)
	if err != nil {
		return
	}
	var cur leaseRecord
	if json.Unmarshal(e.Value(), &cur) != nil || cur.Holder != d.HolderID {
		return
	}
	if err := kv.Delete(ctx, plane.ClusterLeaseKey, jetstream.LastRevision(e.Revision())); err != nil {
		d.Logger.Debug("give up the cluster lease", "err", err)
	}
}
