// Package controller holds the controller's use-cases — spawn a backend
// (or connect to the one holding a key), wait for it, terminate it, apply
// a backend's change, record who did what — with plain contexts and an
// actor, so that the API, the dashboard and the command line call the same
// functions, and the activity log, metrics and events are recorded in one
// place. It knows the store and the drones only through interfaces.
package controller

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"plane"
	"plane/auth"
)

// Store is what the core reads and writes of the store (server/sqlite);
// plane's services satisfy it.
type Store interface {
	FindImage(ctx context.Context, projectID int64, name string) (*plane.Image, error)
	CreateImage(ctx context.Context, img *plane.Image) error
	UpdateImage(ctx context.Context, projectID int64, name string, in plane.ImageInput) (*plane.Image, error)
	DeleteImage(ctx context.Context, projectID int64, name string) error
	FindBackendByID(ctx context.Context, id string) (*plane.Backend, error)
	FindBackends(ctx context.Context, filter plane.BackendFilter) ([]*plane.Backend, error)
	CreateBackend(ctx context.Context, b *plane.Backend) (backend *plane.Backend, created bool, err error)
	ApplyBackendEvent(ctx context.Context, ev plane.BackendEvent) (b *plane.Backend, applied bool, err error)
	CountLiveBackendsByDrone(ctx context.Context) (map[string]int, error)
	FindDrones(ctx context.Context) ([]*plane.Drone, error)
	FindDroneByID(ctx context.Context, id string) (*plane.Drone, error)
	SetDroneDraining(ctx context.Context, id string, draining bool) error
	FindWarmPoolImages(ctx context.Context) ([]*plane.Image, error)
	SetKeepAlive(ctx context.Context, id string, until time.Time, by string) (*plane.Backend, error)
}

// ActivityLog is where the core records who did what.
type ActivityLog interface {
	RecordActivity(ctx context.Context, a *plane.Activity) error
}

// Dispatcher is what the core asks of the drones (server/dispatch, over
// NATS).
type Dispatcher interface {
	// Spawn sends spec to a drone; warm says that the drone claimed a
	// warm pool's member for it (spec.Warm), ready at once.
	Spawn(ctx context.Context, droneID string, spec plane.SpawnSpec) (warm bool, err error)
	Terminate(ctx context.Context, droneID string, req plane.TerminateRequest) error
	Drain(ctx context.Context, droneID string, draining bool) error
	Pull(ctx context.Context, droneID, ref string) error
	Disconnect(ctx context.Context, droneID string, req plane.DisconnectRequest) error
	KeepAlive(ctx context.Context, droneID string, req plane.KeepAliveRequest) error
	// What the drones report: stats (latest and recent) and logs.
	Stats(backendID string) (plane.BackendStats, bool)
	StatsHistory(backendID string) []plane.BackendStats
	Logs(ctx context.Context, backendID string, follow bool, fn func(plane.LogLine) error) error
	// Pools are the warm pools of every drone heard from within
	// plane.DroneStaleAfter, by drone ID, as their heartbeats said.
	Pools() map[string][]plane.PoolState
}

// Metrics records what the core does (Prometheus, in server).
type Metrics interface {
	// Spawned counts a spawn, once, that started a backend ("spawned") or
	// placed none: no drone could take it, or none it tried did
	// ("unavailable").
	Spawned(outcome string)
	// BackendChanged observes a backend's new status (phase latencies).
	BackendChanged(b *plane.Backend)
	// BackendSuspended counts a ready backend suspended (true) or resumed
	// by its drone.
	BackendSuspended(suspended bool)
	// PoolClaim counts a spawn that started a backend: warm (a warm pool's
	// member claimed) or cold, and why.
	PoolClaim(warm bool, reason plane.ColdReason)
}

// Core is the controller's use-cases.
type Core struct {
	Store    Store
	Activity ActivityLog // nil: no activity log (an API-only controller)
	Dispatch Dispatcher
	Bus      plane.EventBus
	Metrics  Metrics // nil: none
	// URLPattern gives the address at which a backend is reached.
	URLPattern func(id string) string
	// ConnectKey signs connect tokens (nil: none can be issued), which work
	// for ConnectTokenTTL (default plane.DefaultConnectTokenTTL).
	ConnectKey      ed25519.PrivateKey
	ConnectTokenTTL time.Duration
	// WaitTimeout bounds WaitSettled (default DefaultWaitTimeout).
	WaitTimeout time.Duration
	// Accounts holds users, teams, projects and API tokens (nil: a
	// controller that serves only the API; their use-cases are
	// unavailable). Logins limits failed logins (required with Accounts).
	Accounts Accounts
	Logins   *auth.Limiter
	// AvoidRefused is how long spawns try a drone last after it did not
	// take a backend (default DefaultAvoidRefused).
	AvoidRefused time.Duration
	Logger       *slog.Logger
	// Events reads the projects' event logs and who is connected to a
	// backend (nil: those use-cases are unavailable). Webhooks stores a
	// project's webhooks and their deliveries, WebhookSender sends them
	// (nil, either: no webhooks); WebhookPolicy sets how deliveries are
	// retried (webhooks.go).
	Events        plane.ProjectEventService
	Webhooks      plane.WebhookService
	WebhookSender plane.WebhookSender
	WebhookPolicy WebhookPolicy

	placer placer
	claims claims
	ghosts ghosts        // ReconcileConnections' memory (connections.go)
	drones droneStatuses // DroneUnreachable's cache (drone.go)
	hooks  hookWake      // wakes the webhook deliveries' loop (webhooks.go)
}

// DefaultWaitTimeout bounds how long a spawn with "wait": true blocks.
const DefaultWaitTimeout = 60 * time.Second

func (c *Core) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.Default()
	}
	return c.Logger
}

// Spawned is the outcome of Spawn.
type Spawned struct {
	Backend *plane.Backend
	// New: this spawn started the backend; false: the live backend that
	// holds the request's key was found.
	New bool
	// Public: a backend this spawn started needs no connect token.
	Public bool
	// Warm: a backend this spawn started is a warm pool's member, claimed
	// ready; ColdReason says why one started cold could not be.
	Warm       bool
	ColdReason plane.ColdReason
}

// Spawn returns the live backend of the project that holds req.Key, or
// places and starts a new one on the least loaded drone. A drone that does
// not take it leaves that backend failed, which frees its key. When the
// drone did not answer or had no room (EUNAVAILABLE), the spawn places a new
// backend, with the same key, on the next drone, trying at most
// maxSpawnAttempts drones: the caller gets the backend that was finally
// placed, or unavailable with what each drone said.
func (c *Core) Spawn(ctx context.Context, actor plane.Actor, projectID int64, req plane.SpawnRequest) (Spawned, error) {
	img, err := c.Store.FindImage(ctx, projectID, req.Image)
	if plane.ErrorCodeOf(err) == plane.ENOTFOUND {
		return Spawned{}, plane.FieldErrorf("image", "no image named %q in this project: register it first (POST /api/v1/images)", req.Image)
	} else if err != nil {
		return Spawned{}, err
	}
	if req.Key != "" {
		if b, err := c.liveBackendWithKey(ctx, projectID, req.Key); err != nil || b != nil {
			if b != nil {
				c.redispatchStale(ctx, b)
			}
			return Spawned{Backend: b}, err
		}
	}
	// A spawn that a warm pool's member can serve claims one: the backend
	// is stored under the member's ID and its drone hands it over, ready.
	reason := coldReason(img, req)
	var pool plane.PoolSpec
	if reason == "" {
		pool = poolSpecOf(img)
	}
	var (
		tried    []string       // the drones that did not take it, in order
		refusals []string       // what each said
		last     *plane.Backend // the last backend this spawn created
		taken    int            // members another controller claimed first
	)
	for {
		var (
			drone  *plane.Drone
			r      *reservation
			member string
		)
		if reason == "" {
			if drone, r, member, err = c.reserveMember(ctx, pool, tried); err != nil {
				return Spawned{}, err
			}
			if member == "" {
				reason = plane.ColdPoolEmpty
			}
		}
		if member == "" {
			if drone, r, err = c.reserveDrone(ctx, tried, nil); err != nil {
				return Spawned{}, c.unplaced(ctx, actor, last, tried, refusals, err)
			}
		}
		nb := newBackend(projectID, img, req, drone.ID)
		nb.ID = member
		b, created, err := c.Store.CreateBackend(ctx, nb)
		c.placer.release(r, err == nil && created)
		if member != "" && plane.ErrorCodeOf(err) == plane.ECONFLICT {
			// Another controller claimed this member first.
			if taken++; taken >= maxSpawnAttempts {
				reason = plane.ColdRaced
			}
			continue
		}
		if err != nil || !created {
			// Not created: a concurrent spawn took the key first (after
			// this one's failed backend freed it); b is its backend.
			if last != nil {
				c.Record(ctx, actor, last.ProjectID, plane.ActionBackendSpawn, last.ID, spawnDetail(last.Image, tried))
			}
			return Spawned{Backend: b}, err
		}
		last = b
		c.backendChanged(b)

		spec := specFor(b, img)
		spec.Warm = member != ""
		warm, err := c.Dispatch.Spawn(ctx, drone.ID, spec)
		if err == nil {
			if member != "" && !warm {
				reason = plane.ColdRaced // the member was gone: its drone started it cold
			}
			c.placer.accepted(drone.ID)
			c.spawned("spawned")
			c.claimed(warm, reason)
			c.Record(ctx, actor, b.ProjectID, plane.ActionBackendSpawn, b.ID, spawnDetail(b.Image, tried))
			return Spawned{Backend: b, New: true, Public: img.Public, Warm: warm, ColdReason: reason}, nil
		}
		// Record why, so the backend does not stay scheduled and frees its key.
		msg := fmt.Sprintf("drone %s did not accept the backend: %s", drone.ID, plane.ErrorMessageOf(err))
		ev := plane.BackendEvent{BackendID: b.ID, DroneID: drone.ID, Status: plane.StatusTerminated, Time: time.Now(), Reason: plane.ReasonFailed, Error: msg}
		if _, _, aerr := c.ApplyBackendEvent(context.WithoutCancel(ctx), ev); aerr != nil {
			c.logger().Error("record failed dispatch", "backend", b.ID, "err", aerr)
		}
		c.logger().Warn("dispatch failed", "backend", b.ID, "drone", drone.ID, "attempt", len(tried)+1, "err", err)
		tried, refusals = append(tried, drone.ID), append(refusals, msg)
		// Only a drone that did not answer, or had no room, is worth
		// passing over; a deadline of the caller's also reads as "did not
		// answer", but is no fault of the drone's.
		if plane.ErrorCodeOf(err) != plane.EUNAVAILABLE || ctx.Err() != nil {
			return Spawned{}, c.unplaced(ctx, actor, last, tried, refusals, nil)
		}
		c.placer.refuse(drone.ID, time.Now().Add(c.avoidRefused()))
		if len(tried) >= maxSpawnAttempts {
			return Spawned{}, c.unplaced(ctx, actor, last, tried, refusals, nil)
		}
	}
}

// specFor is what a drone is sent to start b, an image's backend.
func specFor(b *plane.Backend, img *plane.Image) plane.SpawnSpec {
	return plane.SpawnSpec{
		BackendID: b.ID, Key: b.Key, ImageRef: b.ImageRef, PullPolicy: img.PullPolicy, Port: img.Port,
		Env: b.Env, User: b.User, Limits: b.Limits, Public: img.Public, AllowBearer: img.AllowBearer,
	}
}

// RedispatchAfter is how long a backend may stay scheduled before a spawn
// or a wait that meets it sends it to its drone again. A controller stores
// a backend, then sends it; one that died in between (kill -9, its machine
// lost) leaves it scheduled, holding its key, on a drone that never heard
// of it, and a retry through another controller would wait for it until
// reconciliation ends it as lost (30 s). Sending it again is safe at any
// time: a drone ignores a backend it has, or has had.
const RedispatchAfter = 2 * time.Second

// redispatchStale sends b to its drone again when it has been scheduled for
// RedispatchAfter. It reports whether it sent it.
func (c *Core) redispatchStale(ctx context.Context, b *plane.Backend) bool {
	if b.Status != plane.StatusScheduled || b.DroneID == "" || time.Since(b.UpdatedAt) < RedispatchAfter {
		return false
	}
	img, err := c.Store.FindImage(ctx, b.ProjectID, b.Image)
	if err != nil {
		// Its image is gone: reconciliation ends it.
		c.logger().Warn("a backend stays scheduled and its image cannot be read to send it again", "backend", b.ID, "err", err)
		return false
	}
	if img.Ref != b.ImageRef || img.UpdatedAt.After(b.CreatedAt) {
		// The image changed since (its port, or made public): the spec
		// would not be the one the backend was stored with.
		c.logger().Warn("a backend stays scheduled and its image changed since: left to reconciliation", "backend", b.ID)
		return false
	}
	if _, err := c.Dispatch.Spawn(ctx, b.DroneID, specFor(b, img)); err != nil {
		c.logger().Warn("a backend stays scheduled and its drone did not take it again", "backend", b.ID, "drone", b.DroneID, "err", err)
		return false
	}
	c.logger().Info("a backend was still scheduled: sent to its drone again", "backend", b.ID, "drone", b.DroneID, "scheduled_for", time.Since(b.UpdatedAt).Round(time.Millisecond))
	return true
}

// unplaced ends a spawn that placed no backend: it found no drone (pickErr)
// or the drones it tried did not take it (refusals, then pickErr when no
// other drone could be tried).
func (c *Core) unplaced(ctx context.Context, actor plane.Actor, last *plane.Backend, tried, refusals []string, pickErr error) error {
	c.spawned("unavailable")
	if last != nil {
		c.Record(ctx, actor, last.ProjectID, plane.ActionBackendSpawn, last.ID, spawnDetail(last.Image, tried))
	}
	switch {
	case len(refusals) == 0:
		return pickErr
	case pickErr == nil || errors.Is(pickErr, errAllTried):
	case plane.ErrorCodeOf(pickErr) != plane.EUNAVAILABLE:
		return pickErr
	default:
		refusals = append(refusals, plane.ErrorMessageOf(pickErr))
	}
	return plane.Errorf(plane.EUNAVAILABLE, "%s", strings.Join(refusals, "; "))
}

// spawnDetail is the activity log's detail of a spawn: the image, and the
// drones that did not take it.
func spawnDetail(image string, refusedBy []string) string {
	if len(refusedBy) == 0 {
		return "image " + image
	}
	return fmt.Sprintf("image %s (refused by %s)", image, strings.Join(refusedBy, ", "))
}

func (c *Core) claimed(warm bool, reason plane.ColdReason) {
	if c.Metrics != nil {
		c.Metrics.PoolClaim(warm, reason)
	}
}

func (c *Core) spawned(outcome string) {
	if c.Metrics != nil {
		c.Metrics.Spawned(outcome)
	}
}

func (c *Core) liveBackendWithKey(ctx context.Context, projectID int64, key string) (*plane.Backend, error) {
	live := true
	bs, err := c.Store.FindBackends(ctx, plane.BackendFilter{ProjectID: &projectID, Key: &key, Live: &live, Limit: 1})
	if err != nil || len(bs) == 0 {
		return nil, err
	}
	return bs[0], nil
}

// newBackend combines the request with the image's defaults.
func newBackend(projectID int64, img *plane.Image, req plane.SpawnRequest, droneID string) *plane.Backend {
	env := make(map[string]string, len(img.Env)+len(req.Env))
	for k, v := range img.Env {
		env[k] = v
	}
	for k, v := range req.Env {
		env[k] = v
	}
	return &plane.Backend{
		ProjectID: projectID, Image: img.Name, ImageRef: img.Ref, Key: req.Key, DroneID: droneID,
		Env: env, User: req.User,
		Limits:    img.Limits.With(req.LimitsInput),
		CreatedAt: time.Now(),
	}
}

// SpawnAndWait is Spawn followed by WaitSettled. A backend found by its key
// that ends terminated during the wait (its drone never ran it: a
// controller killed mid-spawn, a drone lost) does not answer the request:
// its key is free again, so a new backend is spawned, once, and waited for.
func (c *Core) SpawnAndWait(ctx context.Context, actor plane.Actor, projectID int64, req plane.SpawnRequest) (Spawned, error) {
	for attempt := 0; ; attempt++ {
		sp, err := c.Spawn(ctx, actor, projectID, req)
		if err != nil {
			return sp, err
		}
		if sp.Backend, err = c.WaitSettled(ctx, sp.Backend); err != nil {
			return sp, err
		}
		if sp.New || req.Key == "" || sp.Backend.Status != plane.StatusTerminated || attempt > 0 {
			return sp, nil
		}
		c.logger().Info("the backend holding the key ended while a spawn waited for it: spawning anew",
			"key_backend", sp.Backend.ID, "reason", sp.Backend.TerminationReason)
	}
}

// settleRecheck is how often WaitSettled reads the store while it waits.
// The bus brings every change at once; a change whose announcement was
// lost (its controller died between storing and publishing it) is in the
// store all the same.
const settleRecheck = time.Second

// WaitSettled blocks until b is ready or terminated, for at most
// WaitTimeout, and returns its latest state. A backend it finds still
// scheduled after RedispatchAfter is sent to its drone again, once.
func (c *Core) WaitSettled(ctx context.Context, b *plane.Backend) (*plane.Backend, error) {
	settled := func(b *plane.Backend) bool {
		return b.Status == plane.StatusReady || b.Status == plane.StatusTerminated
	}
	if settled(b) {
		return b, nil
	}
	ch, cancel := c.Bus.Subscribe(b.ID)
	defer cancel()
	// Re-read after subscribing: a change between the first read and the
	// subscription would otherwise be missed.
	cur, err := c.Store.FindBackendByID(ctx, b.ID)
	if err != nil {
		return nil, err
	}
	if settled(cur) {
		return cur, nil
	}
	wait := c.WaitTimeout
	if wait <= 0 {
		wait = DefaultWaitTimeout
	}
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	recheck := time.NewTicker(settleRecheck)
	defer recheck.Stop()
	resent := false
	// A failed read (the store failing over) does not end the wait: the
	// bus may still bring the change, and the next recheck may read it.
	reread := func() {
		stored, err := c.Store.FindBackendByID(ctx, b.ID)
		if err != nil {
			c.logger().Warn("wait for a backend: read the store", "backend", b.ID, "err", err)
			return
		}
		cur = stored
	}
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return cur, nil
			}
			cur = e.Backend
			if settled(cur) {
				return cur, nil
			}
		case <-recheck.C:
			reread()
			if settled(cur) {
				return cur, nil
			}
			if !resent {
				resent = c.redispatchStale(ctx, cur)
			}
		case <-timeout.C:
			reread()
			return cur, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Terminate asks a live backend's drone to stop it — soft (SIGTERM, grace,
// SIGKILL) or hard — and records who asked. A terminated backend is left as
// it is.
func (c *Core) Terminate(ctx context.Context, actor plane.Actor, b *plane.Backend, hard bool) error {
	if !b.Status.Live() {
		return nil
	}
	req := plane.TerminateRequest{BackendID: b.ID, Hard: hard, Reason: plane.ReasonRequested}
	if err := c.Dispatch.Terminate(ctx, b.DroneID, req); err != nil {
		return err
	}
	mode := "soft"
	if hard {
		mode = "hard"
	}
	c.Record(ctx, actor, b.ProjectID, plane.ActionBackendTerminate, b.ID, mode)
	return nil
}

// ApplyBackendEvent stores a backend's status change (from its drone, the
// liveness sweep or a failed dispatch) and, when it moves the backend
// forward, records it in the metrics and publishes it on the bus. A
// suspension or a resume that the store records is announced by
// backendSuspended. The dispatcher calls it for every change of the status
// stream.
func (c *Core) ApplyBackendEvent(ctx context.Context, ev plane.BackendEvent) (*plane.Backend, bool, error) {
	b, applied, err := c.Store.ApplyBackendEvent(ctx, ev)
	if err != nil || !applied {
		return b, applied, err
	}
	if ev.Suspended != nil {
		c.backendSuspended(ctx, b, *ev.Suspended)
		return b, true, nil
	}
	if ev.Connection != nil {
		// A join or a leave: the status is the same, only the project's
		// event log grew.
		c.logGrown(b)
		return b, true, nil
	}
	c.backendChanged(b)
	return b, true, nil
}

// backendChanged records a backend's new status in the metrics and
// publishes it, and announces the event the store logged with it.
func (c *Core) backendChanged(b *plane.Backend) {
	if c.Metrics != nil {
		c.Metrics.BackendChanged(b)
	}
	c.publish(b)
	c.logGrown(b)
}

// publish announces a backend's new state on the bus, for waiters, event
// streams and live tables here and on the other controllers.
func (c *Core) publish(b *plane.Backend) {
	if err := c.Bus.Publish(context.Background(), plane.Event{Kind: plane.EventBackend, Backend: b}); err != nil {
		c.logger().Warn("publish backend change", "backend", b.ID, "err", err)
	}
}

// Record writes an entry of the project's activity log; a failure is
// logged, never returned: the action itself succeeded.
func (c *Core) Record(ctx context.Context, actor plane.Actor, projectID int64, action plane.Action, target, detail string) {
	if c.Activity == nil {
		return
	}
	a := plane.Activity{ProjectID: projectID, Time: time.Now(), Actor: actor, Action: action, Target: target, Detail: detail}
	if err := c.Activity.RecordActivity(context.WithoutCancel(ctx), &a); err != nil {
		c.logger().Error("record activity", "project", projectID, "action", action, "err", err)
	}
}
