package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"plane"
)

// The commands of connections, keep-alives, events and webhooks: their
// arguments and output against a fake API, then end to end against a real
// controller and drone.

// apiCall is one request a fake API got.
type apiCall struct{ method, path, query, body string }

// fakeAnswer is what a fake API answers to one "METHOD path".
type fakeAnswer struct {
	status      int
	contentType string // default application/json
	body        string
}

// fakeRoutes serves routes and records each request; any other request
// fails the test.
func fakeRoutes(t *testing.T, routes map[string]fakeAnswer) (url string, calls func() []apiCall) {
	t.Helper()
	var mu sync.Mutex
	var got []apiCall
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, apiCall{r.Method, r.URL.Path, r.URL.RawQuery, string(body)})
		mu.Unlock()
		a, ok := routes[r.Method+" "+r.URL.Path]
		if !ok {
			t.Errorf("unexpected request %s %s", r.Method, r.URL)
			http.NotFound(w, r)
			return
		}
		ct := a.contentType
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(a.status)
		w.Write([]byte(a.body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []apiCall {
		mu.Lock()
		defer mu.Unlock()
		return append([]apiCall(nil), got...)
	}
}

// runCLI runs a client command in this process.
func runCLI(args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// Mistakes on the command line are usage errors (exit status 2) that say
// what is wrong, found before any request.
func TestCLIEventsUsageErrors(t *testing.T) {
	t.Parallel()
	tok := []string{"--url", "http://127.0.0.1:1", "--token", "t"}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"connections"}, "takes one backend ID"},
		{[]string{"connections", "k3v9", "k3v8"}, "takes one backend ID"},
		{[]string{"connections", "Not_An_ID"}, "holds a character other than"},
		{[]string{"disconnect", "k3v9"}, "name the user to disconnect with --user, or --all"},
		{[]string{"disconnect", "--user", "ada", "--all", "k3v9"}, "--user and --all exclude each other"},
		{[]string{"disconnect", "--all"}, "takes one backend ID"},
		{[]string{"disconnect", "k3v9", "--all"}, "takes one backend ID"}, // flags come first
		{[]string{"keepalive", "k3v9"}, "--seconds is required"},
		{[]string{"keepalive", "--seconds", "0", "k3v9"}, "--seconds is required"},
		{[]string{"keepalive", "--seconds", "ten", "k3v9"}, "invalid value"},
		{[]string{"events", "k3v9"}, "takes no arguments"},
		{[]string{"events", "--after", "-1"}, "--after must be an event id"},
		{[]string{"events", "--after", "x"}, "invalid value"},
		{[]string{"webhooks", "create"}, "takes one webhook URL"},
		{[]string{"webhooks", "create", "--events", "backend.status"}, "takes one webhook URL"},
		{[]string{"webhooks", "delete"}, "takes one webhook ID"},
		{[]string{"webhooks", "delete", "abc"}, "the webhook ID must be a positive number"},
		{[]string{"webhooks", "delete", "0"}, "the webhook ID must be a positive number"},
		{[]string{"webhooks", "deliveries", "1", "2"}, "takes one webhook ID"},
		{[]string{"webhooks", "retry", "1"}, "takes a webhook ID and a delivery ID"},
		{[]string{"webhooks", "retry", "1", "-3"}, "the delivery ID must be a positive number"},
		{[]string{"webhooks", "list", "extra"}, "takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			// The connection flags go right after the (sub)command.
			n := 1
			if tt.args[0] == "webhooks" {
				n = 2
			}
			args := append(append(append([]string{}, tt.args[:n]...), tok...), tt.args[n:]...)
			_, _, err := runCLI(args...)
			if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a usage error with %q", err, tt.want)
			}
		})
	}
	// An unknown subcommand, and --url, which is the controller's, as the
	// webhook's URL.
	if _, _, err := runCLI("webhooks", "nope"); !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), `unknown webhooks command "nope"`) {
		t.Errorf("webhooks nope: %v", err)
	}
	if _, _, err := runCLI("webhooks", "create", "--token", "t", "--url", "https://hooks.example.com/"); err == nil || !strings.Contains(err.Error(), "takes one webhook URL") {
		t.Errorf("webhooks create --url: %v", err)
	}
}

// Each command sends what its flags say and prints the answer.
func TestCLIEventsCommands(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	local := func(t time.Time) string { return t.Local().Format(time.DateTime) }
	backend := `{"id":"k3v9","status":"ready","keep_alive_until":"2025-01-02T03:04:05Z","keep_alive_by":"token ci"}`
	hooks := `{"webhooks":[
		{"id":1,"url":"https://a.example/h","events":[],"created_at":"2025-01-02T03:04:05Z","failing_since":null,"disabled_at":null,"disabled_reason":""},
		{"id":2,"url":"https://b.example/h","events":["backend.status","backend.user_left"],"created_at":"2025-01-02T03:04:05Z","failing_since":"2025-01-02T03:04:05Z","disabled_at":null,"disabled_reason":""},
		{"id":3,"url":"https://c.example/h","events":[],"created_at":"2025-01-02T03:04:05Z","failing_since":"2025-01-02T03:04:05Z","disabled_at":"2025-01-02T03:04:05Z","disabled_reason":"answered 410 Gone"}]}`
	deliveries := `{"deliveries":[
		{"id":9,"webhook_id":2,"event_id":1042,"event_type":"backend.status","status":"pending","created_at":"2025-01-02T03:04:05Z","next_attempt_at":"2025-01-02T03:04:05Z","retry_until":"2025-01-03T03:04:05Z",
		 "attempts":[{"time":"2025-01-02T03:04:05Z","status_code":503,"duration_ms":41},{"time":"2025-01-02T03:04:05Z","error":"no answer within 10s","duration_ms":10000}]},
		{"id":8,"webhook_id":2,"event_id":1041,"event_type":"backend.user_left","status":"delivered","created_at":"2025-01-02T03:04:05Z","next_attempt_at":null,"retry_until":null,
		 "attempts":[{"time":"2025-01-02T03:04:05Z","status_code":204,"duration_ms":3}]},
		{"id":7,"webhook_id":2,"event_id":1040,"event_type":"backend.status","status":"pending","created_at":"2025-01-02T03:04:05Z","next_attempt_at":"2025-01-02T03:04:05Z","retry_until":null,"attempts":[]}]}`
	tests := []struct {
		name   string
		args   []string // after --url, --token
		routes map[string]fakeAnswer
		calls  []apiCall
		stdout []string // lines, compared field by field
		stderr string   // a part of it
	}{
		{"connections", []string{"connections", "k3v9"},
			map[string]fakeAnswer{"GET /api/v1/backends/k3v9/connections": {200, "", `{"connections":[{"user":"ada","since":"2025-01-02T03:04:05Z","connections":3},{"user":"","since":"2025-01-02T03:04:05Z","connections":1}]}`}},
			[]apiCall{{"GET", "/api/v1/backends/k3v9/connections", "", ""}},
			[]string{"USER CONNECTIONS SINCE", "ada 3 " + local(at), "(none) 1 " + local(at)}, ""},
		{"nobody connected", []string{"connections", "k3v9"},
			map[string]fakeAnswer{"GET /api/v1/backends/k3v9/connections": {200, "", `{"connections":[]}`}},
			[]apiCall{{"GET", "/api/v1/backends/k3v9/connections", "", ""}},
			[]string{"USER CONNECTIONS SINCE"}, ""},
		{"disconnect a user", []string{"disconnect", "--user", "ada", "k3v9"},
			map[string]fakeAnswer{"POST /api/v1/backends/k3v9/disconnect": {204, "", ""}},
			[]apiCall{{"POST", "/api/v1/backends/k3v9/disconnect", "", `{"user":"ada"}`}},
			[]string{"disconnected ada from k3v9"}, ""},
		{"disconnect the connections without a user", []string{"disconnect", "--user", "", "k3v9"},
			map[string]fakeAnswer{"POST /api/v1/backends/k3v9/disconnect": {204, "", ""}},
			[]apiCall{{"POST", "/api/v1/backends/k3v9/disconnect", "", `{"user":""}`}},
			[]string{"disconnected (none) from k3v9"}, ""},
		{"disconnect everyone", []string{"disconnect", "--all", "k3v9"},
			map[string]fakeAnswer{"POST /api/v1/backends/k3v9/disconnect": {204, "", ""}},
			[]apiCall{{"POST", "/api/v1/backends/k3v9/disconnect", "", `{}`}},
			[]string{"disconnected every user from k3v9"}, ""},
		{"keep alive", []string{"keepalive", "--seconds", "600", "k3v9"},
			map[string]fakeAnswer{"POST /api/v1/backends/k3v9/keepalive": {200, "", backend}},
			[]apiCall{{"POST", "/api/v1/backends/k3v9/keepalive", "", `{"seconds":600}`}},
			[]string{"k3v9 kept alive until " + local(at) + " by token ci"}, ""},
		{"list webhooks", []string{"webhooks"},
			map[string]fakeAnswer{"GET /api/v1/webhooks": {200, "", hooks}},
			[]apiCall{{"GET", "/api/v1/webhooks", "", ""}},
			[]string{"ID URL EVENTS STATE CREATED",
				"1 https://a.example/h all ok " + local(at),
				"2 https://b.example/h backend.status,backend.user_left failing since " + local(at) + " " + local(at),
				"3 https://c.example/h all disabled " + local(at) + ": answered 410 Gone " + local(at)}, ""},
		{"list webhooks by name", []string{"webhooks", "list"},
			map[string]fakeAnswer{"GET /api/v1/webhooks": {200, "", `{"webhooks":[]}`}},
			[]apiCall{{"GET", "/api/v1/webhooks", "", ""}},
			[]string{"ID URL EVENTS STATE CREATED"}, ""},
		{"create a webhook", []string{"webhooks", "create", "--events", "backend.user_joined, backend.user_left", "https://a.example/h?k=1"},
			map[string]fakeAnswer{"POST /api/v1/webhooks": {201, "", `{"id":4,"url":"https://a.example/h?k=1","events":["backend.user_joined","backend.user_left"],"secret":"whsec_c2VjcmV0"}`}},
			[]apiCall{{"POST", "/api/v1/webhooks", "", `{"url":"https://a.example/h?k=1","events":["backend.user_joined","backend.user_left"]}`}},
			[]string{"webhook 4 created: https://a.example/h?k=1 (events: backend.user_joined,backend.user_left)", "secret: whsec_c2VjcmV0"},
			"Store the secret now"},
		{"create a webhook of every event", []string{"webhooks", "create", "https://a.example/h"},
			map[string]fakeAnswer{"POST /api/v1/webhooks": {201, "", `{"id":5,"url":"https://a.example/h","events":[],"secret":"whsec_eA=="}`}},
			[]apiCall{{"POST", "/api/v1/webhooks", "", `{"url":"https://a.example/h","events":null}`}},
			[]string{"webhook 5 created: https://a.example/h (events: all)", "secret: whsec_eA=="}, "not shown again"},
		{"delete a webhook", []string{"webhooks", "delete", "4"},
			map[string]fakeAnswer{"DELETE /api/v1/webhooks/4": {204, "", ""}},
			[]apiCall{{"DELETE", "/api/v1/webhooks/4", "", ""}},
			[]string{"deleted webhook 4"}, ""},
		{"deliveries", []string{"webhooks", "deliveries", "--limit", "3", "2"},
			map[string]fakeAnswer{"GET /api/v1/webhooks/2/deliveries": {200, "", deliveries}},
			[]apiCall{{"GET", "/api/v1/webhooks/2/deliveries", "limit=3", ""}},
			[]string{"ID EVENT TYPE STATUS ATTEMPTS LAST ATTEMPT CREATED",
				"9 1042 backend.status pending, next " + at.Local().Format(time.TimeOnly) + " 2 " + at.Local().Format(time.TimeOnly) + " no answer within 10s (10000 ms) " + local(at),
				"8 1041 backend.user_left delivered 1 " + at.Local().Format(time.TimeOnly) + " HTTP 204 (3 ms) " + local(at),
				"7 1040 backend.status pending, next " + at.Local().Format(time.TimeOnly) + " 0 - " + local(at)}, ""},
		{"retry a delivery", []string{"webhooks", "retry", "2", "9"},
			map[string]fakeAnswer{"POST /api/v1/webhooks/2/deliveries/9/retry": {202, "", `{"id":9,"webhook_id":2,"status":"pending","next_attempt_at":"2025-01-02T03:04:05Z"}`}},
			[]apiCall{{"POST", "/api/v1/webhooks/2/deliveries/9/retry", "", ""}},
			[]string{"delivery 9 of webhook 2: pending, next " + at.Local().Format(time.TimeOnly)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, calls := fakeRoutes(t, tt.routes)
			n := 1
			if tt.args[0] == "webhooks" && len(tt.args) > 1 && webhookCommands[tt.args[1]] != nil {
				n = 2
			}
			args := append(append(append([]string{}, tt.args[:n]...), "--url", url, "--token", "t"), tt.args[n:]...)
			stdout, stderr, err := runCLI(args...)
			if err != nil {
				t.Fatalf("plane %s: %v\n%s", strings.Join(args, " "), err, stderr)
			}
			if got := calls(); fmt.Sprint(got) != fmt.Sprint(tt.calls) {
				t.Errorf("requests %q, want %q", got, tt.calls)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if len(lines) != len(tt.stdout) {
				t.Fatalf("printed %q, want %d lines", stdout, len(tt.stdout))
			}
			for i, want := range tt.stdout {
				if got := strings.Join(strings.Fields(lines[i]), " "); got != want {
					t.Errorf("line %d: %q\nwant     %q", i, got, want)
				}
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr %q, want %q in it", stderr, tt.stderr)
			}
		})
	}
}

// An API error reaches the person as the server's message.
func TestCLIEventsAPIError(t *testing.T) {
	t.Parallel()
	url, _ := fakeRoutes(t, map[string]fakeAnswer{"POST /api/v1/backends/k3v9/keepalive": {409, "", `{"error":{"code":"conflict","message":"backend k3v9 is terminated (idle): spawn a new one"}}`}})
	_, _, err := runCLI("keepalive", "--url", url, "--token", "t", "--seconds", "60", "k3v9")
	var pe *plane.Error
	if !errors.As(err, &pe) || pe.Code != plane.ECONFLICT || !strings.Contains(err.Error(), "spawn a new one") {
		t.Fatalf("err = %v", err)
	}
	if exitCode(err) != 1 {
		t.Errorf("exit code %d, want 1", exitCode(err))
	}
}

// Every flag has its environment twin: PLANE_USER, PLANE_ALL,
// PLANE_SECONDS, PLANE_EVENTS, PLANE_LIMIT.
func TestCLIEventsEnvTwins(t *testing.T) {
	url, calls := fakeRoutes(t, map[string]fakeAnswer{
		"POST /api/v1/backends/k3v9/disconnect": {204, "", ""},
		"POST /api/v1/backends/k3v9/keepalive":  {200, "", `{"id":"k3v9"}`},
		"POST /api/v1/webhooks":                 {201, "", `{"id":1,"secret":"whsec_eA=="}`},
		"GET /api/v1/webhooks/1/deliveries":     {200, "", `{"deliveries":[]}`},
	})
	t.Setenv("PLANE_URL", url)
	t.Setenv("PLANE_TOKEN", "t")
	t.Setenv("PLANE_SECONDS", "90")
	t.Setenv("PLANE_EVENTS", "backend.status")
	t.Setenv("PLANE_LIMIT", "7")
	for _, args := range [][]string{
		{"keepalive", "k3v9"},
		{"webhooks", "create", "https://a.example/h"},
		{"webhooks", "deliveries", "1"},
	} {
		if _, stderr, err := runCLI(args...); err != nil {
			t.Fatalf("plane %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
	}
	t.Setenv("PLANE_USER", "ada")
	if _, _, err := runCLI("disconnect", "k3v9"); err != nil {
		t.Fatal(err)
	}
	// A flag wins over its twin; with PLANE_USER set, --all is a clash.
	if _, _, err := runCLI("disconnect", "--all", "k3v9"); !errors.As(err, new(usageError)) {
		t.Errorf("--all with PLANE_USER: %v, want a usage error", err)
	}
	os.Unsetenv("PLANE_USER")
	t.Setenv("PLANE_ALL", "true")
	if _, _, err := runCLI("disconnect", "k3v9"); err != nil {
		t.Fatal(err)
	}
	want := []apiCall{
		{"POST", "/api/v1/backends/k3v9/keepalive", "", `{"seconds":90}`},
		{"POST", "/api/v1/webhooks", "", `{"url":"https://a.example/h","events":["backend.status"]}`},
		{"GET", "/api/v1/webhooks/1/deliveries", "limit=7", ""},
		{"POST", "/api/v1/backends/k3v9/disconnect", "", `{"user":"ada"}`},
		{"POST", "/api/v1/backends/k3v9/disconnect", "", `{}`},
	}
	if got := calls(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests\n%q\nwant\n%q", got, want)
	}
}

// plane events prints one line per event (or its JSON) and, without -f,
// exits once the stream is quiet; -f goes on until interrupted.
func TestCLIEvents(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6000000, time.UTC)
	stamp := at.Local().Format("2006-01-02 15:04:05.000")
	events := []string{
		`{"id":41,"type":"backend.status","timestamp":"2025-01-02T03:04:05.006Z","data":{"backend_id":"k3v9","status":"ready","time":"2025-01-02T03:04:05.006Z"}}`,
		`{"id":42,"type":"backend.user_joined","timestamp":"2025-01-02T03:04:05.006Z","data":{"backend_id":"k3v9","user":"ada","users":1,"time":"2025-01-02T03:04:05.006Z"}}`,
		`{"id":43,"type":"backend.user_left","timestamp":"2025-01-02T03:04:05.006Z","data":{"backend_id":"k3v9","user":"","users":0,"time":"2025-01-02T03:04:05.006Z"}}`,
		`{"id":44,"type":"backend.status","timestamp":"2025-01-02T03:04:05.006Z","data":{"backend_id":"k3v9","status":"terminated","reason":"idle","time":"2025-01-02T03:04:05.006Z"}}`,
		`{"id":45,"type":"backend.exploded","timestamp":"2025-01-02T03:04:05.006Z","data":{"backend_id":"k3v9","how":"loudly"}}`,
	}
	var stream strings.Builder
	stream.WriteString(": keep-alive\n\n")
	for _, ev := range events {
		var e struct {
			ID   int
			Type string
		}
		json.Unmarshal([]byte(ev), &e)
		fmt.Fprintf(&stream, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Type, ev)
	}
	var mu sync.Mutex
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte(stream.String()))
		w.(http.Flusher).Flush()
		if r.URL.Query().Get("follow") == "false" {
			return // the kept events, then the end
		}
		<-r.Context().Done() // a followed stream never ends by itself
	}))
	defer srv.Close()
	stdout, stderr, err := runCLI("events", "--url", srv.URL, "--token", "t", "--after", "40")
	if err != nil {
		t.Fatalf("plane events: %v\n%s", err, stderr)
	}
	want := []string{
		"41 " + stamp + " backend.status k3v9 ready",
		"42 " + stamp + " backend.user_joined k3v9 ada (1 connected)",
		"43 " + stamp + " backend.user_left k3v9 (none) (0 connected)",
		"44 " + stamp + " backend.status k3v9 terminated (idle)",
		"45 " + stamp + ` backend.exploded k3v9 {"backend_id":"k3v9","how":"loudly"}`,
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("printed %q", stdout)
	}
	for i := range want {
		if got := strings.Join(strings.Fields(lines[i]), " "); got != want[i] {
			t.Errorf("line %d: %q\nwant     %q", i, got, want[i])
		}
	}

	// --json: the events as the API gives them, one per line.
	stdout, _, err = runCLI("events", "--url", srv.URL, "--token", "t", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSuffix(stdout, "\n"); got != strings.Join(events, "\n") {
		t.Errorf("--json printed\n%s\nwant\n%s", got, strings.Join(events, "\n"))
	}

	// -f: still there a while later, until interrupted.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out syncBuffer
	go func() {
		done <- run(ctx, []string{"events", "--url", srv.URL, "--token", "t", "-f"}, &out, io.Discard)
	}()
	select {
	case err := <-done:
		t.Fatalf("plane events -f ended by itself: %v", err)
	case <-time.After(600 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("plane events -f, interrupted: %v", err)
	}
	if n := strings.Count(out.String(), "\n"); n != len(events) {
		t.Errorf("-f printed %d lines: %q", n, out.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(queries) != "[follow=false&after=40 follow=false&after=0 after=0]" {
		t.Errorf("queries %q", queries)
	}
}

// The commands against a real controller and drone, run as the built
// binary with PLANE_URL and PLANE_TOKEN: a user's WebSocket shows in
// connections and events, disconnect closes it, keepalive answers with
// the keep-alive, and a webhook is created, delivered to, listed, retried
// and deleted.
func TestCLIEventsDocker(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	env := append(os.Environ(), "PLANE_URL="+c.api, "PLANE_TOKEN="+c.token)
	cli := func(args ...string) (string, string) {
		t.Helper()
		cmd := exec.Command(planeBin, args...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("plane %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		return stdout.String(), stderr.String()
	}

	// A receiver that fails every delivery, so that there is one to retry.
	var mu sync.Mutex
	received := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received++
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer hook.Close()
	out, errOut := cli("webhooks", "create", "--events", "backend.user_joined", hook.URL+"/hook")
	m := regexp.MustCompile(`^webhook (\d+) created: \S+ \(events: backend.user_joined\)\nsecret: whsec_\S+\n$`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(errOut, "Store the secret now") {
		t.Fatalf("webhooks create printed %q, %q", out, errOut)
	}
	hookID := m[1]
	if out, _ := cli("webhooks"); !strings.Contains(out, hook.URL+"/hook") || !strings.Contains(out, "backend.user_joined") || strings.Contains(out, "whsec_") {
		t.Errorf("webhooks printed %q", out)
	}

	out, _ = cli("spawn", "--image", "demo")
	id := strings.Fields(out)[1]
	if out, _ := cli("connections", id); strings.TrimSpace(out) != "USER  CONNECTIONS  SINCE" {
		t.Errorf("connections of a new backend printed %q", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ws := c.dialWS(ctx, t, c.proxyClient(), id, c.connectToken(id, "ada", time.Hour))
	defer ws.CloseNow()
	eventually(t, 10*time.Second, "plane connections to list ada", func() bool {
		out, _ := cli("connections", id)
		return regexp.MustCompile(`(?m)^ada\s+1\s+\d{4}-`).MatchString(out)
	})
	eventually(t, 10*time.Second, "plane events to show ada's join", func() bool {
		out, _ := cli("events")
		return strings.Contains(out, " backend.status ") && regexp.MustCompile(`backend.user_joined\s+`+id+`\s+ada \(1 connected\)`).MatchString(out)
	})

	// Disconnecting closes her WebSocket.
	if out, _ := cli("disconnect", "--user", "ada", id); out != "disconnected ada from "+id+"\n" {
		t.Errorf("disconnect printed %q", out)
	}
	if _, _, err := ws.Read(ctx); err == nil {
		t.Error("ada's WebSocket is still open after disconnect")
	}

	out, _ = cli("keepalive", "--seconds", "120", id)
	if !regexp.MustCompile(`^` + id + ` kept alive until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d by token test\n$`).MatchString(out) {
		t.Errorf("keepalive printed %q", out)
	}

	// The join was delivered, and failed; a retry makes it due again.
	var delivery string
	eventually(t, 15*time.Second, "a failed attempt in the delivery log", func() bool {
		out, _ := cli("webhooks", "deliveries", hookID)
		m := regexp.MustCompile(`(?m)^(\d+)\s+\d+\s+backend.user_joined\s+pending.*HTTP 503`).FindStringSubmatch(out)
		if m != nil {
			delivery = m[1]
		}
		return m != nil
	})
	if out, _ := cli("webhooks", "retry", hookID, delivery); !strings.HasPrefix(out, "delivery "+delivery+" of webhook "+hookID+": pending") {
		t.Errorf("retry printed %q", out)
	}
	if out, _ := cli("webhooks", "delete", hookID); out != "deleted webhook "+hookID+"\n" {
		t.Errorf("delete printed %q", out)
	}
	if out, _ := cli("webhooks"); strings.Contains(out, hook.URL) {
		t.Errorf("webhooks after delete printed %q", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if received == 0 {
		t.Error("the webhook got no delivery")
	}

	// Errors of the API reach the person: a terminated backend.
	cli("terminate", id)
	c.waitStatus(id, plane.StatusTerminated, 15*time.Second)
	cmd := exec.Command(planeBin, "keepalive", "--seconds", "60", id)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "terminated") {
		t.Errorf("keepalive of a terminated backend: %v %q", err, out)
	}
}
