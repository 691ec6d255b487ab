package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"plane"
)

// The client's side of Server-Sent Events, as the HTML standard's "event
// stream interpretation" reads them: lines end at "\r\n", "\n" or "\r"; a
// line starting with ':' is a comment; "field: value" (one space after the
// colon dropped), or a whole line as a field with an empty value; data
// lines joined with "\n"; a blank line dispatches the event, unless it has
// no data; an event cut short by the end of the stream is dropped.
// Unknown fields, and a retry that is not all digits, are ignored.

// sseEvent is one event of a stream.
type sseEvent struct {
	// ID is the stream's last event ID when the event was dispatched: the
	// last id: field so far, kept across events that set none.
	ID    string
	Event string // "message" when the event names none
	Data  string
}

// maxSSELine bounds a line, and maxSSEData the data of one event, so that
// a broken server cannot make the client hold the whole stream.
const (
	maxSSELine = 1 << 20
	maxSSEData = 4 << 20
)

var (
	errSSELineTooLong = errors.New("event stream: line longer than 1 MiB")
	errSSEDataTooLong = errors.New("event stream: event data longer than 4 MiB")
)

// sseReader reads the events of a stream one by one.
type sseReader struct {
	br      *bufio.Reader
	started bool // past the first line, whose byte order mark is dropped
	skipLF  bool // the last line ended at '\r': a '\n' next belongs to it
	lastID  string
	// retry is the reconnection time the stream asked for; 0: none.
	retry time.Duration
}

func newSSEReader(r io.Reader) *sseReader { return &sseReader{br: bufio.NewReader(r)} }

// next returns the next event; io.EOF once the stream has ended (an event
// it cut short is dropped).
func (r *sseReader) next() (sseEvent, error) {
	var data strings.Builder
	event := ""
	for {
		line, err := r.readLine()
		if err != nil {
			return sseEvent{}, err
		}
		if !r.started {
			r.started = true
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		if line == "" {
			if data.Len() == 0 {
				event = "" // nothing to dispatch: forget the event's name too
				continue
			}
			if event == "" {
				event = "message"
			}
			return sseEvent{ID: r.lastID, Event: event, Data: strings.TrimSuffix(data.String(), "\n")}, nil
		}
		if line[0] == ':' {
			continue // a comment, such as the server's keep-alive
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			event = value
		case "data":
			if data.Len()+len(value)+1 > maxSSEData {
				return sseEvent{}, errSSEDataTooLong
			}
			data.WriteString(value)
			data.WriteByte('\n')
		case "id":
			if !strings.ContainsRune(value, 0) {
				r.lastID = value
			}
		case "retry":
			// ParseUint takes digits only: no sign, no spaces.
			if ms, err := strconv.ParseUint(value, 10, 32); err == nil {
				r.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// readLine returns the next line without its end. It reads a byte at a
// time from the buffer: a line may end at '\r', and the '\n' of a "\r\n"
// may come in a later read, so lines cannot simply be cut at '\n'.
func (r *sseReader) readLine() (string, error) {
	var line []byte
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			return "", err // io.EOF included: a line without its end is dropped
		}
		if r.skipLF {
			r.skipLF = false
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\r':
			r.skipLF = true
			return string(line), nil
		case '\n':
			return string(line), nil
		}
		if len(line) >= maxSSELine {
			return "", errSSELineTooLong
		}
		line = append(line, c)
	}
}

// Reconnection delays of Events after its stream was cut: the server's
// retry: when it sent one, else eventsRetry, doubling after each failed
// attempt up to eventsMaxRetry.
const (
	eventsRetry    = time.Second
	eventsMaxRetry = 30 * time.Second
)

// Events follows the project's event log (GET /api/v1/events): it calls fn
// with each event after the one numbered after (0: from the oldest kept),
// in order, each once, until ctx is done (nil) or fn fails (its error).
// The event's BackendID is filled in from its data.
//
// An error before the stream starts (a bad token, say) is returned. A
// stream cut later (the controller restarted, the network dropped) is
// resumed with Last-Event-ID, as a browser's EventSource does, retrying
// until ctx is done; an API error on the way back (the token revoked) or
// an event that does not decode ends it with that error.
func (c *Client) Events(ctx context.Context, after int64, fn func(plane.ProjectEvent) error) error {
	last := after
	resp, err := c.openEvents(ctx, "/api/v1/events?after="+strconv.FormatInt(after, 10), nil)
	if err != nil {
		return err
	}
	delay := eventsRetry
	for {
		retry, err := readProjectEvents(resp.Body, &last, fn)
		resp.Body.Close()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if retry > 0 {
			delay = retry
		}
		for wait := delay; ; wait = min(2*wait, eventsMaxRetry) {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			h := http.Header{"Last-Event-ID": {strconv.FormatInt(last, 10)}}
			resp, err = c.openEvents(ctx, "/api/v1/events", h)
			if ctx.Err() != nil {
				if resp != nil {
					resp.Body.Close()
				}
				return nil
			}
			var pe *plane.Error
			if errors.As(err, &pe) || errors.Is(err, errNotEventStream) {
				return err
			}
			if err == nil {
				break
			}
		}
	}
}

// EventsSoFar calls fn with each of the project's kept events after
// after, in order, and returns once the controller has sent them all
// (?follow=false): what happened until now, without following.
func (c *Client) EventsSoFar(ctx context.Context, after int64, fn func(plane.ProjectEvent) error) error {
	last := after
	resp, err := c.openEvents(ctx, "/api/v1/events?follow=false&after="+strconv.FormatInt(after, 10), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := readProjectEvents(resp.Body, &last, fn); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

var errNotEventStream = errors.New("the answer is not an event stream (text/event-stream)")

// openEvents starts an event stream.
func (c *Client) openEvents(ctx context.Context, path string, header http.Header) (*http.Response, error) {
	if header == nil {
		header = http.Header{}
	}
	header.Set("Accept", "text/event-stream")
	resp, err := c.send(ctx, http.MethodGet, path, nil, header)
	if err != nil {
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %w, got %q", path, errNotEventStream, resp.Header.Get("Content-Type"))
	}
	return resp, nil
}

// readProjectEvents hands fn the events of one stream past *last, moving
// *last on, until the stream ends (a nil error: the caller resumes) or an
// event or fn fails. It returns the retry the stream asked for.
func readProjectEvents(body io.Reader, last *int64, fn func(plane.ProjectEvent) error) (time.Duration, error) {
	r := newSSEReader(body)
	for {
		ev, err := r.next()
		if errors.Is(err, errSSELineTooLong) || errors.Is(err, errSSEDataTooLong) {
			return r.retry, err // resuming would meet it again
		}
		if err != nil {
			// The stream ended or was cut: either way, resume.
			return r.retry, nil
		}
		pe, err := decodeProjectEvent(ev)
		if err != nil {
			return r.retry, err
		}
		if pe.ID <= *last {
			continue // sent before: a resumed stream never repeats one
		}
		*last = pe.ID
		if err := fn(pe); err != nil {
			return r.retry, err
		}
	}
}

// decodeProjectEvent reads an event of GET /api/v1/events: its data is the
// event's JSON, its id the event's number.
func decodeProjectEvent(ev sseEvent) (plane.ProjectEvent, error) {
	var pe plane.ProjectEvent
	if err := json.Unmarshal([]byte(ev.Data), &pe); err != nil {
		return pe, fmt.Errorf("event %q (id %q): decode its data: %w", ev.Event, ev.ID, err)
	}
	if pe.ID == 0 {
		id, err := strconv.ParseInt(ev.ID, 10, 64)
		if err != nil || id <= 0 {
			return pe, fmt.Errorf("event %q: no event id (id %q)", ev.Event, ev.ID)
		}
		pe.ID = id
	}
	if pe.Type == "" {
		pe.Type = plane.ProjectEventType(ev.Event)
	}
	var d struct {
		BackendID string `json:"backend_id"`
	}
	if json.Unmarshal(pe.Data, &d) == nil {
		pe.BackendID = d.BackendID
	}
	return pe, nil
}
