package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"plane"
)

// Disconnect closes user's open connections to b at once (every user's
// when all), and from then on refuses their connect tokens issued before
// it, cookies included: the drone refuses those of the tokens that expire
// before the cutoff, which tokens issued once Disconnect has answered do
// not. Tokens carry whole seconds, so it answers once the second it was
// asked in is over: a token issued after the answer expires past the
// cutoff.
func (c *Core) Disconnect(ctx context.Context, actor plane.Actor, b *plane.Backend, user string, all bool) error {
	if !b.Status.Live() {
		return plane.Errorf(plane.ECONFLICT, "backend %s is terminated (%s): nobody is connected", b.ID, b.TerminationReason)
	}
	if !all {
		if err := (&plane.DisconnectRequest{BackendID: b.ID, User: user}).Validate(); err != nil {
			return err
		}
	}
	now := time.Now()
	next := now.Truncate(time.Second).Add(time.Second)
	req := plane.DisconnectRequest{BackendID: b.ID, User: user, All: all, TokensExpiringBefore: next.Add(c.connectTokenTTL()).Truncate(time.Second)}
	if all {
		req.User = ""
	}
	if err := c.Dispatch.Disconnect(ctx, b.DroneID, req); err != nil {
		return fmt.Errorf("disconnect on drone %s: %w", b.DroneID, err)
	}
	who := "user " + fmt.Sprintf("%q", user)
	if all {
		who = "every user"
	}
	c.Record(ctx, actor, b.ProjectID, plane.ActionBackendDisconnect, b.ID, who)
	select {
	case <-time.After(time.Until(next)):
	case <-ctx.Done():
	}
	return nil
}

// MaxKeepAliveSeconds bounds one keep-alive.
const MaxKeepAliveSeconds = 24 * 60 * 60

// KeepAlive holds off b's idle stop (and suspension) for seconds from now,
// bounded by its lifetime; a later keep-alive replaces an earlier one. The
// store keeps who asked and until when, for the answers that say why a
// backend is still up.
func (c *Core) KeepAlive(ctx context.Context, actor plane.Actor, b *plane.Backend, seconds int) (*plane.Backend, error) {
	if seconds < 1 || seconds > MaxKeepAliveSeconds {
		return nil, plane.FieldErrorf("seconds", "must be between 1 and %d (got %d)", MaxKeepAliveSeconds, seconds)
	}
	if !b.Status.Live() {
		return nil, plane.Errorf(plane.ECONFLICT, "backend %s is terminated (%s): spawn a new one", b.ID, b.TerminationReason)
	}
	until := time.Now().Add(time.Duration(seconds) * time.Second).Truncate(time.Millisecond)
	if b.LifetimeSeconds > 0 {
		if end := b.CreatedAt.Add(time.Duration(b.LifetimeSeconds) * time.Second); until.After(end) {
			until = end // its lifetime ends it all the same
		}
	}
	if err := c.Dispatch.KeepAlive(ctx, b.DroneID, plane.KeepAliveRequest{BackendID: b.ID, Until: until}); err != nil {
		return nil, fmt.Errorf("keep alive on drone %s: %w", b.DroneID, err)
	}
	kept, err := c.Store.SetKeepAlive(ctx, b.ID, until, actor.Name)
	if err != nil {
		return nil, err
	}
	c.Record(ctx, actor, b.ProjectID, plane.ActionBackendKeepAlive, b.ID, "until "+until.UTC().Format(time.RFC3339))
	return kept, nil
}

// A drone forgets who was connected when it restarts: its proxy's
// connections are gone, and with them the leaves it would have reported.
// So the users the store holds connected are compared with those the
// drone's stats list (plane.BackendStats.Users), and a user missing from
// them for ghostAfter is recorded as gone. The store is read at most once
// every ghostCheckEvery per backend.
var (
	ghostAfter      = 10 * time.Second
	ghostCheckEvery = 10 * time.Second
)

const maxGhostChecks = 10000

// ghosts is ReconcileConnections' memory; its zero value is ready to use.
type ghosts struct {
	mu      sync.Mutex
	checked map[string]time.Time            // backend ID → when the store was last read for it
	missing map[string]map[string]time.Time // backend ID → user → first seen missing
}

// ReconcileConnections records as left the users the store holds
// connected to st's backend whom its drone has not listed for ghostAfter.
// A drone that does not list users (protocol 2: Users empty while it
// counts connections) is left alone.
func (c *Core) ReconcileConnections(ctx context.Context, st plane.BackendStats) {
	if c.Events == nil || len(st.Users) == 0 && st.Connections > 0 {
		return
	}
	now := time.Now()
	g := &c.ghosts
	g.mu.Lock()
	if g.checked == nil {
		g.checked, g.missing = map[string]time.Time{}, map[string]map[string]time.Time{}
	}
	due := now.Sub(g.checked[st.BackendID]) >= ghostCheckEvery
	if due {
		g.checked[st.BackendID] = now
		if len(g.checked) > maxGhostChecks {
			// Ended backends send no more stats: forget them.
			for id, at := range g.checked {
				if now.Sub(at) > time.Minute {
					delete(g.checked, id)
					delete(g.missing, id)
				}
			}
		}
	}
	g.mu.Unlock()
	if !due {
		return
	}
	stored, err := c.Events.FindConnections(ctx, st.BackendID)
	if err != nil {
		c.logger().Warn("compare a backend's users with its drone's", "backend", st.BackendID, "err", err)
		return
	}
	listed := make(map[string]bool, len(st.Users))
	for _, u := range st.Users {
		listed[u.User] = true
	}
	var gone []string
	g.mu.Lock()
	missing := map[string]time.Time{}
	for _, u := range stored {
		if listed[u.User] || now.Sub(u.Since) < ghostAfter {
			continue
		}
		first, ok := g.missing[st.BackendID][u.User]
		if !ok {
			first = now
		}
		if now.Sub(first) >= ghostAfter {
			gone = append(gone, u.User)
			continue
		}
		missing[u.User] = first
	}
	if len(missing) > 0 {
		g.missing[st.BackendID] = missing
	} else {
		delete(g.missing, st.BackendID)
	}
	g.mu.Unlock()
	for _, u := range gone {
		ev := plane.BackendEvent{BackendID: st.BackendID, Status: plane.StatusReady, Time: now,
			Connection: &plane.ConnectionChange{User: u, Users: len(listed)}}
		if _, _, err := c.ApplyBackendEvent(ctx, ev); err != nil {
			c.logger().Warn("record a user its drone no longer lists as left", "backend", st.BackendID, "err", err)
			continue
		}
		c.logger().Info("a user the drone no longer lists is recorded as left (the drone restarted?)", "backend", st.BackendID)
	}
}
