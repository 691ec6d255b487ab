package server

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"plane"
)

// sse is an open Server-Sent Events response. Every event of server/ is
// written by its sendID, so that no text from outside (a backend's log
// line, say) can start a field of its own.
type sse struct {
	mu sync.Mutex // a stream may be fed by several goroutines
	w  *echo.Response
}

func openSSE(c echo.Context) *sse { return &sse{w: startStream(c, "text/event-stream")} }

// startStream sends the head of a streamed answer: no caching, and no
// buffering in proxies that honour X-Accel-Buffering.
func startStream(c echo.Context, contentType string) *echo.Response {
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, contentType)
	w.Header().Set(echo.HeaderCacheControl, "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Flush()
	return w
}

// send writes one event without an id.
func (s *sse) send(event, data string) error { return s.sendID("", event, data) }

// sendID writes one event and flushes it.
func (s *sse) sendID(id, event, data string) error {
	ev, err := formatSSE(id, event, data)
	if err != nil {
		return err
	}
	return s.write(ev)
}

func (s *sse) keepAlive() error { return s.write(": keep-alive\n\n") }

func (s *sse) write(text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write([]byte(text)); err != nil {
		return err
	}
	s.w.Flush()
	return nil
}

// follow is the loop of every event stream: it hands each change on ch to
// handle until the client leaves, ch closes, or handle says the stream is
// over (done) or fails to send; a quiet stream gets a keep-alive comment
// every sseKeepAlive. With every > 0, handle also gets a zero Event that
// often: a stream that shows what the store holds reads it again then, so
// that an announcement lost on the way only delays a change.
func (s *sse) follow(ctx context.Context, ch <-chan plane.Event, every time.Duration, handle func(plane.Event) (done bool, err error)) {
	keepAlive := time.NewTicker(sseKeepAlive)
	defer keepAlive.Stop()
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		var e plane.Event
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-ch:
			if !ok {
				return
			}
			e = ev
		case <-tick:
		case <-keepAlive.C:
			if s.keepAlive() != nil {
				return
			}
			continue
		}
		if done, err := handle(e); done || err != nil {
			return
		}
	}
}

// subscribe follows several topics of the bus on one channel, which closes
// once every topic's has (the bus closed) or cancel is called.
func (s *Server) subscribe(topics ...string) (<-chan plane.Event, func()) {
	out := make(chan plane.Event, 16)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	cancels := make([]func(), len(topics))
	for i, topic := range topics {
		ch, cancel := s.Bus.Subscribe(topic)
		cancels[i] = cancel
		wg.Go(func() {
			for e := range ch {
				select {
				case out <- e:
				case <-stop:
					return
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	var once sync.Once
	return out, func() {
		once.Do(func() {
			close(stop)
			for _, cancel := range cancels {
				cancel()
			}
		})
	}
}

// sseKeepAlive is how often an idle stream sends a comment, so proxies keep it.
const sseKeepAlive = 15 * time.Second

// formatSSE is one event in the SSE format. A line of that format ends at
// "\r\n", "\r" or "\n", so the data is cut at each of the three and every
// piece gets its own data: field (the client joins them with "\n"): a raw
// "\r" in the data ends a data line, never starts a field. The id and the
// event name are ours, never text from outside: a line break in them is a
// bug, refused.
func formatSSE(id, event, data string) (string, error) {
	if strings.ContainsAny(id, "\r\n\x00") || strings.ContainsAny(event, "\r\n") {
		return "", fmt.Errorf("sse: line break in id %q or event %q", id, event)
	}
	var b strings.Builder
	if id != "" {
		b.WriteString("id: " + id + "\n")
	}
	if event != "" {
		b.WriteString("event: " + event + "\n")
	}
	for _, line := range sseLines(data) {
		b.WriteString("data: " + line + "\n")
	}
	b.WriteByte('\n')
	return b.String(), nil
}

// sseLines splits s at every "\r\n", "\r" and "\n".
func sseLines(s string) []string {
	var lines []string
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			return append(lines, s)
		}
		lines = append(lines, s[:i])
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
	}
}

// streamBackendEvents streams b's status changes and its users' joins and
// leaves: what happened so far first (after what Last-Event-ID says the
// client has), then each change as it happens, until b is terminated.
//
// A status change is an event "status" whose id is the status's number
// (1 for scheduled … 7 for terminated), as it always was. A join or a
// leave is an event named after its type (backend.user_joined,
// backend.user_left) with the project event as its data, from the
// project's log. Once the stream has sent one, ids are "<status
// number>.<log id>": the two places the stream has reached, so that a
// client that reconnects with the last id gets neither kind twice. At the
// same millisecond, the steps up to ready come before the connections, the
// later ones after them (a backend's users leave as it stops).
func (s *Server) streamBackendEvents(c echo.Context, b *plane.Backend) error {
	ctx := c.Request().Context()
	ch, cancel := s.subscribe(b.ID, plane.TopicBackendLog(b.ID))
	defer cancel()
	// Read again after subscribing, so no change falls between the two.
	b, err := s.Backends.FindBackendByID(ctx, b.ID)
	if err != nil {
		return err
	}
	st := backendStream{s: s, ctx: ctx, id: b.ID}
	if st.rank, st.logID, err = parseBackendEventID(c.Request().Header.Get("Last-Event-ID")); err != nil {
		return err
	}
	st.readID = st.logID
	st.out = openSSE(c)
	if !st.flush(b) || b.Status == plane.StatusTerminated {
		return nil
	}
	st.out.follow(ctx, ch, eventsRecheck, func(e plane.Event) (bool, error) {
		switch e.Kind {
		case plane.EventBackend:
			b = e.Backend
		case "":
			// An announcement lost on the way is in the store all the same.
			cur, err := s.Backends.FindBackendByID(ctx, b.ID)
			if err != nil {
				if ctx.Err() == nil {
					s.Logger.Warn("backend events: read the backend", "backend", b.ID, "err", err)
				}
				return false, nil
			}
			b = cur
		}
		// A join or a leave (EventProjectLog) is in the log that flush reads.
		return !st.flush(b) || b.Status == plane.StatusTerminated, nil
	})
	return nil
}

// backendStream is where a backend's event stream stands: the last status
// number and the last log id it sent.
type backendStream struct {
	s    *Server
	ctx  context.Context
	out  *sse
	id   string
	rank int
	// logID is the last join or leave sent (or the client had), readID
	// where the next read of the log starts: past the status events of
	// the log too, which the history sends.
	logID, readID int64
}

// parseBackendEventID reads a backend stream's Last-Event-ID: "<status
// number>" or "<status number>.<log id>".
func parseBackendEventID(v string) (rank int, logID int64, err error) {
	if v == "" {
		return 0, 0, nil
	}
	r, l, hasLog := strings.Cut(v, ".")
	rank, err = strconv.Atoi(r)
	if err == nil && hasLog {
		logID, err = strconv.ParseInt(l, 10, 64)
	}
	if err != nil || rank < 0 || logID < 0 {
		return 0, 0, plane.FieldErrorf("Last-Event-ID", "must be a status number, or a status number and an event id joined by '.' (got %q)", v)
	}
	return rank, logID, nil
}

func (st *backendStream) eventID() string {
	if st.logID == 0 {
		return strconv.Itoa(st.rank)
	}
	return strconv.Itoa(st.rank) + "." + strconv.FormatInt(st.logID, 10)
}

// streamItem is a status change or a connection event, for the merge.
type streamItem struct {
	at    time.Time
	order int // at one time: 0 steps up to ready, 1 connections, 2 later steps
	rank  int
	event statusEvent
	conn  *plane.ProjectEvent
}

// flush sends what b's history holds and the log's joins and leaves of b
// beyond what was sent, merged in time order. It reports whether the
// stream goes on.
func (st *backendStream) flush(b *plane.Backend) bool {
	var items []streamItem
	for _, h := range b.StatusHistory {
		rank := h.Status.Rank()
		if rank <= st.rank {
			continue
		}
		ev := statusEvent{ID: b.ID, Status: h.Status, Time: h.Time}
		if h.Status == plane.StatusTerminated {
			ev.TerminationReason, ev.ExitCode, ev.Error = b.TerminationReason, b.ExitCode, b.Error
		}
		order := 0
		if rank > plane.StatusReady.Rank() {
			order = 2
		}
		items = append(items, streamItem{at: h.Time, order: order, rank: rank, event: ev})
	}
	for {
		evs, err := st.s.core.BackendEvents(st.ctx, st.id, st.readID, eventsPage)
		if plane.ErrorCodeOf(err) == plane.EUNAVAILABLE {
			break // a controller without an event log: statuses only
		}
		if err != nil {
			if st.ctx.Err() == nil {
				st.s.Logger.Error("backend events: read the event log", "backend", st.id, "err", err)
			}
			return false
		}
		for _, ev := range evs {
			st.readID = ev.ID
			if ev.Type == plane.ProjectEventUserJoined || ev.Type == plane.ProjectEventUserLeft {
				items = append(items, streamItem{at: ev.Time, order: 1, conn: ev})
			}
		}
		if len(evs) < eventsPage {
			break
		}
	}
	slices.SortStableFunc(items, func(a, b streamItem) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.order, b.order)
	})
	for _, it := range items {
		var name string
		var data []byte
		if it.conn != nil {
			st.logID = it.conn.ID
			name = string(it.conn.Type)
			data, _ = json.Marshal(it.conn)
		} else {
			st.rank = it.rank
			name = "status"
			data, _ = json.Marshal(it.event)
		}
		if err := st.out.sendID(st.eventID(), name, string(data)); err != nil {
			return false
		}
	}
	return true
}
