package drone

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"plane"
	"plane/drone/docker"
	"plane/drone/store"
)

// backend drives one backend through its lifecycle. Its goroutine owns the
// record; terminate() only sends it a request.
type backend struct {
	a    *Agent
	id   string
	log  *slog.Logger
	stop chan stopRequest

	mu  sync.Mutex
	rec *store.Backend

	exited   chan int           // the container's exit code, once
	logsDone chan struct{}      // closed when the log follower has forwarded all output
	since    time.Time          // start of the idle clock: ready, or adoption after a restart
	usage    plane.BackendStats // last CPU and memory sample

	// suspendMu serializes pausing and unpausing the container; suspended
	// (under mu) is when it was paused, zero while it is not.
	suspendMu sync.Mutex
	suspended time.Time
	// keepUntil (under mu): a keep-alive request (connections.go) holds
	// off the idle stop until then.
	keepUntil time.Time

	// outMu orders the backend's messages in the outbox: a connection
	// change (connections.go), checked to be of a ready backend, is
	// queued before its terminating or after, never between the check
	// and a status change.
	outMu sync.Mutex

	// member is set while the backend is an unclaimed member of a warm
	// pool (pool.go): the controller knows nothing of it, so its status
	// changes stay in memory. Its goroutine clears it, under a.mu, when a
	// spawn claims it; other goroutines read it under a.mu.
	member *member
	// after are closed once the containers this backend must wait for
	// are removed (a pool member evicted to make room for it, or one with
	// its ID and so its container's name): its own starts after them.
	after []<-chan struct{}
}

type stopRequest struct {
	hard   bool
	reason plane.TerminationReason
}

func (a *Agent) newBackend(rec *store.Backend) *backend {
	return &backend{
		a:    a,
		id:   rec.Spec.BackendID,
		log:  a.log.With("backend", rec.Spec.BackendID),
		stop: make(chan stopRequest, 4),
		rec:  rec,
	}
}

// terminate asks the backend's goroutine to stop it; a hard request after a
// soft one escalates to SIGKILL.
func (b *backend) terminate(hard bool, reason plane.TerminationReason) {
	select {
	case b.stop <- stopRequest{hard: hard, reason: reason}:
	default: // enough requests are queued already
	}
}

// emit moves the backend to status, persisting the record and the event in
// one transaction of the outbox so that the controller gets every change,
// even across a drone or controller restart.
func (b *backend) emit(ctx context.Context, status plane.BackendStatus, mutate func(*store.Backend, *plane.BackendEvent)) {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	now := time.Now()
	b.mu.Lock()
	b.rec.Status = status
	b.rec.UpdatedAt = now
	ev := plane.BackendEvent{BackendID: b.id, DroneID: b.a.cfg.ID, Status: status, Time: now, Address: b.rec.Address}
	if mutate != nil {
		mutate(b.rec, &ev)
	}
	rec := *b.rec
	b.mu.Unlock()
	if b.member != nil {
		return // an unclaimed pool member: nobody is told of it (pool.go)
	}
	if b.record(ctx, &rec, ev, b.id+"."+string(status)) {
		b.a.route(&rec)
		b.log.Debug("status", "status", status)
	}
}

// record writes rec and ev, under the outbox message ID msgID, in one
// transaction of the outbox, and sends a copy of ev on core NATS. It
// reports whether the write succeeded.
func (b *backend) record(ctx context.Context, rec *store.Backend, ev plane.BackendEvent, msgID string) bool {
	data, err := json.Marshal(ev)
	if err != nil {
		b.log.Error("encode event", "err", err)
		return false
	}
	// The write outlives a cancelled run context: a status reached must be recorded.
	if _, err := b.a.cfg.Store.PutBackendAndEnqueue(context.WithoutCancel(ctx), rec, plane.SubjectBackendStatus(b.id), msgID, data); err != nil {
		b.log.Error("record status", "status", ev.Status, "err", err)
		return false
	}
	b.a.out.notify()
	// A copy on core NATS reaches the controller at once, even while the
	// stream elects a leader; the outbox's copy is the one that counts.
	if err := b.a.cfg.NATS.Publish(plane.SubjectBackendStatusLive(b.id), data); err != nil {
		b.log.Debug("publish live status", "status", ev.Status, "err", err)
	}
	return true
}

// suspend pauses the idle backend's container, routes its requests
// through a resume, and reports the suspension. It reports whether the
// container is paused.
func (b *backend) suspend(ctx context.Context) bool {
	b.suspendMu.Lock()
	defer b.suspendMu.Unlock()
	b.mu.Lock()
	cid := b.rec.ContainerID
	b.mu.Unlock()
	if err := b.a.cfg.Runtime.Pause(ctx, cid); err != nil {
		b.log.Warn("suspend: pause the container", "err", err)
		return false
	}
	now := time.Now()
	b.mu.Lock()
	b.suspended = now
	b.mu.Unlock()
	b.a.routeSuspended(b, true)
	b.reportSuspension(ctx, true, now)
	b.log.Info("backend suspended")
	return true
}

// wake unpauses a suspended backend's container, and reports the resume
// when report says so; a backend that is not suspended (another request
// woke it first) is left as it is.
func (b *backend) wake(ctx context.Context, report bool) error {
	b.suspendMu.Lock()
	defer b.suspendMu.Unlock()
	b.mu.Lock()
	at, cid := b.suspended, b.rec.ContainerID
	b.mu.Unlock()
	if at.IsZero() {
		return nil
	}
	if err := b.a.cfg.Runtime.Unpause(ctx, cid); err != nil {
		return fmt.Errorf("resume backend %s: %w", b.id, err)
	}
	now := time.Now()
	b.mu.Lock()
	b.suspended, b.since = time.Time{}, now // the idle clock starts again
	b.mu.Unlock()
	b.a.routeSuspended(b, false)
	if report {
		b.reportSuspension(ctx, false, now)
	}
	b.log.Info("backend resumed", "suspended_for", now.Sub(at).Round(time.Millisecond))
	return nil
}

// reportSuspension sends the controller a suspension (true) or a resume of
// the ready backend at t; each is its own message of the outbox.
func (b *backend) reportSuspension(ctx context.Context, suspended bool, t time.Time) {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	b.mu.Lock()
	rec := *b.rec
	b.mu.Unlock()
	ev := plane.BackendEvent{BackendID: b.id, DroneID: b.a.cfg.ID, Status: plane.StatusReady, Time: t, Address: rec.Address, Suspended: &suspended}
	kind := "resumed"
	if suspended {
		kind = "suspended"
	}
	b.record(ctx, &rec, ev, b.id+"."+kind+"."+strconv.FormatInt(t.UnixNano(), 10))
}

// suspendedSince is when the backend was suspended, zero while it is not.
func (b *backend) suspendedSince() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.suspended
}

// finish records terminated with reason and cleans up: the container is
// removed (its logs were forwarded first) and the backend leaves the live set.
func (b *backend) finish(ctx context.Context, reason plane.TerminationReason, exitCode *int, msg string) {
	if m := b.member; m != nil {
		// Whatever ended it, the pool replaces it once its container is
		// gone, so that a new member never runs beside it over capacity.
		defer b.a.memberGone(b)
		if msg != "" {
			b.log.Warn("warm pool member failed", "error", msg)
		}
	} else if msg != "" {
		b.log.Info("backend terminated", "reason", reason, "error", msg)
	}
	b.emit(ctx, plane.StatusTerminated, func(r *store.Backend, e *plane.BackendEvent) {
		r.Reason, r.ExitCode, r.Error = reason, exitCode, msg
		e.Reason, e.ExitCode, e.Error = reason, exitCode, msg
	})
	b.a.forget(b)
	b.mu.Lock()
	cid := b.rec.ContainerID
	b.mu.Unlock()
	if cid == "" {
		return
	}
	if b.logsDone != nil {
		select {
		case <-b.logsDone:
		case <-time.After(2 * time.Second):
		}
	}
	if err := b.a.cfg.Runtime.Remove(context.WithoutCancel(ctx), cid); err != nil {
		b.log.Warn("remove container", "container", cid, "err", err)
	}
}

func (b *backend) fail(ctx context.Context, exitCode *int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > plane.MaxErrorLen {
		msg = msg[:plane.MaxErrorLen]
	}
	b.finish(ctx, plane.ReasonFailed, exitCode, msg)
}

// spawn runs a new backend from scheduled to terminated.
func (b *backend) spawn(ctx context.Context) {
	spec := b.rec.Spec
	rt := b.a.cfg.Runtime

	b.emit(ctx, plane.StatusLoading, nil)
	pullCtx, cancel := context.WithTimeout(ctx, b.a.cfg.PullTimeout)
	err := rt.EnsureImage(pullCtx, spec.ImageRef, spec.PullPolicy)
	cancel()
	if ctx.Err() != nil {
		return // the drone is stopping; reconcile picks this up on restart
	}
	if err != nil {
		b.fail(ctx, nil, "loading image %s: %v", spec.ImageRef, err)
		return
	}
	if req, ok := b.pendingStop(); ok {
		b.finish(ctx, req.reason, nil, "")
		return
	}

	for _, gone := range b.after {
		select {
		case <-gone:
		case <-ctx.Done():
			return
		}
	}

	b.emit(ctx, plane.StatusStarting, nil)
	var poolImage string
	if m := b.member; m != nil {
		poolImage = m.image
		m.startedAt = time.Now()
	}
	c, err := rt.Start(ctx, docker.ContainerSpec{
		BackendID: spec.BackendID,
		DroneID:   b.a.cfg.ID,
		ImageRef:  spec.ImageRef,
		Port:      spec.Port,
		Env:       containerEnv(spec),
		CPUMillis: spec.CPUMillis,
		MemoryMB:  spec.MemoryMB,
		Pool:      poolImage,
	})
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		b.fail(ctx, nil, "starting container: %v", err)
		return
	}
	b.emit(ctx, plane.StatusWaiting, func(r *store.Backend, e *plane.BackendEvent) {
		r.ContainerID, r.Address = c.ID, c.Address
		e.Address = c.Address
	})
	b.attach(ctx)
	b.waitReady(ctx)
}

// containerEnv is the request's environment plus what Plane promises every
// backend.
func containerEnv(spec plane.SpawnSpec) map[string]string {
	env := make(map[string]string, len(spec.Env)+3)
	for k, v := range spec.Env {
		env[k] = v
	}
	env["PORT"] = strconv.Itoa(spec.Port)
	env["PLANE_BACKEND_ID"] = spec.BackendID
	env["PLANE_BACKEND_KEY"] = spec.Key
	return env
}

// attach follows the container: its exit code and its logs.
func (b *backend) attach(ctx context.Context) {
	b.mu.Lock()
	cid := b.rec.ContainerID
	b.mu.Unlock()
	b.exited = make(chan int, 1)
	b.logsDone = make(chan struct{})
	rt := b.a.cfg.Runtime
	b.a.wg.Go(func() {
		code, err := rt.Wait(ctx, cid)
		if err != nil {
			if ctx.Err() == nil {
				b.log.Error("waiting for container", "err", err)
				code = -1
			} else {
				return
			}
		}
		b.exited <- code
	})
	b.a.wg.Go(func() {
		defer close(b.logsDone)
		b.a.forwardLogs(ctx, b.id, cid)
	})
}

// probeInterval is how often a waiting backend's port is tried: short, since
// it adds directly to spawn latency.
const probeInterval = 5 * time.Millisecond

var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// waitReady polls the backend's port until it answers HTTP, then watches it.
func (b *backend) waitReady(ctx context.Context) {
	spec := b.rec.Spec
	b.mu.Lock()
	url := "http://" + b.rec.Address + "/"
	b.mu.Unlock()
	deadline := time.NewTimer(b.a.cfg.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		if probe(ctx, url) {
			b.emit(ctx, plane.StatusReady, nil)
			// A pool's member waits for a claim first, and its
			// lifecycle ends there unless one comes.
			if b.member != nil && !b.pooled(ctx) {
				return
			}
			b.watch(ctx)
			return
		}
		select {
		case <-ctx.Done():
			return
		case code := <-b.exited:
			b.fail(ctx, &code, "process exited with code %d before answering HTTP on port %d", code, spec.Port)
			return
		case req := <-b.stop:
			b.stopContainer(ctx, req)
			return
		case <-deadline.C:
			b.killAndWait(ctx)
			b.fail(ctx, nil, "did not answer HTTP on port %d within %s (start timeout)", spec.Port, b.a.cfg.StartTimeout)
			return
		case <-tick.C:
		}
	}
}

// probe reports whether url answers HTTP at all: any status counts, since
// the app decides what its paths mean.
func probe(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "plane-drone-probe")
	resp, err := probeClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// watch waits, while the backend is ready, for its exit, a stop request, its
// lifetime or its idle limit.
func (b *backend) watch(ctx context.Context) {
	spec := b.rec.Spec
	b.mu.Lock()
	if b.since.IsZero() {
		b.since = time.Now()
	}
	created := b.rec.CreatedAt
	b.mu.Unlock()

	var lifetime <-chan time.Time
	if spec.LifetimeSeconds > 0 {
		t := time.NewTimer(time.Until(created.Add(time.Duration(spec.LifetimeSeconds) * time.Second)))
		defer t.Stop()
		lifetime = t.C
	}
	var idleTick <-chan time.Time
	if spec.MaxIdleSeconds > 0 {
		t := time.NewTicker(b.a.cfg.IdleCheckInterval)
		defer t.Stop()
		idleTick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case code := <-b.exited:
			b.finish(ctx, plane.ReasonExited, &code, "")
			return
		case req := <-b.stop:
			b.stopContainer(ctx, req)
			return
		case <-lifetime:
			b.stopContainer(ctx, stopRequest{reason: plane.ReasonLifetime})
			return
		case now := <-idleTick:
			if at := b.suspendedSince(); !at.IsZero() {
				// Suspended: ended once suspended for SuspendSeconds, or
				// that long after a keep-alive that came meanwhile.
				if now.Sub(b.idleFrom(at)) >= time.Duration(spec.SuspendSeconds)*time.Second {
					b.stopContainer(ctx, stopRequest{reason: plane.ReasonIdle})
					return
				}
				continue
			}
			if b.idleFor(now) < time.Duration(spec.MaxIdleSeconds)*time.Second {
				continue
			}
			// Idle: suspended when it may be (and terminated if the
			// container cannot be paused), else terminated.
			if spec.SuspendSeconds > 0 && b.suspend(ctx) {
				continue
			}
			b.stopContainer(ctx, stopRequest{reason: plane.ReasonIdle})
			return
		}
	}
}

// idleFor is how long the backend has had no open connection: since its last
// activity, or since it became ready (or was adopted) when nobody came, or
// since the end of a keep-alive; none while a keep-alive holds.
func (b *backend) idleFor(now time.Time) time.Duration {
	conns, last := b.a.activity(b.id)
	if conns > 0 {
		return 0
	}
	b.mu.Lock()
	since := b.since
	b.mu.Unlock()
	return max(0, now.Sub(b.idleFrom(latest(last, since))))
}

// idleFrom is when an idle clock that would start at t starts: not before
// the end of a keep-alive.
func (b *backend) idleFrom(t time.Time) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return latest(t, b.keepUntil)
}

func latest(x, y time.Time) time.Time {
	if y.After(x) {
		return y
	}
	return x
}

// stopContainer terminates: SIGTERM, grace, SIGKILL (at once when hard), then
// records terminated with the exit code.
func (b *backend) stopContainer(ctx context.Context, req stopRequest) {
	// A paused container is thawed first, so that a soft stop's SIGTERM is
	// handled by the app within its grace.
	if err := b.wake(ctx, false); err != nil {
		b.log.Warn("stop: unpause", "err", err)
	}
	b.emit(ctx, plane.StatusTerminating, func(r *store.Backend, _ *plane.BackendEvent) { r.Reason = req.reason })
	b.mu.Lock()
	cid := b.rec.ContainerID
	b.mu.Unlock()
	grace := b.a.cfg.StopGrace
	if req.hard {
		grace = 0
	}
	rt := b.a.cfg.Runtime
	stopped := make(chan error, 2)
	go func() { stopped <- rt.Stop(ctx, cid, grace) }()
	// If the runtime never reports the exit, give up waiting well after the grace.
	deadline := time.NewTimer(grace + 30*time.Second)
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return // the drone is stopping; reconcile finishes this on restart
		case code := <-b.exited:
			b.finish(ctx, req.reason, &code, "")
			return
		case next := <-b.stop:
			if next.hard && !req.hard {
				req.hard = true
				go func() { stopped <- rt.Stop(ctx, cid, 0) }()
			}
		case err := <-stopped:
			if err != nil {
				b.log.Error("stop container", "err", err)
			}
		case <-deadline.C:
			b.finish(ctx, req.reason, nil, "the runtime did not report the container's exit")
			return
		}
	}
}

// killAndWait kills a container that will not become ready and waits for its exit.
func (b *backend) killAndWait(ctx context.Context) {
	b.mu.Lock()
	cid := b.rec.ContainerID
	b.mu.Unlock()
	if err := b.a.cfg.Runtime.Stop(ctx, cid, 0); err != nil {
		b.log.Error("kill container", "err", err)
	}
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
}

// pendingStop returns a stop request that arrived before the container existed.
func (b *backend) pendingStop() (stopRequest, bool) {
	select {
	case req := <-b.stop:
		return req, true
	default:
		return stopRequest{}, false
	}
}

// warm reports whether the backend is a warm pool's member that a spawn
// claimed, as the answer to a retry of that spawn says.
func (b *backend) warm() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rec.Spec.Warm
}
