package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"plane"
)

// sseEvent is one event as an EventSource sees it.
type sseEvent struct {
	Type   string   // "message" when the event names none
	Data   string   // the data fields joined by "\n"
	Fields []string // the names of its fields, in order
}

// events opens an event stream and returns a function that reads its next
// event (failing the test after five seconds). It parses as browsers do:
// a line ends at "\r\n", "\r" or "\n".
func (b *browser) events(path string) func() sseEvent {
	b.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.d.url+path, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { resp.Body.Close() })
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		b.t.Fatalf("stream %s: %d %q", path, resp.StatusCode, ct)
	}
	events := make(chan sseEvent, 10)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Split(scanSSELines)
		var ev sseEvent
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if len(data) > 0 {
					ev.Data = strings.Join(data, "\n")
					if ev.Type == "" {
						ev.Type = "message"
					}
					select {
					case events <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev, data = sseEvent{}, nil
			case strings.HasPrefix(line, ":"): // a comment
			default:
				name, value, _ := strings.Cut(line, ":")
				value = strings.TrimPrefix(value, " ")
				ev.Fields = append(ev.Fields, name)
				switch name {
				case "event":
					ev.Type = value
				case "data":
					data = append(data, value)
				}
			}
		}
	}()
	return func() sseEvent {
		b.t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(5 * time.Second):
			b.t.Fatal("no event")
		}
		return sseEvent{}
	}
}

// scanSSELines is a bufio.SplitFunc for the lines of an event stream.
func scanSSELines(data []byte, atEOF bool) (int, []byte, error) {
	i := bytes.IndexAny(data, "\r\n")
	switch {
	case i < 0 && atEOF && len(data) > 0:
		return len(data), data, nil
	case i < 0:
		return 0, nil, nil
	case data[i] == '\r' && i+1 == len(data) && !atEOF:
		return 0, nil, nil // a "\n" may follow
	case data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n':
		return i + 2, data[:i], nil
	}
	return i + 1, data[:i], nil
}

// A backend's log line is the backend's text: whatever line breaks it
// holds ("\r" included, which an EventSource also reads as the end of a
// line), it arrives as the data of one "log" event and adds no field.
func TestBackendStreamLogLineBreaks(t *testing.T) {
	t.Parallel()
	d, b, pr, base := spawnedProject(t)
	b.post(base+"/backends", url.Values{"image": {"demo"}})
	bs, err := d.db.FindBackends(context.Background(), plane.BackendFilter{ProjectID: &pr.ID})
	if err != nil || len(bs) != 1 {
		t.Fatalf("%d backends, %v", len(bs), err)
	}
	id := bs[0].ID
	tests := []struct {
		name, text string
		want       string // in the event's data
	}{
		{"carriage returns", "a\rdata: injected\revent: x", "a\ndata: injected\nevent: x"},
		{"CRLF", "b\r\nid: 99\r\nretry: 1", "b\nid: 99\nretry: 1"},
		{"line feeds", "c\n\nevent: y", "c\n\nevent: y"},
		{"a blank line ends no event early", "d\r\revent: z\r", "d\n\nevent: z\n"},
	}
	for _, tt := range tests {
		line, _ := json.Marshal(plane.LogLine{BackendID: id, Time: time.Now(), Stream: "stdout", Text: tt.text})
		if err := d.nc.Publish(plane.SubjectBackendLogs(id), line); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	next := b.events(base + "/backends/" + id + "/stream")
	var logs []sseEvent
	for len(logs) < len(tests) {
		ev := next()
		if ev.Type == "status" || ev.Type == "stats" || ev.Type == "connections" {
			continue
		}
		logs = append(logs, ev)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := logs[i]
			if ev.Type != "log" || !strings.Contains(ev.Data, tt.want) {
				t.Fatalf("event %q with data %q, want a log event with %q", ev.Type, ev.Data, tt.want)
			}
			for _, f := range ev.Fields[1:] {
				if f != "data" {
					t.Fatalf("fields %q: want event, then data only", ev.Fields)
				}
			}
		})
	}
}
