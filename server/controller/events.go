package controller

import (
	"context"

	"plane"
)

// The project event log (plane.ProjectEvent): the store appends to it with
// each change; the core announces that it grew, and readers (the API's
// event streams, the webhook deliveries) take the new entries from the
// store.

// logGrown announces that b's project's event log grew, on the bus for the
// event streams of every controller, and to this controller's webhook
// deliveries, which send what the store queued with the events.
func (c *Core) logGrown(b *plane.Backend) {
	e := plane.Event{Kind: plane.EventProjectLog, ProjectLog: &plane.ProjectLogGrown{ProjectID: b.ProjectID, BackendID: b.ID}}
	if err := c.Bus.Publish(context.Background(), e); err != nil {
		c.logger().Warn("publish project event", "project", b.ProjectID, "backend", b.ID, "err", err)
	}
	c.hooks.wake()
}

func (c *Core) events() (plane.ProjectEventService, error) {
	if c.Events == nil {
		return nil, plane.Errorf(plane.EUNAVAILABLE, "this controller keeps no event log")
	}
	return c.Events, nil
}

// ProjectEvents returns a project's events after afterID, oldest first, at
// most limit. The log keeps a project's latest plane.MaxProjectEvents: a
// reader that comes back after more than that gets those, from the oldest.
func (c *Core) ProjectEvents(ctx context.Context, projectID, afterID int64, limit int) ([]*plane.ProjectEvent, error) {
	ev, err := c.events()
	if err != nil {
		return nil, err
	}
	return ev.FindProjectEvents(ctx, projectID, afterID, limit)
}

// BackendEvents is ProjectEvents for one backend's events.
func (c *Core) BackendEvents(ctx context.Context, backendID string, afterID int64, limit int) ([]*plane.ProjectEvent, error) {
	ev, err := c.events()
	if err != nil {
		return nil, err
	}
	return ev.FindBackendEvents(ctx, backendID, afterID, limit)
}

// UserConnections is a user connected to a backend, and how many
// connections they hold.
type UserConnections struct {
	plane.Connection
	Connections int
}

// Connections returns the users connected to b now, as the store knows
// them, with the count of connections each holds from b's latest stats; a
// user the stats do not name (yet) holds one.
func (c *Core) Connections(ctx context.Context, b *plane.Backend) ([]UserConnections, error) {
	ev, err := c.events()
	if err != nil {
		return nil, err
	}
	conns, err := ev.FindConnections(ctx, b.ID)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	if st, ok := c.Dispatch.Stats(b.ID); ok {
		for _, u := range st.Users {
			counts[u.User] = u.Connections
		}
	}
	out := make([]UserConnections, len(conns))
	for i, cn := range conns {
		n := counts[cn.User]
		if n < 1 {
			n = 1
		}
		out[i] = UserConnections{Connection: cn, Connections: n}
	}
	return out, nil
}
