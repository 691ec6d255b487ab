// Package drone is the agent that runs on every machine of a cluster: it
// receives spawn and terminate requests over NATS, drives the container
// runtime through each backend's lifecycle, reports status changes through an
// outbox in its own sqlite file, and reattaches to running containers when it
// starts again.
package drone

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
	"plane/drone/docker"
	"plane/drone/proxy"
	"plane/drone/store"
)

// Runtime is what the agent needs of a container runtime; *docker.Runtime
// implements it.
type Runtime interface {
	EnsureImage(ctx context.Context, ref string, policy plane.PullPolicy) error
	Start(ctx context.Context, spec docker.ContainerSpec) (docker.Container, error)
	Stop(ctx context.Context, id string, grace time.Duration) error
	Wait(ctx context.Context, id string) (exitCode int, err error)
	Remove(ctx context.Context, id string) error
	List(ctx context.Context, droneID string) ([]docker.ContainerState, error)
	Logs(ctx context.Context, id string, follow bool, fn func(stream, line string)) error
	Stats(ctx context.Context, id string) (docker.Stats, error)
	Images(ctx context.Context) ([]string, error)
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
}

var _ Runtime = (*docker.Runtime)(nil)

// Config holds what an Agent needs. Zero durations take the defaults below.
type Config struct {
	ID           string // drone ID: a DNS label, unique in the cluster
	Address      string // IP that backend hostnames resolve to
	ProxyAddress string // where this drone's proxy listens
	Version      string
	// Capacity bounds the containers the drone runs: live backends plus
	// warm pools' members (pool.go); 0 = no limit.
	Capacity int
	// SuspendMemoryBytes bounds the memory suspended backends may hold;
	// past it the longest-suspended are terminated (idle). 0: no bound.
	SuspendMemoryBytes int64

	StartTimeout  time.Duration // from container start until it answers HTTP
	PullTimeout   time.Duration
	StopGrace     time.Duration // SIGTERM → SIGKILL on soft terminate
	StatsInterval time.Duration

	// The agent's periodic work, shortened by tests.
	HeartbeatInterval time.Duration // between heartbeats; plane.HeartbeatInterval by default
	ActivityInterval  time.Duration // between backend stats; ActivityInterval by default
	IdleCheckInterval time.Duration // between checks of a ready backend's idle time; DefaultIdleCheckInterval by default
	KeyRefresh        time.Duration // between asks for the connect-token keys; plane.ConnectKeyRefresh by default

	// Proxy routes requests to this drone's backends; the agent keeps its
	// route table, reads its connection counts for the idle limit, and
	// reports who it says is connected (connections.go). Nil: nobody
	// connects, so backends go idle max_idle_seconds after ready.
	Proxy *proxy.Proxy
	// CertStatus reports the HTTPS certificate's expiry (nil: none) and the
	// last certificate error, for heartbeats. Nil: the drone serves no HTTPS.
	CertStatus func() (notAfter *time.Time, lastErr string)

	NATS    *nats.Conn
	Store   *store.Store
	Runtime Runtime
	Logger  *slog.Logger
}

const (
	DefaultStartTimeout  = 30 * time.Second
	DefaultPullTimeout   = 5 * time.Minute
	DefaultStopGrace     = 10 * time.Second
	DefaultStatsInterval = 5 * time.Second

	DefaultIdleCheckInterval = 250 * time.Millisecond
)

// Agent is a running drone.
type Agent struct {
	cfg Config
	log *slog.Logger
	out *outbox
	// started and logSeq make the ids of log lines (forwardLogs).
	started string
	logSeq  atomic.Uint64

	mu       sync.Mutex
	backends map[string]*backend // live backends
	draining bool
	images   []string
	pools    map[string]*pool    // warm pools to keep, by pool ID (pool.go)
	members  map[string]*backend // unclaimed pool members, until their container is removed

	poolKick chan struct{} // wakes poolLoop
	beatKick chan struct{} // asks heartbeatLoop for a beat soon
	lastBeat atomic.Int64  // unix nanoseconds of the last beat

	// Connection changes from the proxy, waiting for connectionLoop
	// (connections.go); connSeq numbers their messages.
	connMu      sync.Mutex
	connQueue   []proxy.UserChange
	connDropped int
	connKick    chan struct{}
	connSeq     atomic.Uint64

	reconciled chan struct{} // closed once reconcile is done
	wg         sync.WaitGroup
	ctx        context.Context // lives as long as Run
	cancel     context.CancelFunc
}

// New checks cfg and returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if err := plane.ValidateDroneID(cfg.ID); err != nil {
		return nil, fmt.Errorf("drone config: %w", err)
	}
	if cfg.NATS == nil || cfg.Store == nil || cfg.Runtime == nil {
		return nil, errors.New("drone config: NATS, Store and Runtime are required")
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.PullTimeout <= 0 {
		cfg.PullTimeout = DefaultPullTimeout
	}
	if cfg.KeyRefresh <= 0 {
		cfg.KeyRefresh = plane.ConnectKeyRefresh
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if cfg.StatsInterval <= 0 {
		cfg.StatsInterval = DefaultStatsInterval
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = plane.HeartbeatInterval
	}
	if cfg.ActivityInterval <= 0 {
		cfg.ActivityInterval = ActivityInterval
	}
	if cfg.IdleCheckInterval <= 0 {
		cfg.IdleCheckInterval = DefaultIdleCheckInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "drone", "drone", cfg.ID)
	a := &Agent{
		cfg:      cfg,
		log:      log,
		out:      newOutbox(cfg.NATS, cfg.Store, log),
		started:  strconv.FormatInt(time.Now().UnixNano(), 36),
		backends: map[string]*backend{},
		pools:    map[string]*pool{},
		members:  map[string]*backend{},
		poolKick: make(chan struct{}, 1),
		beatKick: make(chan struct{}, 1),
		connKick: make(chan struct{}, 1),
	}
	if cfg.Proxy != nil {
		cfg.Proxy.OnUsers(a.userChanged)
	}
	return a, nil
}

// Run reconciles with the runtime, then serves NATS requests, beats and
// reports until ctx is done. Backends keep running when Run returns: a drone
// is restarted or upgraded without killing them.
func (a *Agent) Run(ctx context.Context) error {
	a.ctx, a.cancel = context.WithCancel(ctx)
	defer a.cancel()
	draining, err := a.cfg.Store.Draining(ctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.draining = draining
	a.mu.Unlock()
	if draining {
		a.log.Info("still draining, as an admin asked before the restart")
	}

	a.wg.Go(func() { a.out.run(a.ctx) })
	// Requests are taken from the start but answered only once reconcile has
	// rebuilt the live set, so none arrives in a window with no answer.
	a.reconciled = make(chan struct{})

	subs := []struct {
		subject string
		handle  handler
	}{
		{plane.SubjectSpawn(a.cfg.ID), a.handleSpawn},
		{plane.SubjectTerminate(a.cfg.ID), plain(a.handleTerminate)},
		{plane.SubjectDrain(a.cfg.ID), plain(a.handleDrain)},
		{plane.SubjectPull(a.cfg.ID), plain(a.handlePull)},
		{plane.SubjectPools(a.cfg.ID), plain(a.handlePools)},
		{plane.SubjectDisconnect(a.cfg.ID), plain(a.handleDisconnect)},
		{plane.SubjectKeepAlive(a.cfg.ID), plain(a.handleKeepAlive)},
	}
	for _, s := range subs {
		sub, err := a.cfg.NATS.Subscribe(s.subject, a.replier(s.subject, s.handle))
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", s.subject, err)
		}
		defer sub.Unsubscribe() //nolint:errcheck // closing anyway
	}
	if err := a.cfg.NATS.Flush(); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if err := a.reconcile(a.ctx); err != nil {
		return fmt.Errorf("reconcile with runtime: %w", err)
	}
	close(a.reconciled)
	a.log.Info("drone ready", "backends", a.liveCount())

	if a.cfg.Proxy != nil {
		a.wg.Go(func() { a.fetchConnectKey(a.ctx) })
	}
	a.wg.Go(func() { a.heartbeatLoop(a.ctx) })
	a.wg.Go(func() { a.statsLoop(a.ctx) })
	// After reconcile, which makes the live set the changes are of.
	a.wg.Go(func() { a.connectionLoop(a.ctx) })
	// After reconcile, which would take new members for strays.
	a.wg.Go(func() { a.poolLoop(a.ctx) })
	<-a.ctx.Done()
	a.beat(true)
	a.wg.Wait()
	return nil
}

// handler handles one request: the reply on success (most have nothing
// to say but that), or the error to answer.
type handler func(context.Context, []byte) (plane.Reply, error)

// plain adapts a handler whose success says nothing more.
func plain(handle func(context.Context, []byte) error) handler {
	return func(ctx context.Context, data []byte) (plane.Reply, error) {
		return plane.Reply{}, handle(ctx, data)
	}
}

// replier adapts a request handler to a NATS message handler that always
// answers with a plane.Reply.
func (a *Agent) replier(subject string, handle handler) nats.MsgHandler {
	return func(m *nats.Msg) {
		select {
		case <-a.reconciled:
		case <-a.ctx.Done():
			return
		}
		reply, err := handle(a.ctx, m.Data)
		if err != nil {
			if plane.ErrorCodeOf(err) == plane.EINTERNAL {
				a.log.Error("request failed", "subject", subject, "err", err)
			}
			reply = plane.ReplyOf(err)
		}
		data, _ := json.Marshal(reply)
		if m.Reply != "" {
			if err := m.Respond(data); err != nil {
				a.log.Warn("reply failed", "subject", subject, "err", err)
			}
		}
	}
}

// handleSpawn starts a backend, or hands it a ready warm pool member when
// the spec asks to claim one (Warm): the reply says which.
func (a *Agent) handleSpawn(ctx context.Context, data []byte) (plane.Reply, error) {
	spec, err := plane.Decode[plane.SpawnSpec](data)
	if err != nil {
		return plane.Reply{}, err
	}
	a.mu.Lock()
	if b, ok := a.backends[spec.BackendID]; ok {
		a.mu.Unlock()
		return plane.Reply{Warm: b.warm()}, nil // a retried request: it is already running
	}
	mb := a.members[spec.BackendID]
	if mb == nil {
		// A retried request for a backend that has already terminated must
		// not run it again under the same ID: the controller has its
		// terminated event and would never hear of the new container. (A
		// member's ID has no record: the lookup is left off the claim's
		// path.)
		switch rec, err := a.cfg.Store.FindBackend(ctx, spec.BackendID); {
		case err == nil:
			a.mu.Unlock()
			return plane.Reply{Warm: rec.Spec.Warm}, nil
		case plane.ErrorCodeOf(err) != plane.ENOTFOUND:
			a.mu.Unlock()
			return plane.Reply{}, err
		}
	}
	if a.draining {
		a.mu.Unlock()
		return plane.Reply{}, plane.Errorf(plane.EUNAVAILABLE, "drone %s is draining", a.cfg.ID)
	}
	if spec.Warm && mb != nil && mb.member.claimable() && mb.runs(spec) {
		m := mb.member
		m.claiming = true
		a.mu.Unlock()
		err := a.claim(ctx, mb, spec)
		if err == nil {
			return plane.Reply{Warm: true}, nil
		}
		a.mu.Lock()
		m.claiming = false
		if !errors.Is(err, errMemberGone) {
			a.mu.Unlock()
			return plane.Reply{}, err
		}
		// It left its pool meanwhile: started cold below.
	}
	defer a.mu.Unlock()
	return plane.Reply{}, a.startLocked(ctx, spec)
}

// startLocked starts a backend cold: its container is started from its
// image. a.mu is held.
func (a *Agent) startLocked(ctx context.Context, spec plane.SpawnSpec) error {
	spec.Warm = false // the record says it started cold, for the answer to a retry
	var after []<-chan struct{}
	if mb := a.members[spec.BackendID]; mb != nil {
		// A member with this ID that cannot be claimed (starting, or
		// leaving): its container, which has the name, goes first.
		a.stopMemberLocked(mb)
		after = append(after, mb.member.done)
	}
	if a.cfg.Capacity > 0 && len(a.backends)+a.activeMembersLocked() >= a.cfg.Capacity {
		// A backend comes before a pool's member: one makes room.
		mb := a.evictMemberLocked()
		if mb == nil {
			return plane.Errorf(plane.EUNAVAILABLE, "drone %s is full (%d backends)", a.cfg.ID, a.cfg.Capacity)
		}
		after = append(after, mb.member.done)
	}
	b := a.newBackend(&store.Backend{Spec: spec, Status: plane.StatusScheduled, CreatedAt: time.Now()})
	b.after = after
	if err := a.cfg.Store.PutBackend(ctx, b.rec); err != nil {
		return fmt.Errorf("store backend %s: %w", spec.BackendID, err)
	}
	a.backends[spec.BackendID] = b
	// Routed before the answer: a user who follows the backend's URL as
	// soon as the spawn answers waits at the proxy for it to be ready,
	// rather than being told the drone does not serve it yet.
	a.route(b.rec)
	a.wg.Go(func() { b.spawn(a.ctx) })
	return nil
}

func (a *Agent) handleTerminate(ctx context.Context, data []byte) error {
	req, err := plane.Decode[plane.TerminateRequest](data)
	if err != nil {
		return err
	}
	a.mu.Lock()
	b, ok := a.backends[req.BackendID]
	a.mu.Unlock()
	if !ok {
		rec, err := a.cfg.Store.FindBackend(ctx, req.BackendID)
		if err != nil {
			return err
		}
		if rec.Status == plane.StatusTerminated {
			return nil // nothing left to do
		}
		return plane.Errorf(plane.EINTERNAL, "backend %s is %s but not running here", req.BackendID, rec.Status)
	}
	b.terminate(req.Hard, req.Reason)
	return nil
}

func (a *Agent) handleDrain(ctx context.Context, data []byte) error {
	req, err := plane.Decode[plane.DrainRequest](data)
	if err != nil {
		return err
	}
	// Stored first: a drain acknowledged must survive a restart.
	if err := a.cfg.Store.SetDraining(ctx, req.Draining); err != nil {
		return err
	}
	a.mu.Lock()
	a.draining = req.Draining
	a.mu.Unlock()
	a.log.Info("drain flag set", "draining", req.Draining)
	// A draining drone keeps no pool members: they go at once, and come
	// back once it is undrained.
	a.kickPools()
	a.beat(false)
	return nil
}

func (a *Agent) handlePull(ctx context.Context, data []byte) error {
	req, err := plane.Decode[plane.PullRequest](data)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.PullTimeout)
	defer cancel()
	return a.cfg.Runtime.EnsureImage(ctx, req.ImageRef, plane.PullAlways)
}

// fetchConnectKey asks the controller for the keys that verify connect
// tokens until it gets them, then again every ConnectKeyRefresh, so that a
// rotation of the controllers' signing key reaches this drone.
func (a *Agent) fetchConnectKey(ctx context.Context) {
	backoff := 100 * time.Millisecond
	var have []ed25519.PublicKey
	// An ask nobody answers (a controller that died holding it) must not
	// hang the drone: it gives up and asks again.
	askTimeout := min(5*time.Second, a.cfg.KeyRefresh)
	for {
		wait := backoff
		askCtx, cancel := context.WithTimeout(ctx, askTimeout)
		msg, err := a.cfg.NATS.RequestWithContext(askCtx, plane.SubjectConnectKey, nil)
		cancel()
		if err == nil {
			var k plane.ConnectKey
			if k, err = plane.Decode[plane.ConnectKey](msg.Data); err == nil {
				if keys := k.Keys(); !slices.EqualFunc(keys, have, func(x, y ed25519.PublicKey) bool { return x.Equal(y) }) {
					a.cfg.Proxy.SetKeys(keys...)
					a.log.Info("connect-token keys received", "keys", len(keys))
					have = keys
				}
				backoff, wait = 100*time.Millisecond, a.cfg.KeyRefresh
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.log.Debug("connect-token keys not available", "err", err, "retry_in", wait)
			backoff = min(2*backoff, 5*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// activity reports a backend's open connections and last activity.
func (a *Agent) activity(id string) (int, time.Time) {
	if a.cfg.Proxy == nil {
		return 0, time.Time{}
	}
	return a.cfg.Proxy.Activity(id)
}

// route tells the proxy where a backend is and whether it is ready.
func (a *Agent) route(rec *store.Backend) {
	if a.cfg.Proxy == nil {
		return
	}
	a.cfg.Proxy.SetRoute(routeOf(rec, false))
}

// routeSuspended tells the proxy that b is suspended, so that a request
// for it wakes it first (Resume), or that it is awake again.
func (a *Agent) routeSuspended(b *backend, suspended bool) {
	if a.cfg.Proxy == nil {
		return
	}
	b.mu.Lock()
	rec := *b.rec
	b.mu.Unlock()
	a.cfg.Proxy.SetRoute(routeOf(&rec, suspended))
}

func routeOf(rec *store.Backend, suspended bool) proxy.Route {
	return proxy.Route{
		BackendID: rec.Spec.BackendID, Key: rec.Spec.Key, Address: rec.Address, Status: rec.Status,
		Public: rec.Spec.Public, AllowBearer: rec.Spec.AllowBearer, Suspended: suspended,
	}
}

// Resume wakes a suspended backend before the proxy forwards a request to
// it: the proxy's Config.Resume. A backend that is not suspended, or that
// this drone does not run, is no error (the proxy answers for it).
func (a *Agent) Resume(ctx context.Context, backendID string) error {
	a.mu.Lock()
	b := a.backends[backendID]
	a.mu.Unlock()
	if b == nil {
		return nil
	}
	return b.wake(ctx, true)
}

// forget drops a backend that reached terminated from the live set: its
// place may go to a pool's member.
func (a *Agent) forget(b *backend) {
	a.mu.Lock()
	// Another backend may have its ID by now: one started cold under the
	// ID of a member that left.
	live := a.backends[b.id] == b
	if live {
		delete(a.backends, b.id)
	}
	a.mu.Unlock()
	if live {
		a.kickPools()
	}
}

func (a *Agent) liveCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.backends)
}
