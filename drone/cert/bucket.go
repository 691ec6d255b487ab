package cert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"plane"
)

// openBucket opens the certificate bucket, waiting (with backoff) while it
// does not exist yet: the controller creates it, and drones may start first.
// It fails only when ctx is done.
func (m *Manager) openBucket(ctx context.Context) (jetstream.KeyValue, error) {
	js, err := jetstream.New(m.cfg.NATS)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err) // only for a nil connection, which New refuses
	}
	wait := 100 * time.Millisecond
	for {
		kv, err := js.KeyValue(ctx, plane.CertBucket)
		if err == nil {
			m.mu.Lock()
			if m.failures == 0 {
				m.lastErr = ""
			}
			m.mu.Unlock()
			return kv, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		m.log.Debug("certificate bucket not available yet", "bucket", plane.CertBucket, "err", err, "retry_in", wait)
		m.mu.Lock()
		m.lastErr = fmt.Sprintf("open certificate bucket %s: %v", plane.CertBucket, err)
		m.next = m.cfg.Now().Add(wait)
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, bucketRetryMax)
	}
}

// watch follows the cluster's key and adopts every valid certificate put
// there; ready is closed once what the bucket held at the start has been
// seen. The watch is started again if it ends before ctx does.
func (m *Manager) watch(ctx context.Context, kv jetstream.KeyValue, ready chan struct{}) {
	var once sync.Once
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		w, err := kv.Watch(ctx, plane.CertKey)
		if err == nil {
			for e := range w.Updates() {
				if e == nil {
					once.Do(func() { close(ready) })
					continue
				}
				wait = 100 * time.Millisecond
				if e.Operation() != jetstream.KeyValuePut {
					m.log.Warn("certificate removed from the bucket; keeping the current one", "revision", e.Revision())
					continue
				}
				b, err := m.decode(e.Value())
				if err != nil {
					m.log.Warn("ignoring certificate from the bucket", "revision", e.Revision(), "err", err)
					continue
				}
				m.adopt(b)
			}
			_ = w.Stop() // ended already; Stop only releases it
		}
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("certificate watch ended; watching again", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, bucketRetryMax)
	}
}

// getEntry reads the cluster's key; nil when it holds nothing.
func getEntry(ctx context.Context, kv jetstream.KeyValue) (jetstream.KeyValueEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	e, err := kv.Get(ctx, plane.CertKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	return e, err
}

// maxPublishAttempts bounds the compare-and-set loop of publish.
const maxPublishAttempts = 5

// publish stores b under the cluster's key, replacing last (the entry seen
// before ordering; nil: none) but never a newer certificate that another
// drone stored meanwhile: writes are conditional on the revision. It
// returns the certificate the bucket ends up with.
func (m *Manager) publish(ctx context.Context, kv jetstream.KeyValue, b *bundle, last jetstream.KeyValueEntry) (*bundle, error) {
	data, err := json.Marshal(b.wire)
	if err != nil {
		return nil, err
	}
	for range maxPublishAttempts {
		if last != nil {
			if other, err := m.decode(last.Value()); err == nil && (other.same(b) || !other.notAfter().Before(b.notAfter())) {
				if !other.same(b) {
					m.log.Info("the bucket holds a newer certificate; keeping it", "not_after", other.notAfter(), "issued_by", other.wire.IssuedBy)
				}
				return other, nil
			}
		}
		wctx, cancel := context.WithTimeout(ctx, requestTimeout)
		if last == nil {
			_, err = kv.Create(wctx, plane.CertKey, data)
		} else {
			_, err = kv.Update(wctx, plane.CertKey, data, last.Revision())
		}
		cancel()
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, err
		}
		// Someone wrote in between: look at what is there now.
		if last, err = getEntry(ctx, kv); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("the certificate key keeps changing under concurrent writes")
}
