// Package dispatch is the controller's side of NATS: it sends spawn,
// terminate and drain requests to drones, consumes the backends' status
// stream with a durable consumer, records heartbeats, marks silent drones
// lost, and serves the backends' logs and stats.
package dispatch

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane"
)

// Dispatcher connects the controller to its drones.
type Dispatcher struct {
	NC       *nats.Conn
	Backends plane.BackendService
	Drones   plane.DroneService
	Logger   *slog.Logger
	// OnBackend is called after every status change stored from the stream.
	OnBackend func(*plane.Backend)
	// RequestTimeout bounds a request to a drone (default 5 s).
	RequestTimeout time.Duration
	Now            func() time.Time
	// ConnectKey verifies connect tokens; drones ask for it on
	// plane.SubjectConnectKey. Nil: the request goes unanswered.
	ConnectKey ed25519.PublicKey

	js   jetstream.JetStream
	cctx jetstream.ConsumeContext
	subs []*nats.Subscription
	wg   sync.WaitGroup
	stop context.CancelFunc

	mu    sync.Mutex
	stats map[string][]plane.BackendStats // oldest first, at most StatsHistory
	proto map[string]int                  // each drone's protocol version, to log a change once

	acme acmeState
}

// Open creates the streams and the durable consumer, and starts consuming
// status changes, heartbeats and stats.
func (d *Dispatcher) Open(ctx context.Context) error {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	d.Logger = d.Logger.With("component", "dispatch")
	if d.RequestTimeout == 0 {
		d.RequestTimeout = 5 * time.Second
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	d.stats = map[string][]plane.BackendStats{}
	if d.ConnectKey != nil && len(d.ConnectKey) != ed25519.PublicKeySize {
		return fmt.Errorf("connect key: %d bytes, want %d", len(d.ConnectKey), ed25519.PublicKeySize)
	}
	js, err := jetstream.New(d.NC)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	d.js = js
	if err := EnsureStreams(ctx, js); err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, plane.StreamStatus, jetstream.ConsumerConfig{
		Durable:       plane.ConsumerStatus,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1000,
	})
	if err != nil {
		return fmt.Errorf("create status consumer: %w", err)
	}
	cctx, err := cons.Consume(d.handleStatus)
	if err != nil {
		return fmt.Errorf("consume status stream: %w", err)
	}
	d.cctx = cctx

	handlers := map[string]nats.MsgHandler{
		plane.SubjectHeartbeat:       d.handleHeartbeat,
		plane.SubjectBackendStatsAll: d.handleStats,
	}
	if d.ConnectKey != nil {
		handlers[plane.SubjectConnectKey] = d.handleConnectKey
	}
	d.acmeHandlers(handlers)
	for subject, h := range handlers {
		sub, err := d.NC.Subscribe(subject, h)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", subject, err)
		}
		d.subs = append(d.subs, sub)
	}
	if err := d.NC.Flush(); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.stop = cancel
	d.wg.Go(func() { d.sweepLoop(sctx) })
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

// EnsureStreams creates or updates the status and logs streams.
func EnsureStreams(ctx context.Context, js jetstream.JetStream) error {
	for _, cfg := range []jetstream.StreamConfig{
		{
			Name:       plane.StreamStatus,
			Subjects:   plane.StatusSubjects,
			Storage:    jetstream.FileStorage,
			MaxAge:     7 * 24 * time.Hour,
			Duplicates: 2 * time.Minute,
		},
		{
			Name:              plane.StreamLogs,
			Subjects:          plane.LogSubjects,
			Storage:           jetstream.FileStorage,
			MaxAge:            7 * 24 * time.Hour,
			MaxMsgsPerSubject: plane.LogsPerBackend,
			Discard:           jetstream.DiscardOld,
		},
	} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
	}
	// The cluster certificate travels to every drone through this bucket.
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: plane.CertBucket, History: 1, Storage: jetstream.FileStorage,
	}); err != nil {
		return fmt.Errorf("create bucket %s: %w", plane.CertBucket, err)
	}
	return nil
}

func (d *Dispatcher) handleStatus(msg jetstream.Msg) {
	ev, err := plane.Decode[plane.BackendEvent](msg.Data())
	if err != nil {
		// A bad message would be redelivered forever: drop it, loudly.
		d.Logger.Error("dropping invalid status message", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.Apply(ctx, ev); err != nil {
		if plane.ErrorCodeOf(err) == plane.ENOTFOUND {
			d.Logger.Warn("status for unknown backend", "backend", ev.BackendID, "status", ev.Status)
			_ = msg.Term()
			return
		}
		d.Logger.Error("store status change", "backend", ev.BackendID, "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err := msg.Ack(); err != nil {
		d.Logger.Warn("ack status message", "err", err)
	}
}

// Apply records a status change and tells OnBackend.
func (d *Dispatcher) Apply(ctx context.Context, ev plane.BackendEvent) (*plane.Backend, error) {
	b, applied, err := d.Backends.ApplyBackendEvent(ctx, ev)
	if err != nil {
		return nil, err
	}
	if applied && b.Status == plane.StatusTerminated {
		d.mu.Lock()
		delete(d.stats, b.ID)
		d.mu.Unlock()
	}
	if applied && d.OnBackend != nil {
		d.OnBackend(b)
	}
	return b, nil
}

func (d *Dispatcher) handleHeartbeat(m *nats.Msg) {
	hb, err := plane.Decode[plane.Heartbeat](m.Data)
	if err != nil {
		d.Logger.Warn("invalid heartbeat", "err", err)
		return
	}
	d.noteProtocol(hb)
	status := plane.DroneReady
	switch {
	case hb.Stopping:
		status = plane.DroneStopped
	case hb.Draining:
		status = plane.DroneDraining
	}
	drone := &plane.Drone{
		ID:              hb.DroneID,
		Address:         hb.Address,
		ProxyAddress:    hb.ProxyAddress,
		Version:         hb.Version,
		ProtocolVersion: hb.ProtocolVersion,
		Status:          status,
		Draining:        hb.Draining,
		Capacity:        hb.Capacity,
		Backends:        len(hb.LiveBackends),
		CPUPercent:      hb.CPUPercent,
		MemoryBytes:     hb.MemoryBytes,
		Images:          hb.Images,
		CertNotAfter:    hb.CertNotAfter,
		CertError:       hb.CertError,
		ProxyError:      hb.ProxyError,
		LastHeartbeat:   d.Now(), // our clock, not the drone's: staleness is judged here
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Drones.UpsertDrone(ctx, drone); err != nil {
		d.Logger.Error("record heartbeat", "drone", hb.DroneID, "err", err)
	}
	if err := d.stopUnknown(ctx, hb); err != nil {
		d.Logger.Error("compare drone backends", "drone", hb.DroneID, "err", err)
	}
}

// noteProtocol logs, once for each drone and version, a drone that speaks
// the previous protocol version: it is served, and should be upgraded.
func (d *Dispatcher) noteProtocol(hb plane.Heartbeat) {
	d.mu.Lock()
	if d.proto == nil {
		d.proto = map[string]int{}
	}
	seen := d.proto[hb.DroneID] == hb.ProtocolVersion
	d.proto[hb.DroneID] = hb.ProtocolVersion
	d.mu.Unlock()
	if !seen && hb.ProtocolVersion < plane.ProtocolVersion {
		d.Logger.Warn("drone speaks the previous protocol version: it is served, upgrade it",
			"drone", hb.DroneID, "drone_protocol", hb.ProtocolVersion, "protocol", plane.ProtocolVersion, "drone_version", hb.Version)
	}
}

// stopUnknown stops backends a drone runs that the store holds terminated:
// those marked lost while the drone was unreachable, or failed when a spawn
// request timed out after the drone had taken it. Without this they would
// run on, unseen, until their idle limit.
func (d *Dispatcher) stopUnknown(ctx context.Context, hb plane.Heartbeat) error {
	if len(hb.LiveBackends) == 0 {
		return nil
	}
	live := true
	bs, err := d.Backends.FindBackends(ctx, plane.BackendFilter{DroneID: &hb.DroneID, Live: &live, Limit: 1000})
	if err != nil {
		return err
	}
	known := make(map[string]bool, len(bs))
	for _, b := range bs {
		known[b.ID] = true
	}
	for _, id := range hb.LiveBackends {
		if known[id] {
			continue
		}
		b, err := d.Backends.FindBackendByID(ctx, id)
		if err != nil && plane.ErrorCodeOf(err) != plane.ENOTFOUND {
			return err
		}
		if b != nil && b.Status.Live() {
			continue // live, on another drone's record: leave it to that one
		}
		d.Logger.Warn("stopping a backend the controller holds terminated", "drone", hb.DroneID, "backend", id)
		go func() {
			req := plane.TerminateRequest{BackendID: id, Hard: true, Reason: plane.ReasonLost}
			if err := d.Terminate(context.Background(), hb.DroneID, req); err != nil {
				d.Logger.Warn("stop backend", "drone", hb.DroneID, "backend", id, "err", err)
			}
		}()
	}
	return nil
}

// handleConnectKey answers a drone's request for the connect-token key.
func (d *Dispatcher) handleConnectKey(m *nats.Msg) {
	d.respond(m, plane.ConnectKey{PublicKey: d.ConnectKey})
}

func (d *Dispatcher) handleStats(m *nats.Msg) {
	s, err := plane.Decode[plane.BackendStats](m.Data)
	if err != nil {
		d.Logger.Debug("invalid stats", "err", err)
		return
	}
	d.mu.Lock()
	h := d.stats[s.BackendID]
	if len(h) == StatsHistory {
		h = append(h[:0], h[1:]...)
	}
	d.stats[s.BackendID] = append(h, s)
	d.mu.Unlock()
}

// StatsHistory is how many samples of each live backend's stats the
// dispatcher keeps: two minutes at the drones' two-second period.
const StatsHistory = 60

// Stats returns the latest stats of a backend.
func (d *Dispatcher) Stats(backendID string) (plane.BackendStats, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.stats[backendID]
	if len(h) == 0 {
		return plane.BackendStats{}, false
	}
	return h[len(h)-1], true
}

// StatsHistory returns a copy of a live backend's recent stats, oldest first.
func (d *Dispatcher) StatsHistory(backendID string) []plane.BackendStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]plane.BackendStats(nil), d.stats[backendID]...)
}

// request sends a request to a drone and decodes its reply.
func (d *Dispatcher) request(ctx context.Context, subject string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, d.RequestTimeout)
	defer cancel()
	m, err := d.NC.RequestWithContext(ctx, subject, data)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return plane.Errorf(plane.EUNAVAILABLE, "drone did not answer (%v)", err)
		}
		return fmt.Errorf("request %s: %w", subject, err)
	}
	var r plane.Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("decode reply to %s: %w", subject, err)
	}
	return r.Err()
}

// Spawn asks a drone to start a backend.
func (d *Dispatcher) Spawn(ctx context.Context, droneID string, spec plane.SpawnSpec) error {
	return d.request(ctx, plane.SubjectSpawn(droneID), spec)
}

// Terminate asks a drone to stop a backend.
func (d *Dispatcher) Terminate(ctx context.Context, droneID string, req plane.TerminateRequest) error {
	return d.request(ctx, plane.SubjectTerminate(droneID), req)
}

// Drain sets or clears a drone's draining flag.
func (d *Dispatcher) Drain(ctx context.Context, droneID string, draining bool) error {
	return d.request(ctx, plane.SubjectDrain(droneID), plane.DrainRequest{Draining: draining})
}

// Pull asks a drone to pull an image ahead of use.
func (d *Dispatcher) Pull(ctx context.Context, droneID, ref string) error {
	return d.request(ctx, plane.SubjectPull(droneID), plane.PullRequest{ImageRef: ref})
}
