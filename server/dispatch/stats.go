package dispatch

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
)

// StatsHistory is how many samples of each live backend's stats the
// dispatcher keeps: five minutes at the drones' default five-second period.
const StatsHistory = 60

// statsStaleAfter is how long the samples of a backend that sends no more
// are kept: its termination may never reach this controller (another
// controller applied it, or a last sample came after it).
const statsStaleAfter = 10 * time.Minute

// statsRing keeps the latest samples of each backend's stats, oldest
// first, at most size (StatsHistory when 0) of each. The zero value is
// ready to use, and safe for concurrent use.
type statsRing struct {
	size int

	mu   sync.Mutex
	m    map[string][]plane.BackendStats
	seen map[string]time.Time // when each backend's newest sample arrived, by our clock
}

// add appends a sample received at now to its backend's history, dropping
// the oldest one when the history is full.
func (r *statsRing) add(s plane.BackendStats, now time.Time) {
	size := r.size
	if size <= 0 {
		size = StatsHistory
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m, r.seen = map[string][]plane.BackendStats{}, map[string]time.Time{}
	}
	r.seen[s.BackendID] = now
	h := r.m[s.BackendID]
	if len(h) >= size {
		h = append(h[:0], h[len(h)-size+1:]...)
	}
	r.m[s.BackendID] = append(h, s)
}

// latest returns a backend's newest sample.
func (r *statsRing) latest(backendID string) (plane.BackendStats, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.m[backendID]
	if len(h) == 0 {
		return plane.BackendStats{}, false
	}
	return h[len(h)-1], true
}

// history returns a copy of a backend's samples, oldest first.
func (r *statsRing) history(backendID string) []plane.BackendStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]plane.BackendStats(nil), r.m[backendID]...)
}

// forget drops a backend's samples.
func (r *statsRing) forget(backendID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, backendID)
	delete(r.seen, backendID)
}

// prune drops the samples of backends whose newest arrived before cutoff.
func (r *statsRing) prune(cutoff time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, t := range r.seen {
		if t.Before(cutoff) {
			delete(r.m, id)
			delete(r.seen, id)
		}
	}
}

func (d *Dispatcher) handleStats(m *nats.Msg) {
	s, err := plane.Decode[plane.BackendStats](m.Data)
	if err != nil {
		d.Logger.Debug("invalid stats", "err", err)
		return
	}
	d.stats.add(s, d.Now())
	if r, ok := d.Applier.(ConnectionReconciler); ok && d.singleton() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.ReconcileConnections(ctx, s)
	}
}

// ConnectionReconciler records as left the users a drone's stats no
// longer list (the controller core): a restarted drone reports no leaves
// for the connections it lost. The controller that holds the lease does.
type ConnectionReconciler interface {
	ReconcileConnections(ctx context.Context, st plane.BackendStats)
}

// Stats returns the latest stats of a backend.
func (d *Dispatcher) Stats(backendID string) (plane.BackendStats, bool) {
	return d.stats.latest(backendID)
}

// StatsHistory returns a copy of a live backend's recent stats, oldest first.
func (d *Dispatcher) StatsHistory(backendID string) []plane.BackendStats {
	return d.stats.history(backendID)
}
