package dispatch

import (
	"context"

	"plane"
)

// stopUnknown stops backends a drone runs that the store holds terminated:
// those marked lost while the drone was unreachable, or failed when a spawn
// request timed out after the drone had taken it. Without this they would
// run on, unseen, until their idle limit.
func (d *Dispatcher) stopUnknown(ctx context.Context, hb plane.Heartbeat) error {
	if len(hb.LiveBackends) == 0 {
		return nil
	}
	live := true
	bs, err := d.Backends.FindBackends(ctx, plane.BackendFilter{DroneID: &hb.DroneID, Live: &live, Limit: 1000})
	if err != nil {
		return err
	}
	known := make(map[string]bool, len(bs))
	for _, b := range bs {
		known[b.ID] = true
	}
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
		d.Logger.Warn("stopping a backend the controller holds terminated", "drone", hb.DroneID, "backend", id)
		go func() {
			req := plane.TerminateRequest{BackendID: id, Hard: true, Reason: plane.ReasonLost}
			if err := d.Terminate(context.Background(), hb.DroneID, req); err != nil {
				d.Logger.Warn("stop backend", "drone", hb.DroneID, "backend", id, "err", err)
			}
		}()
	}
	return nil
}
