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
			if err := d.Sweep(ctx); err != nil && ctx.Err() == nil {
				d.Logger.Error("sweep drones", "err", err)
			}
			d.stats.prune(d.Now().Add(-statsStaleAfter))
		}
	}
}

// Sweep runs one pass of the lost-drone check.
func (d *Dispatcher) Sweep(ctx context.Context) error {
	drones, err := d.Drones.FindDrones(ctx)
	if err != nil {
		return err
	}
	now := d.Now()
	for _, dr := range drones {
		if dr.Status == plane.DroneLost || now.Sub(dr.LastHeartbeat) < plane.DroneLostAfter {
			continue
		}
		d.Logger.Warn("drone lost", "drone", dr.ID, "last_heartbeat", dr.LastHeartbeat)
		if err := d.Drones.SetDroneStatus(ctx, dr.ID, plane.DroneLost); err != nil {
			return err
		}
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
