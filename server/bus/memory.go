// Package bus holds the controller's event buses (plane.EventBus): Memory
// for one controller, NATS for several, which shares what each applies.
package bus

import (
	"context"
	"sync"

	"plane"
)

// subscriberBuffer is each subscription's buffer. A backend changes status
// at most seven times, so a reader that keeps up at all never loses one.
var subscriberBuffer = len(plane.Statuses) + 1

// Memory delivers events within one process.
type Memory struct {
	mu     sync.Mutex
	subs   map[string]map[chan plane.Event]struct{}
	closed bool
}

var _ plane.EventBus = (*Memory)(nil)

// NewMemory returns an empty bus.
func NewMemory() *Memory { return &Memory{subs: map[string]map[chan plane.Event]struct{}{}} }

// Publish delivers e to the subscribers of its topics; it never blocks.
func (m *Memory) Publish(_ context.Context, e plane.Event) error {
	m.deliver(e)
	return nil
}

func (m *Memory) deliver(e plane.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, topic := range e.Topics() {
		for ch := range m.subs[topic] {
			select {
			case ch <- e:
			default: // a stuck reader loses intermediate states, never blocks the others
			}
		}
	}
}

// Subscribe returns the events of topic until cancel or Close.
func (m *Memory) Subscribe(topic string) (<-chan plane.Event, func()) {
	ch := make(chan plane.Event, subscriberBuffer)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		close(ch)
		return ch, func() {}
	}
	if m.subs[topic] == nil {
		m.subs[topic] = map[chan plane.Event]struct{}{}
	}
	m.subs[topic][ch] = struct{}{}
	return ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := m.subs[topic][ch]; ok {
			delete(m.subs[topic], ch)
			if len(m.subs[topic]) == 0 {
				delete(m.subs, topic)
			}
			close(ch)
		}
	}
}

// Close ends every subscription, so that streams end on shutdown.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for topic, chs := range m.subs {
		for ch := range chs {
			close(ch)
		}
		delete(m.subs, topic)
	}
	return nil
}
