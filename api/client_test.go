package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/api"
)

// The client against the real API is tested in cmd/plane (the command line
// drives a real controller); these cases cover what a server can answer
// that no real one does.

func TestNewClient(t *testing.T) {
	for _, tt := range []struct {
		url, token string
		ok         bool
	}{
		{"http://127.0.0.1:8080", "t", true},
		{"https://plane.example/", "t", true},
		{"http://127.0.0.1:8080", "", false},
		{"127.0.0.1:8080", "t", false},
		{"ftp://plane.example", "t", false},
		{"http://", "t", false},
		{"http://%zz", "t", false},
	} {
		if _, err := api.NewClient(tt.url, tt.token, nil); (err == nil) != tt.ok {
			t.Errorf("NewClient(%q, %q): %v, want ok %v", tt.url, tt.token, err, tt.ok)
		}
	}
}

func TestClientErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		body   string
		want   *plane.Error // nil: a plain error naming the status
	}{
		{"API error", 404, `{"error":{"code":"not_found","message":"backend \"x\" not found"}}`,
			&plane.Error{Code: plane.ENOTFOUND, Message: `backend "x" not found`}},
		{"field error", 400, `{"error":{"code":"invalid","message":"must be positive","field":"max_idle_seconds"}}`,
			&plane.Error{Code: plane.EINVALID, Message: "must be positive", Field: "max_idle_seconds"}},
		{"not JSON", 502, `<html>bad gateway</html>`, nil},
		{"empty message", 500, `{"error":{"code":"internal"}}`, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer tok" {
					t.Errorf("Authorization %q", r.Header.Get("Authorization"))
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c, err := api.NewClient(srv.URL, "tok", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Backend(context.Background(), "x")
			var pe *plane.Error
			switch {
			case tt.want == nil && err == nil:
				t.Fatal("no error")
			case tt.want == nil && errors.As(err, &pe):
				t.Fatalf("got API error %v from a body that is none", pe)
			case tt.want != nil && (!errors.As(err, &pe) || *pe != *tt.want):
				t.Fatalf("err = %#v, want %#v", err, tt.want)
			}
		})
	}
}

// recorded is one request a test server got.
type recorded struct {
	method, path, query, body string
}

// recordingServer answers every request with status and body, recording
// it on the channel.
func recordingServer(t *testing.T, status int, body string) (*api.Client, <-chan recorded) {
	t.Helper()
	got := make(chan recorded, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		got <- recorded{r.Method, r.URL.Path, r.URL.RawQuery, string(data)}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	c, err := api.NewClient(srv.URL, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, got
}

// Each call sends its method, path and body, and decodes the answer.
func TestClientCalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name         string
		status       int
		answer       string
		call         func(c *api.Client) (any, error)
		want         recorded
		wantAnswered any
	}{
		{"connections", 200, `{"connections":[{"user":"ada","since":"2025-01-02T03:04:05Z","connections":2}]}`,
			func(c *api.Client) (any, error) { return c.Connections(ctx, "k3v9") },
			recorded{"GET", "/api/v1/backends/k3v9/connections", "", ""},
			[]api.Connection{{User: "ada", Since: at, Connections: 2}}},
		{"disconnect a user", 204, "",
			func(c *api.Client) (any, error) { return nil, c.Disconnect(ctx, "k3v9", "ada", false) },
			recorded{"POST", "/api/v1/backends/k3v9/disconnect", "", `{"user":"ada"}`}, nil},
		{"disconnect the users without a name", 204, "",
			func(c *api.Client) (any, error) { return nil, c.Disconnect(ctx, "k3v9", "", false) },
			recorded{"POST", "/api/v1/backends/k3v9/disconnect", "", `{"user":""}`}, nil},
		{"disconnect everyone", 204, "",
			func(c *api.Client) (any, error) { return nil, c.Disconnect(ctx, "k3v9", "ignored", true) },
			recorded{"POST", "/api/v1/backends/k3v9/disconnect", "", `{}`}, nil},
		{"keep alive", 200, `{"id":"k3v9","keep_alive_until":"2025-01-02T03:04:05Z","keep_alive_by":"ci"}`,
			func(c *api.Client) (any, error) {
				b, err := c.KeepAlive(ctx, "k3v9", 600)
				return [2]any{b.KeepAliveUntil.Equal(at), b.KeepAliveBy}, err
			},
			recorded{"POST", "/api/v1/backends/k3v9/keepalive", "", `{"seconds":600}`}, [2]any{true, "ci"}},
		{"create a webhook", 201, `{"id":3,"url":"https://x.example/h","events":["backend.status"],"secret":"whsec_abc"}`,
			func(c *api.Client) (any, error) {
				w, err := c.CreateWebhook(ctx, "https://x.example/h", []plane.ProjectEventType{plane.ProjectEventBackendStatus})
				return [2]any{w.ID, w.Secret}, err
			},
			recorded{"POST", "/api/v1/webhooks", "", `{"url":"https://x.example/h","events":["backend.status"]}`}, [2]any{int64(3), "whsec_abc"}},
		{"create a webhook of every event", 201, `{"id":3}`,
			func(c *api.Client) (any, error) {
				w, err := c.CreateWebhook(ctx, "https://x.example/h", nil)
				return w.ID, err
			},
			recorded{"POST", "/api/v1/webhooks", "", `{"url":"https://x.example/h","events":null}`}, int64(3)},
		{"list webhooks", 200, `{"webhooks":[{"id":1,"url":"u","events":[],"disabled_reason":"gone"}]}`,
			func(c *api.Client) (any, error) { return c.Webhooks(ctx) },
			recorded{"GET", "/api/v1/webhooks", "", ""},
			[]api.Webhook{{ID: 1, URL: "u", Events: []plane.ProjectEventType{}, DisabledReason: "gone"}}},
		{"one webhook", 200, `{"id":9,"url":"u"}`,
			func(c *api.Client) (any, error) { w, err := c.Webhook(ctx, 9); return w.URL, err },
			recorded{"GET", "/api/v1/webhooks/9", "", ""}, "u"},
		{"delete a webhook", 204, "",
			func(c *api.Client) (any, error) { return nil, c.DeleteWebhook(ctx, 9) },
			recorded{"DELETE", "/api/v1/webhooks/9", "", ""}, nil},
		{"deliveries", 200, `{"deliveries":[{"id":4,"status":"failed","attempts":[{"time":"2025-01-02T03:04:05Z","status_code":500,"duration_ms":12}]}]}`,
			func(c *api.Client) (any, error) { return c.Deliveries(ctx, 9, 20) },
			recorded{"GET", "/api/v1/webhooks/9/deliveries", "limit=20", ""},
			[]api.Delivery{{ID: 4, Status: plane.DeliveryFailed, Attempts: []api.DeliveryAttempt{{Time: at, StatusCode: 500, DurationMS: 12}}}}},
		{"deliveries, the server's limit", 200, `{"deliveries":[]}`,
			func(c *api.Client) (any, error) { return c.Deliveries(ctx, 9, 0) },
			recorded{"GET", "/api/v1/webhooks/9/deliveries", "", ""}, []api.Delivery{}},
		{"retry a delivery", 202, `{"id":4,"status":"pending"}`,
			func(c *api.Client) (any, error) { d, err := c.RetryDelivery(ctx, 9, 4); return d.Status, err },
			recorded{"POST", "/api/v1/webhooks/9/deliveries/4/retry", "", ""}, plane.DeliveryPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, reqs := recordingServer(t, tt.status, tt.answer)
			got, err := tt.call(c)
			if err != nil {
				t.Fatal(err)
			}
			if r := <-reqs; r != tt.want {
				t.Errorf("request %+v, want %+v", r, tt.want)
			}
			if !reflect.DeepEqual(got, tt.wantAnswered) {
				t.Errorf("answer %#v, want %#v", got, tt.wantAnswered)
			}
		})
	}
}

// sseServer serves GET /api/v1/events from streams: the nth request gets
// the nth (the last one again past the end); it records each request's
// Last-Event-ID and after.
type sseServer struct {
	t       *testing.T
	streams []func(w http.ResponseWriter, r *http.Request)
	mu      sync.Mutex
	resumes []string // "after=…" or "Last-Event-ID: …" of each request
}

func (s *sseServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/events" || r.Header.Get("Accept") != "text/event-stream" {
		s.t.Errorf("request %s %s (Accept %q)", r.Method, r.URL, r.Header.Get("Accept"))
	}
	s.mu.Lock()
	n := len(s.resumes)
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		s.resumes = append(s.resumes, "Last-Event-ID: "+v)
	} else {
		s.resumes = append(s.resumes, r.URL.RawQuery)
	}
	s.mu.Unlock()
	s.streams[min(n, len(s.streams)-1)](w, r)
}

func (s *sseServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.resumes)
}

// sends answers an event stream of text, then ends it (or, with hold,
// keeps it open until the client leaves).
func sends(text string, hold bool) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte(text))
		w.(http.Flusher).Flush()
		if hold {
			<-r.Context().Done()
		}
	}
}

func answers(status int, contentType, body string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		w.Write([]byte(body))
	}
}

// projectEvent is one event of GET /api/v1/events as the server sends it.
func projectEvent(id int, typ, backend string) string {
	return fmt.Sprintf("id: %d\nevent: %s\ndata: {\"id\":%d,\"type\":%q,\"timestamp\":\"2025-01-02T03:04:05Z\",\"data\":{\"backend_id\":%q}}\n\n",
		id, typ, id, typ, backend)
}

func TestClientEvents(t *testing.T) {
	t.Parallel()
	errEnough := errors.New("enough")
	unauthorized := `{"error":{"code":"unauthorized","message":"token revoked"}}`
	tests := []struct {
		name     string
		after    int64
		streams  []func(w http.ResponseWriter, r *http.Request)
		stopAt   int      // fn says enough after this many events (0: never, the test's time runs out)
		want     []string // "id type backend" of each event
		requests []string
		err      string // "" no error; else a part of it
	}{
		{"events, comments and keep-alives", 0,
			[]func(http.ResponseWriter, *http.Request){sends(": keep-alive\n\n"+projectEvent(1, "backend.status", "b1")+": x\n"+projectEvent(2, "backend.user_joined", "b1"), true)},
			2, []string{"1 backend.status b1", "2 backend.user_joined b1"}, []string{"after=0"}, "enough"},
		{"from after", 41,
			[]func(http.ResponseWriter, *http.Request){sends(projectEvent(42, "backend.status", "b2"), true)},
			1, []string{"42 backend.status b2"}, []string{"after=41"}, "enough"},
		{"a cut stream resumes from the last event, none twice", 0,
			[]func(http.ResponseWriter, *http.Request){
				sends("retry: 10\n"+projectEvent(1, "backend.status", "b1")+projectEvent(2, "backend.status", "b1")+"id: 3\ndata: {\"id\":3", false),
				sends(projectEvent(2, "backend.status", "b1")+projectEvent(3, "backend.user_left", "b1"), true)},
			3, []string{"1 backend.status b1", "2 backend.status b1", "3 backend.user_left b1"},
			[]string{"after=0", "Last-Event-ID: 2"}, "enough"},
		{"reconnects until the server is back", 0,
			[]func(http.ResponseWriter, *http.Request){
				sends("retry: 5\n"+projectEvent(1, "backend.status", "b1"), false),
				answers(502, "text/html", "<html>bad gateway</html>"),
				sends(projectEvent(2, "backend.status", "b1"), true)},
			2, []string{"1 backend.status b1", "2 backend.status b1"},
			[]string{"after=0", "Last-Event-ID: 1", "Last-Event-ID: 1"}, "enough"},
		{"an API error first", 0,
			[]func(http.ResponseWriter, *http.Request){answers(401, "application/json", unauthorized)},
			0, nil, []string{"after=0"}, "token revoked"},
		{"an API error on the way back ends it", 0,
			[]func(http.ResponseWriter, *http.Request){
				sends("retry: 5\n"+projectEvent(7, "backend.status", "b1"), false),
				answers(401, "application/json", unauthorized)},
			0, []string{"7 backend.status b1"}, []string{"after=0", "Last-Event-ID: 7"}, "token revoked"},
		{"not an event stream", 0,
			[]func(http.ResponseWriter, *http.Request){answers(200, "text/html", "<html>login</html>")},
			0, nil, []string{"after=0"}, "not an event stream"},
		{"data that is not an event", 0,
			[]func(http.ResponseWriter, *http.Request){sends("id: 1\nevent: backend.status\ndata: {nope\n\n", true)},
			0, nil, []string{"after=0"}, "decode its data"},
		{"an event without an id", 0,
			[]func(http.ResponseWriter, *http.Request){sends("event: backend.status\ndata: {\"type\":\"backend.status\"}\n\n", true)},
			0, nil, []string{"after=0"}, "no event id"},
		{"the id of the stream when the data has none", 0,
			[]func(http.ResponseWriter, *http.Request){sends("id: 5\nevent: backend.status\ndata: {\"data\":{\"backend_id\":\"b9\"}}\n\n", true)},
			1, []string{"5 backend.status b9"}, []string{"after=0"}, "enough"},
		{"the context's end is no error", 0,
			[]func(http.ResponseWriter, *http.Request){sends(projectEvent(1, "backend.status", "b1"), true)},
			0, []string{"1 backend.status b1"}, []string{"after=0"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ss := &sseServer{t: t, streams: tt.streams}
			srv := httptest.NewServer(ss)
			defer srv.Close()
			c, err := api.NewClient(srv.URL, "tok", nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var got []string
			err = c.Events(ctx, tt.after, func(ev plane.ProjectEvent) error {
				got = append(got, fmt.Sprintf("%d %s %s", ev.ID, ev.Type, ev.BackendID))
				if len(got) == tt.stopAt {
					return errEnough
				}
				return nil
			})
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("err = %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("err = %v, want one with %q", err, tt.err)
			}
			if tt.err == "" && ctx.Err() == nil {
				t.Error("returned before its context ended")
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("events %q, want %q", got, tt.want)
			}
			if r := ss.requests(); !slices.Equal(r, tt.requests) {
				t.Errorf("requests %q, want %q", r, tt.requests)
			}
		})
	}
}

// A stream that the server keeps cutting is resumed again and again until
// the context ends, which is no error.
func TestClientEventsRetriesUntilDone(t *testing.T) {
	t.Parallel()
	ss := &sseServer{t: t, streams: []func(http.ResponseWriter, *http.Request){
		sends("retry: 1\n"+projectEvent(1, "backend.status", "b1"), false),
		sends("", false),
	}}
	srv := httptest.NewServer(ss)
	defer srv.Close()
	c, _ := api.NewClient(srv.URL, "tok", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	n := 0
	if err := c.Events(ctx, 0, func(plane.ProjectEvent) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if r := ss.requests(); n != 1 || len(r) < 3 || r[len(r)-1] != "Last-Event-ID: 1" {
		t.Errorf("%d events, requests %q", n, r)
	}
}
