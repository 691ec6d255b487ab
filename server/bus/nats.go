package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"plane"
)

// NATS delivers events to this controller's subscribers at once, and to
// the other controllers on the same NATS through plane.SubjectEvents. A
// controller that misses a message (it was restarting, NATS was cut off)
// loses a live update, never data: its views reload from the store.
type NATS struct {
	*Memory
	nc     *nats.Conn
	origin string
	sub    *nats.Subscription
	log    *slog.Logger
}

var _ plane.EventBus = (*NATS)(nil)

// NewNATS subscribes to the events of the other controllers on nc.
func NewNATS(nc *nats.Conn, log *slog.Logger) (*NATS, error) {
	if log == nil {
		log = slog.Default()
	}
	var id [8]byte
	_, _ = rand.Read(id[:]) // never fails: see crypto/rand.Read
	b := &NATS{Memory: NewMemory(), nc: nc, origin: hex.EncodeToString(id[:]), log: log.With("component", "bus")}
	sub, err := nc.Subscribe(plane.SubjectEvents, b.receive)
	if err != nil {
		return nil, fmt.Errorf("event bus: subscribe: %w", err)
	}
	// Once the server has the subscription, no event of another
	// controller is missed from now on.
	if err := nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("event bus: subscribe: %w", err)
	}
	b.sub = sub
	return b, nil
}

// Publish delivers e here, then publishes it for the other controllers.
func (b *NATS) Publish(ctx context.Context, e plane.Event) error {
	b.deliver(e)
	env := plane.EventEnvelope{Origin: b.origin, Event: e}
	if e.Backend != nil {
		env.ProjectID = e.Backend.ProjectID
	}
	data, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("event bus: encode: %w", err)
	}
	if err := b.nc.Publish(plane.SubjectEvents, data); err != nil {
		return fmt.Errorf("event bus: publish: %w", err)
	}
	return nil
}

func (b *NATS) receive(m *nats.Msg) {
	env, err := plane.Decode[plane.EventEnvelope](m.Data)
	if err != nil {
		b.log.Warn("invalid event", "err", err)
		return
	}
	if env.Origin == b.origin {
		return // delivered when published
	}
	if env.Event.Backend != nil {
		env.Event.Backend.ProjectID = env.ProjectID
	}
	b.deliver(env.Event)
}

// NC is the bus's NATS connection.
func (b *NATS) NC() *nats.Conn { return b.nc }

// Close stops receiving and ends every subscription.
func (b *NATS) Close() error {
	if err := b.sub.Unsubscribe(); err != nil && err != nats.ErrConnectionClosed {
		b.log.Warn("event bus: unsubscribe", "err", err)
	}
	return b.Memory.Close()
}
