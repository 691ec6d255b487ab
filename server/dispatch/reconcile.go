package dispatch

import (
	"context"
	"fmt"
	"sync"
	"time"

	"plane"
)

// Reconciliation compares what a drone says it runs (its heartbeat's live
// backends) with what the store holds live on it, both ways:
//
//   - a zombie runs on the drone but is terminated in the store (marked lost
//     while the drone was away, or failed when a spawn request timed out
//     after the drone had taken it) or unknown to it: the drone is told to
//     stop it, once per zombieRetry however many heartbeats list it (a
//     drone back from a partition delivers its queued heartbeats at once),
//     and again at the next heartbeat when the drone did not answer;
//   - a phantom is live in the store but absent from every heartbeat of
//     its drone for phantomAfter (and older than that): it is terminated as
//     lost, which frees its key and its name;
//   - a backend the drone lists but that has not reached ready for
//     stuckAfter (past the drone's own deadlines: pull 5 min, answering
//     HTTP 30 s) is terminated as failed, and so stopped as a zombie: the
//     controller's deadline on the phases before ready.
//
// Each correction is logged once.
const (
	zombieRetry  = 30 * time.Second
	phantomAfter = 30 * time.Second
	stuckAfter   = 10 * time.Minute
)

// reconcileState is what reconciliation remembers between heartbeats.
type reconcileState struct {
	mu      sync.Mutex
	last    map[string]time.Time // each drone's newest heartbeat time (the drone's clock)
	stopped map[string]time.Time // zombies asked to stop, when
	missing map[string]time.Time // phantom candidates: when first missed
}

// fresh reports whether hb is newer than every heartbeat of its drone seen
// before; an older one (delivered late) says nothing about now.
func (r *reconcileState) fresh(hb plane.Heartbeat, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last, r.stopped, r.missing = map[string]time.Time{}, map[string]time.Time{}, map[string]time.Time{}
	}
	if last, ok := r.last[hb.DroneID]; ok && !hb.Time.IsZero() && !hb.Time.After(last) {
		return false
	}
	r.last[hb.DroneID] = hb.Time
	// Forget what no heartbeat brings up any more.
	for id, at := range r.stopped {
		if now.Sub(at) > 2*zombieRetry {
			delete(r.stopped, id)
		}
	}
	for id, at := range r.missing {
		if now.Sub(at) > 10*phantomAfter {
			delete(r.missing, id)
		}
	}
	return true
}

// askStop reports whether zombie id should be told to stop now.
func (r *reconcileState) askStop(id string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if at, ok := r.stopped[id]; ok && now.Sub(at) < zombieRetry {
		return false
	}
	r.stopped[id] = now
	return true
}

// forgetStop lets the next heartbeat ask zombie id to stop again.
func (r *reconcileState) forgetStop(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.stopped, id)
}

// missed records that backend id was absent from a heartbeat at now and
// returns since when it has been.
func (r *reconcileState) missed(id string, now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	since, ok := r.missing[id]
	if !ok {
		r.missing[id] = now
		return now
	}
	return since
}

// seen forgets the phantom candidates among ids and the zombies not listed.
func (r *reconcileState) seen(ids []string, drop []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		delete(r.missing, id)
	}
	for _, id := range drop {
		delete(r.missing, id)
		delete(r.stopped, id)
	}
}

// reconcile compares a fresh heartbeat with the store (see above).
func (d *Dispatcher) reconcile(ctx context.Context, hb plane.Heartbeat) error {
	now := d.Now()
	if !d.recon.fresh(hb, now) {
		return nil
	}
	live := true
	bs, err := d.Backends.FindBackends(ctx, plane.BackendFilter{DroneID: &hb.DroneID, Live: &live, Limit: 10000})
	if err != nil {
		return err
	}
	running := make(map[string]bool, len(hb.LiveBackends))
	for _, id := range hb.LiveBackends {
		running[id] = true
	}
	known := make(map[string]bool, len(bs))
	var present, gone []string
	for _, b := range bs {
		known[b.ID] = true
		if running[b.ID] {
			present = append(present, b.ID)
			if b.Status.Rank() < plane.StatusReady.Rank() && now.Sub(b.UpdatedAt) >= stuckAfter {
				d.Logger.Warn("a backend stuck before ready is terminated", "drone", hb.DroneID, "backend", b.ID, "status", b.Status, "since", b.UpdatedAt)
				ev := plane.BackendEvent{BackendID: b.ID, DroneID: hb.DroneID, Status: plane.StatusTerminated, Time: now,
					Reason: plane.ReasonFailed, Error: fmt.Sprintf("stuck %s for %s: past every deadline of its drone", b.Status, stuckAfter)}
				if _, err := d.Apply(ctx, ev); err != nil {
					return err
				}
			}
			continue
		}
		since := d.recon.missed(b.ID, now)
		if now.Sub(since) < phantomAfter || now.Sub(b.UpdatedAt) < phantomAfter {
			continue
		}
		d.Logger.Warn("a backend the drone does not run is terminated as lost", "drone", hb.DroneID, "backend", b.ID, "status", b.Status, "missing_since", since)
		ev := plane.BackendEvent{BackendID: b.ID, DroneID: hb.DroneID, Status: plane.StatusTerminated, Time: now,
			Reason: plane.ReasonLost, Error: "drone " + hb.DroneID + " does not run it"}
		if _, err := d.Apply(ctx, ev); err != nil {
			return err
		}
		gone = append(gone, b.ID)
	}
	d.recon.seen(present, gone)
	return d.stopZombies(ctx, hb, known, now)
}

// stopZombies asks the drone to stop what it runs that the store does not
// hold live (on this drone or, moved, on another).
func (d *Dispatcher) stopZombies(ctx context.Context, hb plane.Heartbeat, known map[string]bool, now time.Time) error {
	for _, id := range hb.LiveBackends {
		if known[id] {
			continue
		}
		b, err := d.Backends.FindBackendByID(ctx, id)
		if err != nil && plane.ErrorCodeOf(err) != plane.ENOTFOUND {
			return err
		}
		if b != nil && b.Status.Live() {
			continue // live, on another drone's record: leave it to that one
		}
		if !d.recon.askStop(id, now) {
			continue
		}
		d.Logger.Warn("stopping a backend the controller holds terminated", "drone", hb.DroneID, "backend", id)
		go func() {
			req := plane.TerminateRequest{BackendID: id, Hard: true, Reason: plane.ReasonLost}
			if err := d.Terminate(context.Background(), hb.DroneID, req); err != nil {
				// Not heard (a drone just back whose connection is not yet
				// new): the next heartbeat asks again.
				d.recon.forgetStop(id)
				d.Logger.Warn("stop backend", "drone", hb.DroneID, "backend", id, "err", err)
			}
		}()
	}
	return nil
}
