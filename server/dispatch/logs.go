package dispatch

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"plane"
)

// Logs calls fn for each stored log line of a backend, oldest first. With
// follow it then waits for new lines until ctx is done; without, it returns
// once it has caught up.
func (d *Dispatcher) Logs(ctx context.Context, backendID string, follow bool, fn func(plane.LogLine) error) error {
	cons, err := d.js.OrderedConsumer(ctx, plane.StreamLogs, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{plane.SubjectBackendLogs(backendID)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("open logs of %s: %w", backendID, err)
	}
	pending := cons.CachedInfo().NumPending
	if !follow && pending == 0 {
		return nil
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read logs of %s: %w", backendID, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for n := uint64(0); follow || n < pending; n++ {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read logs of %s: %w", backendID, err)
		}
		line, err := plane.Decode[plane.LogLine](msg.Data())
		if err != nil {
			d.Logger.Warn("invalid log line", "backend", backendID, "err", err)
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return nil
}
