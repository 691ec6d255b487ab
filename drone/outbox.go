package drone

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane/drone/store"
)

// outbox publishes the drone's status events to JetStream in order and drops
// each from the sqlite outbox only once the stream has acknowledged it, so
// that neither a drone restart nor a NATS or controller outage loses one.
type outbox struct {
	js    jetstream.JetStream
	store *store.Store
	log   *slog.Logger
	kick  chan struct{}
}

func newOutbox(nc *nats.Conn, st *store.Store, log *slog.Logger) *outbox {
	js, _ := jetstream.New(nc) // only fails for a nil connection, checked by New
	return &outbox{js: js, store: st, log: log, kick: make(chan struct{}, 1)}
}

// notify wakes the publisher after a new message was enqueued.
func (o *outbox) notify() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

const (
	outboxBatch      = 100
	outboxRetryMin   = 100 * time.Millisecond
	outboxRetryMax   = 5 * time.Second
	outboxPublishTTL = 5 * time.Second
)

func (o *outbox) run(ctx context.Context) {
	backoff := outboxRetryMin
	for {
		err := o.flush(ctx)
		wait := time.Duration(0)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			o.log.Warn("outbox publish failed, will retry", "err", err, "retry_in", backoff)
			wait = backoff
			backoff = min(backoff*2, outboxRetryMax)
		} else {
			backoff = outboxRetryMin
		}
		var timer <-chan time.Time
		if wait > 0 {
			timer = time.After(wait)
		} else {
			timer = time.After(outboxRetryMax) // a periodic sweep in case a kick was missed
		}
		select {
		case <-ctx.Done():
			return
		case <-o.kick: // a new message, or retry early: both are harmless
		case <-timer:
		}
	}
}

// flush publishes every pending message, oldest first.
func (o *outbox) flush(ctx context.Context) error {
	for {
		msgs, err := o.store.Pending(ctx, outboxBatch)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		for _, m := range msgs {
			pctx, cancel := context.WithTimeout(ctx, outboxPublishTTL)
			_, err := o.js.Publish(pctx, m.Subject, m.Data, jetstream.WithMsgID(m.MsgID))
			cancel()
			if err != nil {
				return err
			}
			if err := o.store.Ack(ctx, m.Seq); err != nil {
				return err
			}
		}
	}
}
