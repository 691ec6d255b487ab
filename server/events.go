package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/api"
)

// The project's event log over the API: GET /api/v1/events streams it as
// Server-Sent Events (each event's id is its log id, its name the type,
// its data the event's JSON, the body its webhooks get), and GET
// /api/v1/backends/{id}/connections says who is connected now.
//
// A stream subscribes to the log's announcements first, then reads the log
// from the store after the client's last id (Last-Event-ID, or ?after=),
// then reads again after each announcement: the store is the one source,
// read in id order from the last id sent, so the client gets every event
// once, whichever controller logged it and however the announcements
// arrive. The log keeps a project's latest plane.MaxProjectEvents: a
// client that was away longer gets those, from the oldest kept.

// eventsPage is how many events one read of the log returns.
const eventsPage = 500

// eventsRecheck is how often a stream reads the log without an
// announcement: one lost on the way (a controller that died between
// storing an event and announcing it, NATS cut off, a stream too slow for
// its bus subscription) delays events by at most that.
const eventsRecheck = 5 * time.Second

// lastEventID reads where a client's stream resumes: the Last-Event-ID an
// EventSource sends when it reconnects, else ?after=, else the start of
// the kept log.
func lastEventID(c echo.Context) (int64, error) {
	field, v := "Last-Event-ID", c.Request().Header.Get("Last-Event-ID")
	if v == "" {
		field, v = "after", c.QueryParam("after")
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, plane.FieldErrorf(field, "must be an event id, a whole number (got %q)", v)
	}
	return n, nil
}

func (s *Server) handleProjectEvents(c echo.Context) error {
	ctx := c.Request().Context()
	pid := token(c).ProjectID
	after, err := lastEventID(c)
	if err != nil {
		return err
	}
	ch, cancel := s.Bus.Subscribe(plane.TopicProjectLog(pid))
	defer cancel()
	// The first read comes before the answer's head, so that a store that
	// fails gets an error answer rather than an empty stream.
	first, err := s.core.ProjectEvents(ctx, pid, after, eventsPage)
	if err != nil {
		return err
	}
	out := openSSE(c)
	read := func(after int64) ([]*plane.ProjectEvent, error) {
		return s.core.ProjectEvents(ctx, pid, after, eventsPage)
	}
	send := func(ev *plane.ProjectEvent) error {
		data, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		return out.sendID(strconv.FormatInt(ev.ID, 10), string(ev.Type), string(data))
	}
	// ?follow=false: the kept log after the client's last id, then the
	// end of the stream (for a client that reads what happened and
	// exits, such as plane events without -f).
	var done func() bool
	if c.QueryParam("follow") == "false" {
		done = func() bool { return true }
	}
	s.tailLog(ctx, out, ch, first, after, read, send, done)
	return nil
}

// tailLog sends a log's entries from first on, then those after each
// announcement on ch (or every eventsRecheck), in id order, each once,
// until the client leaves, the bus closes, sending fails, or done (when
// set) says the stream is over.
func (s *Server) tailLog(ctx context.Context, out *sse, ch <-chan plane.Event, first []*plane.ProjectEvent, after int64,
	read func(after int64) ([]*plane.ProjectEvent, error), send func(*plane.ProjectEvent) error, done func() bool) {
	next := first // nil: read it
	catchUp := func() bool {
		for {
			if next == nil {
				var err error
				if next, err = read(after); err != nil {
					if ctx.Err() == nil {
						s.Logger.Error("read the event log", "err", err)
					}
					return false
				}
			}
			page := next
			next = nil
			for _, ev := range page {
				if err := send(ev); err != nil {
					return false
				}
				after = ev.ID
			}
			if len(page) < eventsPage {
				return true
			}
		}
	}
	if !catchUp() || done != nil && done() {
		return
	}
	out.follow(ctx, ch, eventsRecheck, func(plane.Event) (bool, error) {
		drain(ch) // one read serves every announcement so far
		return !catchUp() || done != nil && done(), nil
	})
}

// drain empties ch of what it holds now.
func drain(ch <-chan plane.Event) {
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

func (s *Server) handleBackendConnections(c echo.Context) error {
	b, err := s.findBackend(c)
	if err != nil {
		return err
	}
	conns, err := s.core.Connections(c.Request().Context(), b)
	if err != nil {
		return err
	}
	out := api.Connections{Connections: make([]api.Connection, 0, len(conns))}
	for _, cn := range conns {
		out.Connections = append(out.Connections, api.Connection{User: cn.User, Since: cn.Since, Connections: cn.Connections})
	}
	return c.JSON(http.StatusOK, out)
}
