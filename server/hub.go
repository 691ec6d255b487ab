package server

import (
	"strconv"
	"sync"

	"plane"
)

// hub fans out backend changes to the requests waiting on them (spawn with
// wait, event streams, the dashboard's live tables). Subscriptions are by
// backend id, by project (projectTopic) or to every backend (allTopic).
type hub struct {
	mu     sync.Mutex
	subs   map[string]map[chan *plane.Backend]struct{}
	closed bool
}

func newHub() *hub { return &hub{subs: map[string]map[chan *plane.Backend]struct{}{}} }

// subscribe returns a channel of the backend's changes. A backend has at most
// seven, so the buffer never fills for a reader that keeps up at all.
func (h *hub) subscribe(topic string) (<-chan *plane.Backend, func()) {
	ch := make(chan *plane.Backend, len(plane.Statuses)+1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(ch)
		return ch, func() {}
	}
	if h.subs[topic] == nil {
		h.subs[topic] = map[chan *plane.Backend]struct{}{}
	}
	h.subs[topic][ch] = struct{}{}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[topic][ch]; ok {
			delete(h.subs[topic], ch)
			if len(h.subs[topic]) == 0 {
				delete(h.subs, topic)
			}
			close(ch)
		}
	}
}

// allTopic receives every backend's changes.
const allTopic = "*"

// projectTopic receives the changes of a project's backends.
func projectTopic(projectID int64) string { return "project:" + strconv.FormatInt(projectID, 10) }

func (h *hub) publish(b *plane.Backend) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, topic := range []string{b.ID, projectTopic(b.ProjectID), allTopic} {
		for ch := range h.subs[topic] {
			select {
			case ch <- b:
			default: // a stuck reader loses intermediate states, never blocks the consumer
			}
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
