package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane"
	"plane/natsjs"
)

// statusAckWait is how long the status stream waits for an acknowledgement
// before it redelivers a status change: one a controller took and then
// died with comes back to another (or to it, restarted) this much later.
// statusApplyTimeout, the bound of one apply, stays under it.
const (
	statusAckWait      = 5 * time.Second
	statusApplyTimeout = 4 * time.Second
)

// EnsureStreams creates or updates the status and logs streams and the
// certificate and cluster buckets, each with replicas copies, or more when it has more
// already: a replica count is never lowered.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	for _, cfg := range natsjs.Streams() {
		r, err := keepReplicas(ctx, js, cfg.Name, replicas)
		if err != nil {
			return err
		}
		cfg.Replicas = r
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("create stream %s with %d replicas: %w", cfg.Name, r, err)
		}
	}
	// The cluster certificate travels to every drone through one bucket;
	// the cluster's claim (made before this runs) is in the other.
	for _, bucket := range []string{plane.CertBucket, plane.ClusterBucket} {
		r, err := keepReplicas(ctx, js, "KV_"+bucket, replicas)
		if err != nil {
			return err
		}
		if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: bucket, History: 1, Storage: jetstream.FileStorage, Replicas: r,
		}); err != nil {
			return fmt.Errorf("create bucket %s with %d replicas: %w", bucket, r, err)
		}
	}
	return nil
}

// keepReplicas is the replica count for stream name: want, or the stream's
// own count when it has more.
func keepReplicas(ctx context.Context, js jetstream.JetStream, name string, want int) (int, error) {
	want = max(want, 1)
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return want, nil
	} else if err != nil {
		return 0, fmt.Errorf("look up stream %s: %w", name, err)
	}
	return max(want, s.CachedInfo().Config.Replicas), nil
}

// consumeStatus creates the streams and the durable status consumer, and
// starts applying the status changes it delivers.
func (d *Dispatcher) consumeStatus(ctx context.Context) error {
	js, err := jetstream.New(d.NC)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	d.js = js
	if err := RetryJetStream(ctx, d.Logger, "create streams", func() error { return EnsureStreams(ctx, js, d.replicas()) }); err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, plane.StreamStatus, jetstream.ConsumerConfig{
		Durable:       plane.ConsumerStatus,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       statusAckWait,
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
	return nil
}

// handleStatus applies one status change from the stream and settles it:
// acknowledged once stored, terminated when it can never be stored, and
// redelivered after a second when the store failed.
func (d *Dispatcher) handleStatus(msg jetstream.Msg) {
	ev, err := plane.Decode[plane.BackendEvent](msg.Data())
	if err != nil {
		// A bad message would be redelivered forever: drop it, loudly.
		d.Logger.Error("dropping invalid status message", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusApplyTimeout)
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

// Apply records a status change through the Applier.
func (d *Dispatcher) Apply(ctx context.Context, ev plane.BackendEvent) (*plane.Backend, error) {
	var a Applier = d.Backends
	if d.Applier != nil {
		a = d.Applier
	}
	b, applied, err := a.ApplyBackendEvent(ctx, ev)
	if err != nil {
		return nil, err
	}
	if applied && b.Status == plane.StatusTerminated {
		d.stats.forget(b.ID)
	}
	return b, nil
}

// CheckWrite writes to JetStream (the cluster bucket's probe key), for the
// controller's readiness: without a JetStream that takes writes, status
// changes and logs wait on the drones.
func (d *Dispatcher) CheckWrite(ctx context.Context) error {
	if d.js == nil {
		return errors.New("JetStream: not open")
	}
	kv, err := d.js.KeyValue(ctx, plane.ClusterBucket)
	if err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	if _, err := kv.Put(ctx, plane.ClusterProbeKey, []byte(d.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		return fmt.Errorf("JetStream cannot take a write: %w", err)
	}
	return nil
}

// jetStreamSettle bounds RetryJetStream: how long a NATS cluster that has
// just started may take to elect its JetStream leaders.
const jetStreamSettle = 30 * time.Second

// jetStreamRetryEvery is RetryJetStream's pause between tries (a variable
// for its tests).
var jetStreamRetryEvery = time.Second

// RetryJetStream runs f until it succeeds, fails with an error made by
// Final, ctx ends or jetStreamSettle has passed, every jetStreamRetryEvery: a
// controller started with its NATS cluster finds JetStream unable to place
// replicated streams until the servers have found each other, and should
// wait rather than exit.
func RetryJetStream(ctx context.Context, log *slog.Logger, what string, f func() error) error {
	deadline := time.Now().Add(jetStreamSettle)
	for {
		err := f()
		if fe, ok := errors.AsType[finalError](err); ok {
			return fe.err
		}
		if err == nil || ctx.Err() != nil || !time.Now().Before(deadline) {
			return err
		}
		log.Warn("JetStream not ready, retrying", "what", what, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(jetStreamRetryEvery):
		}
	}
}

// Final marks an error RetryJetStream must not retry.
func Final(err error) error { return finalError{err} }

type finalError struct{ err error }

func (e finalError) Error() string { return e.err.Error() }

// handleLiveStatus applies the copy of a status change a drone sends on
// core NATS beside the stream's. It arrives at once even while the stream
// elects a new leader (a NATS server lost), so spawns that wait for ready
// are not held up; the stream's copy, applied later, changes nothing, as
// status only moves forward. A copy that cannot be applied is dropped: the
// stream's is the one that counts.
func (d *Dispatcher) handleLiveStatus(m *nats.Msg) {
	ev, err := plane.Decode[plane.BackendEvent](m.Data)
	if err != nil {
		d.Logger.Debug("invalid live status message", "subject", m.Subject, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusApplyTimeout)
	defer cancel()
	if _, err := d.Apply(ctx, ev); err != nil {
		d.Logger.Debug("apply live status change", "backend", ev.BackendID, "status", ev.Status, "err", err)
	}
}
