// Package dispatch is the controller's side of NATS: it sends spawn,
// terminate and drain requests to drones, consumes the backends' status
// stream with a durable consumer, records heartbeats, marks silent drones
// lost, serves the backends' logs and stats, and answers the DNS server's
// questions (backend addresses, ACME challenges).
//
// One concern per file: transport.go (requests to drones), status.go (the
// status stream), heartbeat.go (drone records), reconcile.go (backends a
// drone runs that the store holds terminated), sweep.go (silent drones),
// stats.go (recent stats), acme.go (the certificate-ordering lease and its
// TXT values), records.go (the DNS record source) and logs.go.
package dispatch

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane"
)

// Applier stores a backend's status change; applied is false for one the
// store already had (or an older one).
type Applier interface {
	ApplyBackendEvent(ctx context.Context, ev plane.BackendEvent) (b *plane.Backend, applied bool, err error)
}

// Dispatcher connects the controller to its drones.
type Dispatcher struct {
	NC       *nats.Conn
	Backends plane.BackendService
	Drones   plane.DroneService
	// ACME keeps the certificate-ordering lease and TXT values (the
	// store, shared by the controllers of a cluster). Nil: in memory.
	ACME   plane.ACMEStateService
	Logger *slog.Logger
	// Applier stores the status changes of the stream and of the liveness
	// sweep: the controller core, which also records them in the metrics
	// and publishes them on the event bus. Nil: Backends, which only
	// stores them.
	Applier Applier
	// UnreachableAfter and LostAfter are how long a drone may be silent
	// before it is unreachable (no new backends; its backends stay as they
	// are) and lost (its backends are terminated). Defaults:
	// plane.DefaultDroneUnreachableAfter and plane.DefaultDroneLostAfter.
	UnreachableAfter, LostAfter time.Duration
	// Replicas is how many copies JetStream keeps of the status and logs
	// streams and the certificate bucket (0: DefaultReplicas); an existing
	// stream's count is never lowered.
	Replicas int
	// HolderID names this controller in the cluster's lease (lease.go);
	// default: random. LeaseTTL is how long the lease lasts unrenewed
	// (default DefaultLeaseTTL).
	HolderID string
	LeaseTTL time.Duration
	// RequestTimeout bounds a request to a drone (default 5 s).
	// ResendAfter is how long a request waits for its reply before it is
	// sent again (default 1 s): see request.
	RequestTimeout, ResendAfter time.Duration
	Now                         func() time.Time
	// ConnectKey verifies connect tokens; drones ask for it on
	// plane.SubjectConnectKey. Nil: the request goes unanswered.
	// AcceptKeys are the other keys whose tokens are still good (a
	// rotation of the signing key); drones get them too.
	ConnectKey ed25519.PublicKey
	AcceptKeys []ed25519.PublicKey
	// PoolSource gives the warm pools the drones should keep (pools.go).
	// Nil: the drones are sent none.
	PoolSource PoolSource
	// Bus announces drone changes (a heartbeat, unreachable, lost) to the
	// live views. Nil: none.
	Bus plane.EventBus

	js   jetstream.JetStream
	cctx jetstream.ConsumeContext
	subs []*nats.Subscription
	wg   sync.WaitGroup
	stop context.CancelFunc
	// runCtx lives from Open to Close, for work in the background.
	runCtx context.Context

	stats   statsRing
	pools   pools
	proto   protocols
	acmeMem memoryACME
	recon   reconcileState
	lease   lease
	// leasing: Open took part in the lease; without it (a dispatcher
	// driven by tests) the singleton duties always run.
	leasing bool
}

// Open creates the streams and the durable consumer, and starts consuming
// status changes, heartbeats and stats.
func (d *Dispatcher) Open(ctx context.Context) error {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	d.Logger = d.Logger.With("component", "dispatch")
	if err := d.setLimits(); err != nil {
		return err
	}
	if d.RequestTimeout == 0 {
		d.RequestTimeout = 5 * time.Second
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.ConnectKey != nil && len(d.ConnectKey) != ed25519.PublicKeySize {
		return fmt.Errorf("connect key: %d bytes, want %d", len(d.ConnectKey), ed25519.PublicKeySize)
	}
	if k := d.connectKeys(); d.ConnectKey != nil {
		if err := k.Validate(); err != nil {
			return fmt.Errorf("connect keys: %w", err)
		}
	}
	if d.HolderID == "" {
		d.HolderID = newHolderID()
	}
	if d.LeaseTTL <= 0 {
		d.LeaseTTL = DefaultLeaseTTL
	}
	if err := d.consumeStatus(ctx); err != nil {
		return err
	}
	kv, err := d.js.KeyValue(ctx, plane.ClusterBucket)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", plane.ClusterBucket, err)
	}
	// A first try before serving: a lone controller leads at once.
	if err := d.renewLease(ctx, kv); err != nil {
		d.Logger.Warn("cluster lease", "err", err)
	}
	d.leasing = true
	handlers := map[string]nats.MsgHandler{
		plane.SubjectHeartbeat:       d.handleHeartbeat,
		plane.SubjectBackendStatsAll: d.handleStats,
		plane.SubjectACMELease:       d.handleACMELease,
		plane.SubjectACMESetTXT:      d.handleACMETXT(true),
		plane.SubjectACMEClearTXT:    d.handleACMETXT(false),
	}
	if d.ConnectKey != nil {
		handlers[plane.SubjectConnectKey] = d.handleConnectKey
	}
	for subject, h := range handlers {
		sub, err := d.NC.Subscribe(subject, h)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", subject, err)
		}
		d.subs = append(d.subs, sub)
	}
	// One controller of the cluster applies each live copy.
	sub, err := d.NC.QueueSubscribe(plane.SubjectBackendStatusLiveAll, plane.ConsumerStatus, d.handleLiveStatus)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", plane.SubjectBackendStatusLiveAll, err)
	}
	d.subs = append(d.subs, sub)
	if err := d.NC.Flush(); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.stop, d.runCtx = cancel, sctx
	d.wg.Go(func() { d.sweepLoop(sctx) })
	d.wg.Go(func() { d.leaseLoop(sctx, kv) })
	return nil
}

// Close stops consuming; pending status changes stay in the stream for the
// next start.
func (d *Dispatcher) Close() {
	if d.cctx != nil {
		d.cctx.Drain()
		<-d.cctx.Closed()
	}
	for _, s := range d.subs {
		_ = s.Unsubscribe()
	}
	if d.stop != nil {
		d.stop()
	}
	d.wg.Wait()
}

// setLimits fills in the silence limits and checks them.
func (d *Dispatcher) setLimits() error {
	if d.UnreachableAfter <= 0 {
		d.UnreachableAfter = plane.DefaultDroneUnreachableAfter
	}
	if d.LostAfter <= 0 {
		d.LostAfter = plane.DefaultDroneLostAfter
	}
	if d.UnreachableAfter < plane.DroneStaleAfter || d.LostAfter <= d.UnreachableAfter {
		return fmt.Errorf("drone silence limits: unreachable after %s (at least %s), lost after %s: want unreachable < lost",
			d.UnreachableAfter, plane.DroneStaleAfter, d.LostAfter)
	}
	return nil
}

// DefaultReplicas is the replica count for a connection to nc's cluster:
// the number of servers it knows of (those of its URL and those the
// cluster announced), at most 3.
func DefaultReplicas(nc *nats.Conn) int {
	return min(max(len(nc.Servers()), 1), 3)
}

func (d *Dispatcher) replicas() int {
	if d.Replicas > 0 {
		return d.Replicas
	}
	return DefaultReplicas(d.NC)
}

// singleton reports whether this controller runs the cluster's singleton
// duties now: it holds the lease (or takes no part in one).
func (d *Dispatcher) singleton() bool { return !d.leasing || d.Leader() }
