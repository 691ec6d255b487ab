package drone

import (
	"context"
	"fmt"
	"time"

	"plane"
	"plane/drone/docker"
)

// reconcile compares the drone's records with the containers the runtime has
// and picks up where the previous run left off: running containers are
// adopted and keep running; those that exited meanwhile are reported
// terminated with their exit code; containers nobody knows are removed.
func (a *Agent) reconcile(ctx context.Context) error {
	recs, err := a.cfg.Store.LiveBackends(ctx)
	if err != nil {
		return fmt.Errorf("read live backends: %w", err)
	}
	containers, err := a.cfg.Runtime.List(ctx, a.cfg.ID)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	byBackend := make(map[string]docker.ContainerState, len(containers))
	for _, c := range containers {
		byBackend[c.BackendID] = c
	}

	now := time.Now()
	for _, rec := range recs {
		b := a.newBackend(rec)
		c, ok := byBackend[b.id]
		delete(byBackend, b.id)
		switch {
		case !ok:
			if rec.Status == plane.StatusTerminating {
				b.finish(ctx, rec.Reason, nil, "")
			} else {
				b.fail(ctx, nil, "container disappeared while the drone was down (status was %s)", rec.Status)
			}
		case c.Running:
			rec.ContainerID, rec.Address = c.ID, c.Address
			b.since = now // the idle clock restarts: nobody could connect while we were down
			if c.Paused {
				// Suspended before the restart: it stays so, its
				// suspension counted from now, and a request wakes it.
				b.suspended = now
			}
			a.mu.Lock()
			a.backends[b.id] = b
			a.mu.Unlock()
			b.attach(a.ctx)
			if a.cfg.Proxy != nil {
				// Route at once: the proxy serves adopted backends before any change.
				a.cfg.Proxy.SetRoute(routeOf(rec, c.Paused))
			}
			// rec is b's record from here on: its goroutine owns it.
			status := rec.Status
			a.wg.Go(func() { b.resume(a.ctx, status) })
			a.log.Info("adopted running backend", "backend", b.id, "status", status)
		default:
			rec.ContainerID = c.ID
			code := c.ExitCode
			switch {
			case rec.Status == plane.StatusTerminating:
				b.finish(ctx, rec.Reason, &code, "")
			case rec.Status.Rank() < plane.StatusReady.Rank() && c.FinishedAt.IsZero():
				// Created, never started: the drone stopped in between.
				b.fail(ctx, nil, "the drone stopped before the container started (status was %s): spawn it again", rec.Status)
			case rec.Status.Rank() < plane.StatusReady.Rank():
				b.fail(ctx, &code, "process exited with code %d before answering HTTP on port %d", code, rec.Spec.Port)
			default:
				b.finish(ctx, plane.ReasonExited, &code, "")
			}
			a.log.Info("backend exited while the drone was down", "backend", b.id, "exit_code", code)
		}
	}
	for id, c := range byBackend {
		// A container of ours with no live record: either already reported
		// terminated, or created by a run that died before recording it,
		// or a warm pool's member that no spawn claimed (members are not
		// stored: the pools start again from empty, pool.go).
		if c.Running {
			if err := a.cfg.Runtime.Stop(ctx, c.ID, 0); err != nil {
				a.log.Warn("stop stray container", "backend", id, "err", err)
			}
		}
		if err := a.cfg.Runtime.Remove(ctx, c.ID); err != nil {
			a.log.Warn("remove stray container", "backend", id, "err", err)
			continue
		}
		if c.Pool != "" {
			a.log.Info("removed a warm pool member of the previous run", "backend", id, "image", c.Pool)
		}
	}
	return nil
}

// resume continues an adopted backend's lifecycle from its recorded status.
func (b *backend) resume(ctx context.Context, status plane.BackendStatus) {
	switch status {
	case plane.StatusReady:
		b.watch(ctx)
	case plane.StatusTerminating:
		b.mu.Lock()
		reason := b.rec.Reason
		b.mu.Unlock()
		b.stopContainer(ctx, stopRequest{reason: reason})
	default: // the container exists, so it had started: wait for it to answer
		b.waitReady(ctx)
	}
}
