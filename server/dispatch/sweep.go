package dispatch

import (
	"context"
	"time"

	"plane"
)

// sweepInterval is how often silent drones are looked for.
const sweepInterval = time.Second

// sweepLoop marks drones that stopped beating lost, and their backends with
// them, so that no backend stays live on a machine that is gone; it also
// drops the stats of backends that stopped sending them.
func (d *Dispatcher) sweepLoop(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if d.singleton() { // else the lease's holder sweeps
				if err := d.Sweep(ctx); err != nil && ctx.Err() == nil {
					d.Logger.Error("sweep drones", "err", err)
				}
			}
			d.stats.prune(d.Now().Add(-statsStaleAfter))
		}
	}
}

// Sweep runs one pass over the drones: one silent for UnreachableAfter is
// marked unreachable (it gets no new backends), one silent for LostAfter is
// lost, and its live backends are terminated as lost, which frees their
// keys.
func (d *Dispatcher) Sweep(ctx context.Context) error {
	if d.UnreachableAfter <= 0 || d.LostAfter <= 0 {
		if err := d.setLimits(); err != nil {
			return err
		}
	}
	drones, err := d.Drones.FindDrones(ctx)
	if err != nil {
		return err
	}
	now := d.Now()
	for _, dr := range drones {
		silent := now.Sub(dr.LastHeartbeat)
		switch {
		case dr.Status == plane.DroneLost:
			continue
		case silent < d.UnreachableAfter:
			continue
		case silent < d.LostAfter:
			if dr.Status == plane.DroneReady || dr.Status == plane.DroneDraining {
				// Its backends keep their status and names: the drone may
				// serve them still, and one back in time finds them as
				// they were.
				d.Logger.Warn("drone unreachable", "drone", dr.ID, "last_heartbeat", dr.LastHeartbeat, "lost_in", (d.LostAfter - silent).Round(time.Second))
				if err := d.Drones.SetDroneStatus(ctx, dr.ID, plane.DroneUnreachable); err != nil {
					return err
				}
				dr.Status = plane.DroneUnreachable
				d.announceDrone(ctx, dr)
			}
			continue
		}
		d.Logger.Warn("drone lost", "drone", dr.ID, "last_heartbeat", dr.LastHeartbeat)
		if err := d.Drones.SetDroneStatus(ctx, dr.ID, plane.DroneLost); err != nil {
			return err
		}
		dr.Status = plane.DroneLost
		d.announceDrone(ctx, dr)
		live := true
		backends, err := d.Backends.FindBackends(ctx, plane.BackendFilter{DroneID: &dr.ID, Live: &live, Limit: 1000})
		if err != nil {
			return err
		}
		for _, b := range backends {
			ev := plane.BackendEvent{BackendID: b.ID, DroneID: dr.ID, Status: plane.StatusTerminated, Time: now,
				Reason: plane.ReasonLost, Error: "drone " + dr.ID + " stopped answering"}
			if _, err := d.Apply(ctx, ev); err != nil {
				return err
			}
		}
	}
	return nil
}
