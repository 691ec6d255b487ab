package controller

import (
	"context"

	"plane"
)

// What the drones report of their backends, as the dispatcher keeps it.

// Stats returns a backend's latest stats.
func (c *Core) Stats(backendID string) (plane.BackendStats, bool) {
	return c.Dispatch.Stats(backendID)
}

// StatsHistory returns a backend's recent stats, oldest first.
func (c *Core) StatsHistory(backendID string) []plane.BackendStats {
	return c.Dispatch.StatsHistory(backendID)
}

// Logs calls fn with a backend's log lines; with follow, also with new
// ones until ctx ends or fn fails.
func (c *Core) Logs(ctx context.Context, backendID string, follow bool, fn func(plane.LogLine) error) error {
	return c.Dispatch.Logs(ctx, backendID, follow, fn)
}
