package drone

import (
	"context"
	"strconv"
	"time"

	"plane"
	"plane/drone/proxy"
)

// Connections (plane's connection.go): the proxy knows who holds which
// connections to a backend and tells the agent when a user joins or leaves
// (proxy/users.go); the agent records each change as a status event of
// the ready backend through the outbox, durable like a status change. The
// controller asks the drone to disconnect users (handleDisconnect) and to
// keep an idle backend alive for a while (handleKeepAlive).

// maxQueuedConnChanges bounds the changes waiting to be recorded: far more
// than a drone's sqlite writes fall behind by, unless the agent is not
// running at all.
const maxQueuedConnChanges = 100_000

// userChanged is the proxy's OnUsers: it queues the change for
// connectionLoop, since recording it writes to sqlite and the proxy calls
// it holding the backend's bookkeeping.
func (a *Agent) userChanged(c proxy.UserChange) {
	a.connMu.Lock()
	if len(a.connQueue) >= maxQueuedConnChanges {
		a.connDropped++
		a.connMu.Unlock()
		return
	}
	a.connQueue = append(a.connQueue, c)
	a.connMu.Unlock()
	select {
	case a.connKick <- struct{}{}:
	default:
	}
}

// connectionLoop records the queued connection changes, in order.
func (a *Agent) connectionLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.connKick:
		}
		for {
			a.connMu.Lock()
			batch, dropped := a.connQueue, a.connDropped
			a.connQueue, a.connDropped = nil, 0
			a.connMu.Unlock()
			if dropped > 0 {
				a.log.Error("connection changes dropped: too many waiting to be recorded", "dropped", dropped)
			}
			if len(batch) == 0 {
				break
			}
			for _, c := range batch {
				a.recordConnection(ctx, c)
			}
		}
	}
}

// recordConnection records a change of a live backend; one that left the
// live set meanwhile has terminated, and the controller forgets its users
// itself.
func (a *Agent) recordConnection(ctx context.Context, c proxy.UserChange) {
	a.mu.Lock()
	b := a.backends[c.BackendID]
	member := b != nil && b.member != nil
	a.mu.Unlock()
	if b == nil || member {
		return
	}
	b.reportConnection(ctx, c)
}

// reportConnection sends the controller a user's join or leave of the
// backend, while it is ready; each is its own message of the outbox.
func (b *backend) reportConnection(ctx context.Context, c proxy.UserChange) {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	b.mu.Lock()
	rec := *b.rec
	b.mu.Unlock()
	if rec.Status != plane.StatusReady {
		// Terminating: the controller clears its users when it learns of
		// the end, so a leave now would be news of nothing.
		return
	}
	ev := plane.BackendEvent{
		BackendID: b.id, DroneID: b.a.cfg.ID, Status: plane.StatusReady, Time: c.Time, Address: rec.Address,
		Connection: &plane.ConnectionChange{User: c.User, Joined: c.Joined, Users: c.Users},
	}
	if err := ev.Validate(); err != nil {
		// A user name the controller would refuse (it signed the token,
		// so this is a bug): the event would be dropped there.
		b.log.Error("connection change not reported", "err", err)
		return
	}
	// The agent's start and a sequence keep the ID unique across
	// restarts, so that the stream's deduplication never drops one; the
	// user stays out of it (any printable text, and nobody's business).
	id := b.id + ".conn." + b.a.started + "." + strconv.FormatUint(b.a.connSeq.Add(1), 36) + "." + strconv.FormatInt(c.Time.UnixNano(), 36)
	if b.record(ctx, &rec, ev, id) {
		b.log.Debug("connection change", "user", c.User, "joined", c.Joined, "users", c.Users)
	}
}

// liveBackend is backend id if this drone runs it; otherwise the error to
// answer, or (nil, nil) for a backend that has terminated here.
func (a *Agent) liveBackend(ctx context.Context, id string) (*backend, error) {
	a.mu.Lock()
	b := a.backends[id]
	a.mu.Unlock()
	if b != nil {
		// One that just terminated stays in the live set until finish has
		// announced it: it is terminated already.
		b.mu.Lock()
		over := b.rec.Status == plane.StatusTerminated
		b.mu.Unlock()
		if over {
			return nil, nil
		}
		return b, nil
	}
	rec, err := a.cfg.Store.FindBackend(ctx, id) // ENOTFOUND when it never ran here
	if err != nil {
		return nil, err
	}
	if rec.Status == plane.StatusTerminated {
		return nil, nil
	}
	return nil, plane.Errorf(plane.EUNAVAILABLE, "backend %s is %s but not running on drone %s", id, rec.Status, a.cfg.ID)
}

// handleDisconnect closes a user's connections (everyone's with All) to a
// backend and refuses their connect tokens issued before.
func (a *Agent) handleDisconnect(ctx context.Context, data []byte) error {
	req, err := plane.Decode[plane.DisconnectRequest](data)
	if err != nil {
		return err
	}
	b, err := a.liveBackend(ctx, req.BackendID)
	if err != nil {
		return err
	}
	if b == nil || a.cfg.Proxy == nil {
		return nil // terminated, or nobody connects: nobody to disconnect
	}
	closed, ok := a.cfg.Proxy.Disconnect(req.BackendID, req.User, req.All, req.TokensExpiringBefore)
	if !ok {
		// Every live backend is routed from its start (startLocked,
		// reconcile, a claim): one that is not cannot be protected.
		return plane.Errorf(plane.EINTERNAL, "disconnect from backend %s: the proxy has no route to it", req.BackendID)
	}
	b.log.Info("users disconnected", "user", req.User, "all", req.All, "connections", closed,
		"tokens_expiring_before", req.TokensExpiringBefore)
	return nil
}

// handleKeepAlive holds off a backend's idle stop until the request's
// Until, replacing an earlier request.
func (a *Agent) handleKeepAlive(ctx context.Context, data []byte) error {
	req, err := plane.Decode[plane.KeepAliveRequest](data)
	if err != nil {
		return err
	}
	b, err := a.liveBackend(ctx, req.BackendID)
	if err != nil {
		return err
	}
	if b == nil {
		return plane.Errorf(plane.ECONFLICT, "backend %s has terminated: nothing to keep alive", req.BackendID)
	}
	until := b.keepAlive(req.Until)
	b.log.Debug("kept alive", "until", until)
	return nil
}

// keepAlive holds off the idle stop until until, at most to the end of the
// backend's lifetime (whose own timer is left alone), and returns the time
// it holds to.
func (b *backend) keepAlive(until time.Time) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.rec.Spec.LifetimeSeconds; s > 0 {
		if end := b.rec.CreatedAt.Add(time.Duration(s) * time.Second); until.After(end) {
			until = end
		}
	}
	b.keepUntil = until
	return until
}
