package server

import (
	"sync"

	"plane"
)

// hub fans out backend changes to the requests waiting on them (spawn with
// wait, event streams).
type hub struct {
	mu     sync.Mutex
	subs   map[string]map[chan *plane.Backend]struct{}
	closed bool
}

func newHub() *hub { return &hub{subs: map[string]map[chan *plane.Backend]struct{}{}} }

// subscribe returns a channel of the backend's changes. A backend has at most
// seven, so the buffer never fills for a reader that keeps up at all.
func (h *hub) subscribe(id string) (<-chan *plane.Backend, func()) {
	ch := make(chan *plane.Backend, len(plane.Statuses)+1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(ch)
		return ch, func() {}
	}
	if h.subs[id] == nil {
		h.subs[id] = map[chan *plane.Backend]struct{}{}
	}
	h.subs[id][ch] = struct{}{}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[id][ch]; ok {
			delete(h.subs[id], ch)
			if len(h.subs[id]) == 0 {
				delete(h.subs, id)
			}
			close(ch)
		}
	}
}

func (h *hub) publish(b *plane.Backend) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[b.ID] {
		select {
		case ch <- b:
		default: // a stuck reader loses intermediate states, never blocks the consumer
		}
	}
}

// close ends every subscription, so that streams end on shutdown.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for id, chs := range h.subs {
		for ch := range chs {
			close(ch)
		}
		delete(h.subs, id)
	}
}
