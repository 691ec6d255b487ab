package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"plane"
	"plane/api"
)

// apiEvent is one event of an API stream.
type apiEvent struct {
	id, event, data string
}

// apiStreamEvents opens an API event stream with a token (and a
// Last-Event-ID unless empty) and returns its events; the channel closes
// when the stream ends.
func (d *dash) apiStreamEvents(token, path, lastEventID string) <-chan apiEvent {
	d.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { resp.Body.Close() })
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		d.t.Fatalf("stream %s: %d %q", path, resp.StatusCode, ct)
	}
	events := make(chan apiEvent, 100)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Split(scanSSELines)
		var ev apiEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.data != "" {
					select {
					case events <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = apiEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[6:]
			}
		}
	}()
	return events
}

// apiStream opens an event stream; each call of what it returns is the
// next event (the test fails when none comes within 5 s or the stream
// ends).
func (d *dash) apiStream(token, path, lastEventID string) func() apiEvent {
	d.t.Helper()
	events := d.apiStreamEvents(token, path, lastEventID)
	return func() apiEvent {
		d.t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				d.t.Fatal("the stream ended")
			}
			return ev
		case <-time.After(5 * time.Second):
			d.t.Fatal("no event within 5 s")
		}
		return apiEvent{}
	}
}

// eventBody is the data of a project event.
type eventBody struct {
	ID        int64                  `json:"id"`
	Type      plane.ProjectEventType `json:"type"`
	Timestamp time.Time              `json:"timestamp"`
	Data      json.RawMessage        `json:"data"`
}

func parseEvent(t *testing.T, ev apiEvent) eventBody {
	t.Helper()
	var b eventBody
	if err := json.Unmarshal([]byte(ev.data), &b); err != nil {
		t.Fatalf("event %+v: %v", ev, err)
	}
	if strconv.FormatInt(b.ID, 10) != ev.id || string(b.Type) != ev.event {
		t.Fatalf("event id %q name %q, data says %d %s", ev.id, ev.event, b.ID, b.Type)
	}
	return b
}

// GET /api/v1/events replays what the client missed after its
// Last-Event-ID (or ?after=), exactly, then the live events, each once.
func TestProjectEventsStream(t *testing.T) {
	t.Parallel()
	d := newDash(t, withHooks(fastHooks, false))
	d.fakeDrone("d1")
	tok := d.apiToken("stream", plane.AllScopes...)
	otherTok := d.apiToken("quiet", plane.AllScopes...)
	quiet := d.apiStream(otherTok, "/api/v1/events", "")

	b1 := d.spawnVia(tok)
	b2 := d.spawnVia(tok)
	d.apply(plane.BackendEvent{BackendID: b1.ID, DroneID: "d1", Status: plane.StatusLoading})
	d.apply(plane.BackendEvent{BackendID: b1.ID, Status: plane.StatusReady})
	d.apply(plane.BackendEvent{BackendID: b2.ID, Status: plane.StatusTerminated, Reason: plane.ReasonFailed, Error: "pull"})

	next := d.apiStream(tok, "/api/v1/events", "")
	var all []eventBody
	for range 5 {
		all = append(all, parseEvent(t, next()))
	}
	want := []string{b1.ID + " scheduled", b2.ID + " scheduled", b1.ID + " loading", b1.ID + " ready", b2.ID + " terminated failed"}
	for i, ev := range all {
		var data plane.BackendStatusData
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		got := data.BackendID + " " + string(data.Status)
		if data.Reason != "" {
			got += " " + string(data.Reason)
		}
		if ev.Type != plane.ProjectEventBackendStatus || got != want[i] {
			t.Errorf("event %d: %s %s, want %s", i, ev.Type, got, want[i])
		}
		if i > 0 && ev.ID <= all[i-1].ID {
			t.Errorf("ids not rising: %d after %d", ev.ID, all[i-1].ID)
		}
	}

	for _, resume := range []struct{ name, path, lastEventID string }{
		{"Last-Event-ID", "/api/v1/events", strconv.FormatInt(all[1].ID, 10)},
		{"?after=", "/api/v1/events?after=" + strconv.FormatInt(all[1].ID, 10), ""},
		{"Last-Event-ID over ?after=", "/api/v1/events?after=0", strconv.FormatInt(all[1].ID, 10)},
	} {
		t.Run("resume with "+resume.name, func(t *testing.T) {
			again := d.apiStream(tok, resume.path, resume.lastEventID)
			for _, w := range all[2:] {
				if got := parseEvent(t, again()); got.ID != w.ID || string(got.Data) != string(w.Data) {
					t.Fatalf("replayed %+v, want %+v", got, w)
				}
			}
		})
	}

	// Live: the next events, once each, on a stream that replayed and on
	// one that resumed.
	resumed := d.apiStream(tok, "/api/v1/events", strconv.FormatInt(all[3].ID, 10))
	if got := parseEvent(t, resumed()); got.ID != all[4].ID {
		t.Fatalf("resumed with %d, want %d", got.ID, all[4].ID)
	}
	d.apply(plane.BackendEvent{BackendID: b1.ID, Status: plane.StatusTerminating})
	d.apply(plane.BackendEvent{BackendID: b1.ID, Status: plane.StatusTerminated, Reason: plane.ReasonRequested})
	for _, stream := range []func() apiEvent{next, resumed} {
		first, second := parseEvent(t, stream()), parseEvent(t, stream())
		if first.ID <= all[4].ID || second.ID <= first.ID {
			t.Fatalf("live ids %d, %d after %d", first.ID, second.ID, all[4].ID)
		}
		var data plane.BackendStatusData
		_ = json.Unmarshal(second.Data, &data)
		if data.Status != plane.StatusTerminated || data.BackendID != b1.ID {
			t.Errorf("the last live event %s", second.Data)
		}
	}

	t.Run("another project's stream gets nothing of this one", func(t *testing.T) {
		// Its own event, after all of the other's: the first it gets.
		b := d.spawnVia(otherTok)
		got := parseEvent(t, quiet())
		var data plane.BackendStatusData
		if err := json.Unmarshal(got.Data, &data); err != nil || data.BackendID != b.ID {
			t.Fatalf("the quiet project's first event %+v (%v), want its backend %s", got, err, b.ID)
		}
	})

	t.Run("follow=false ends after the kept events", func(t *testing.T) {
		once := d.apiStreamEvents(tok, "/api/v1/events?follow=false&after="+strconv.FormatInt(all[2].ID, 10), "")
		var ids []int64
		timeout := time.After(5 * time.Second)
	read:
		for {
			select {
			case ev, ok := <-once:
				if !ok {
					break read
				}
				ids = append(ids, parseEvent(t, ev).ID)
			case <-timeout:
				t.Fatalf("the stream has not ended 5 s on (sent %v)", ids)
			}
		}
		// all[3], all[4] and the two live ones above; then the end.
		if len(ids) != 4 || ids[0] != all[3].ID || ids[1] != all[4].ID {
			t.Errorf("follow=false sent %v, want %d, %d and the two after them, then ended", ids, all[3].ID, all[4].ID)
		}
	})

	t.Run("a bad Last-Event-ID", func(t *testing.T) {
		for _, c := range []struct{ header, query, field string }{
			{"abc", "", "Last-Event-ID"},
			{"-1", "", "Last-Event-ID"},
			{"", "x", "after"},
		} {
			req, _ := http.NewRequest(http.MethodGet, d.url+"/api/v1/events?after="+c.query, nil)
			if c.query == "" {
				req.URL.RawQuery = ""
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Last-Event-ID", c.header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e api.ErrorResponse
			_ = json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || e.Error.Field != c.field {
				t.Errorf("%+v: %d %+v", c, resp.StatusCode, e)
			}
		}
	})
}

// Who is connected to a backend, from its drone's joins and leaves, and
// how many connections each holds from its stats; the backend's own event
// stream carries the joins and leaves, resumable.
func TestBackendConnections(t *testing.T) {
	t.Parallel()
	d := newDash(t, withHooks(fastHooks, false))
	d.fakeDrone("d1")
	tok := d.apiToken("conns", plane.AllScopes...)
	otherTok := d.apiToken("elsewhere", plane.AllScopes...)
	b := d.spawnVia(tok)
	t0 := time.Now().Truncate(time.Millisecond)
	d.apply(plane.BackendEvent{BackendID: b.ID, DroneID: "d1", Status: plane.StatusReady, Time: t0})
	join := func(user string, joined bool, at time.Time) {
		users := 0
		if joined {
			users = 1
		}
		d.apply(plane.BackendEvent{BackendID: b.ID, Status: plane.StatusReady, Time: at, Connection: &plane.ConnectionChange{User: user, Joined: joined, Users: users}})
	}
	join("ada", true, t0.Add(time.Second))
	join("bob", true, t0.Add(2*time.Second))

	type connectionsJSON struct {
		Connections []struct {
			User        string    `json:"user"`
			Since       time.Time `json:"since"`
			Connections int       `json:"connections"`
		} `json:"connections"`
	}
	var conns connectionsJSON
	if st := d.apiJSON(tok, http.MethodGet, "/api/v1/backends/"+b.ID+"/connections", "", &conns); st != http.StatusOK ||
		len(conns.Connections) != 2 || conns.Connections[0].User != "ada" || conns.Connections[1].User != "bob" ||
		!conns.Connections[0].Since.Equal(t0.Add(time.Second)) || conns.Connections[0].Connections != 1 {
		t.Fatalf("connections: %d %+v", st, conns)
	}
	// The drone's stats say how many connections each holds.
	stats, _ := json.Marshal(plane.BackendStats{BackendID: b.ID, Time: time.Now(), Connections: 4,
		Users: []plane.UserConnections{{User: "ada", Connections: 3, Since: t0.Add(time.Second)}, {User: "bob", Connections: 1}}})
	if err := d.nc.Publish(plane.SubjectBackendStats(b.ID), stats); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the stats' counts", func() bool {
		d.apiJSON(tok, http.MethodGet, "/api/v1/backends/"+b.ID+"/connections", "", &conns)
		return len(conns.Connections) == 2 && conns.Connections[0].Connections == 3
	})

	t.Run("another project's backend", func(t *testing.T) {
		for _, path := range []string{"/api/v1/backends/" + b.ID + "/connections", "/api/v1/backends/" + b.ID + "/events"} {
			if st, code := d.apiCall(otherTok, http.MethodGet, path); st != http.StatusNotFound || code != plane.ENOTFOUND {
				t.Errorf("%s: %d %s", path, st, code)
			}
		}
	})

	// The backend's stream: its statuses (ids as before), then the joins,
	// whose ids carry the last status number and their log id.
	next := d.apiStream(tok, "/api/v1/backends/"+b.ID+"/events", "")
	var got []apiEvent
	for range 4 {
		got = append(got, next())
	}
	if got[0].id != "1" || got[0].event != "status" || got[1].id != "5" || got[1].event != "status" {
		t.Fatalf("statuses %+v", got[:2])
	}
	var joins []eventBody
	for i, ev := range got[2:] {
		body := parseEventBody(t, ev)
		if ev.event != "backend.user_joined" || ev.id != "5."+strconv.FormatInt(body.ID, 10) {
			t.Errorf("join %d: %+v", i, ev)
		}
		joins = append(joins, body)
	}
	var data plane.ConnectionData
	if err := json.Unmarshal(joins[1].Data, &data); err != nil || data.User != "bob" || data.Users != 2 || data.BackendID != b.ID {
		t.Errorf("bob's join %s", joins[1].Data)
	}

	// Resumed after ada's join: bob's, then the live leave.
	resumed := d.apiStream(tok, "/api/v1/backends/"+b.ID+"/events", got[2].id)
	if ev := resumed(); ev.id != got[3].id || ev.event != "backend.user_joined" {
		t.Fatalf("resumed with %+v, want %+v", ev, got[3])
	}
	join("ada", false, t0.Add(3*time.Second))
	logID := func(id string) int64 {
		t.Helper()
		rank, n, ok := strings.Cut(id, ".")
		v, err := strconv.ParseInt(n, 10, 64)
		if rank != "5" && rank != "7" || !ok || err != nil {
			t.Fatalf("id %q", id)
		}
		return v
	}
	for _, stream := range []func() apiEvent{next, resumed} {
		ev := stream()
		if ev.event != "backend.user_left" || !strings.HasPrefix(ev.id, "5.") || logID(ev.id) <= logID(got[3].id) {
			t.Fatalf("live leave %+v", ev)
		}
	}
	// Stopping it: bob leaves with it, then the statuses; the stream ends.
	d.apply(plane.BackendEvent{BackendID: b.ID, Status: plane.StatusTerminated, Reason: plane.ReasonRequested, Time: t0.Add(4 * time.Second)})
	left, done := next(), next()
	if left.event != "backend.user_left" || !strings.Contains(left.data, `"user":"bob"`) || done.event != "status" || !strings.HasPrefix(done.id, "7.") {
		t.Fatalf("the end: %+v then %+v", left, done)
	}
	if st := d.apiJSON(tok, http.MethodGet, "/api/v1/backends/"+b.ID+"/connections", "", &conns); st != http.StatusOK || len(conns.Connections) != 0 {
		t.Errorf("connections of a terminated backend: %d %+v", st, conns)
	}

	t.Run("a bad Last-Event-ID", func(t *testing.T) {
		for _, v := range []string{"x", "5.x", "-1", "5.-2"} {
			req, _ := http.NewRequest(http.MethodGet, d.url+"/api/v1/backends/"+b.ID+"/events", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Last-Event-ID", v)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%q: %d", v, resp.StatusCode)
			}
		}
	})
}

// parseEventBody reads a join's or a leave's data, whose event name is its
// type and whose id is not the log id alone.
func parseEventBody(t *testing.T, ev apiEvent) eventBody {
	t.Helper()
	var b eventBody
	if err := json.Unmarshal([]byte(ev.data), &b); err != nil {
		t.Fatalf("event %+v: %v", ev, err)
	}
	if string(b.Type) != ev.event {
		t.Fatalf("event %q carries %s", ev.event, b.Type)
	}
	return b
}
