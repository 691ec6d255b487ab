package controller

import (
	"context"
	"sync"
	"time"

	"plane"
)

// Drain stops (or, with draining false, resumes) new placements on a
// drone. The drone must acknowledge; the store then follows at once rather
// than at its next heartbeat.
func (c *Core) Drain(ctx context.Context, actor plane.Actor, droneID string, draining bool) (*plane.Drone, error) {
	d, err := c.Store.FindDroneByID(ctx, droneID)
	if err != nil {
		return nil, err
	}
	if err := c.Dispatch.Drain(ctx, d.ID, draining); err != nil {
		return d, err
	}
	if err := c.Store.SetDroneDraining(ctx, d.ID, draining); err != nil {
		return d, err
	}
	c.logger().Info("drone drain", "drone", d.ID, "draining", draining, "by", actor.Name)
	d.Draining = draining
	if err := c.Bus.Publish(context.WithoutCancel(ctx), plane.Event{Kind: plane.EventDrone, Drone: d}); err != nil {
		c.logger().Warn("announce a drone's change", "drone", d.ID, "err", err)
	}
	return d, nil
}

// droneStatusTTL is how long DroneUnreachable trusts the drone list it read.
const droneStatusTTL = time.Second

// droneStatuses caches which drones are unreachable, for the answers that
// flag a backend whose drone is not heard from.
type droneStatuses struct {
	mu          sync.Mutex
	read        time.Time
	unreachable map[string]bool
}

// DroneUnreachable reports whether drone id is unreachable: its backends
// keep their status, but nobody has heard from their drone for a while.
// It reads the drone list at most once a second; on a store failure it
// says false (the status is then all the answer shows).
func (c *Core) DroneUnreachable(ctx context.Context, id string) bool {
	s := &c.drones
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); now.Sub(s.read) >= droneStatusTTL {
		ds, err := c.Store.FindDrones(ctx)
		if err != nil {
			c.logger().Warn("read drones", "err", err)
			return false
		}
		s.read, s.unreachable = now, map[string]bool{}
		for _, d := range ds {
			if d.Status == plane.DroneUnreachable {
				s.unreachable[d.ID] = true
			}
		}
	}
	return s.unreachable[id]
}

// MarkUnreachable sets DroneUnreachable on the live backends among bs whose
// drone is unreachable, for the pages that show them.
func (c *Core) MarkUnreachable(ctx context.Context, bs ...*plane.Backend) {
	for _, b := range bs {
		b.DroneUnreachable = b.Status.Live() && c.DroneUnreachable(ctx, b.DroneID)
	}
}
