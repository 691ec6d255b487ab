package drone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane/drone/store"
)

// outbox publishes the drone's status events and its backends' log lines to
// JetStream and drops each from the sqlite outbox only once the stream has
// acknowledged it, so that neither a drone restart nor a NATS or controller
// outage loses one. Status changes go one at a time, in order, before any
// log line; log lines go in batches. During an outage at most
// maxQueuedLogs lines wait; older ones are dropped first.
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
	maxQueuedLogs    = 20000
	// outboxRetryLeader bounds the wait while the stream elects a leader.
	outboxRetryLeader = 250 * time.Millisecond
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
			if n, terr := o.store.TrimLogs(ctx, maxQueuedLogs); terr != nil {
				o.log.Warn("trim queued log lines", "err", terr)
			} else if n > 0 {
				o.log.Warn("dropped the oldest queued log lines", "lines", n, "kept", maxQueuedLogs)
			}
			wait = backoff
			backoff = min(backoff*2, outboxRetryMax)
			if errors.Is(err, jetstream.ErrNoStreamResponse) {
				// The stream is between leaders (one was lost): it fails
				// fast and is back within seconds, so look again soon.
				wait, backoff = min(wait, outboxRetryLeader), min(backoff, outboxRetryLeader)
			}
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
		if err := o.publish(ctx, msgs); err != nil {
			return err
		}
	}
}

// publish sends msgs as Pending returns them: status changes one at a
// time, each acknowledged before the next, as their order is the
// lifecycle's; then the log lines all at once, acknowledged together.
func (o *outbox) publish(ctx context.Context, msgs []store.OutboxMsg) error {
	var logs []store.OutboxMsg
	for _, m := range msgs {
		if strings.HasSuffix(m.Subject, ".logs") { // plane.SubjectBackendLogs
			logs = append(logs, m)
			continue
		}
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
	if len(logs) == 0 {
		return nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(logs))
	var err error
	for _, m := range logs {
		f, perr := o.js.PublishAsync(m.Subject, m.Data, jetstream.WithMsgID(m.MsgID))
		if perr != nil {
			err = perr
			break
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(outboxPublishTTL)
	defer timeout.Stop()
	var acked []int64
wait:
	for i, f := range futures {
		select {
		case <-f.Ok():
			acked = append(acked, logs[i].Seq)
		case ferr := <-f.Err():
			err = ferr
			break wait
		case <-timeout.C:
			err = fmt.Errorf("publish log lines: no acknowledgement within %s", outboxPublishTTL)
			break wait
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		}
	}
	if len(acked) > 0 {
		if aerr := o.store.Ack(ctx, acked...); aerr != nil && err == nil {
			err = aerr
		}
	}
	return err
}
