package controller

import (
	"context"

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
	return d, nil
}
