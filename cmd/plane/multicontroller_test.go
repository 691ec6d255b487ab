package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"plane"
	"plane/auth"
	"plane/drone/docker/dockertest"
	"plane/natsjs/natstest"
	"plane/server/controller"
	"plane/server/postgres"
	"plane/server/postgres/pgtest"
)

// leaseLine is what a controller logs when it takes the cluster's lease.
const leaseLine = "this controller holds the cluster lease"

// TestTwoControllersFailover: two `plane controller` processes share one
// Postgres store and one NATS, and serve one cluster. Each answers for the
// other's backends and dashboard sessions; when one dies by SIGKILL in the
// middle of a burst of keyed spawns, every spawn it failed or cut succeeds
// on the other within 2 s (plus Docker's time to start the container) of
// being sent there again, every key ends with one live backend, and the
// survivor takes the cluster's lease within 10 s.
func TestTwoControllersFailover(t *testing.T) {
	fc := newFailoverCluster(t)
	a, b, api, droneID := fc.a, fc.b, fc.api, fc.droneID

	// 1. A spawn through either controller reaches ready on the drone, and
	// the other controller answers for it.
	for _, pair := range [][2]*controllerProcess{{a, b}, {b, a}} {
		via, other := pair[0], pair[1]
		res := api.spawn(via, map[string]any{"image": "demo", "wait": true})
		if res.err != nil || res.status != http.StatusCreated || res.b.Status != plane.StatusReady {
			t.Fatalf("spawn through %s: %s", via.name, res)
		}
		got := api.get(other, res.b.ID)
		if got.Status != plane.StatusReady || got.Drone != droneID {
			t.Fatalf("backend %s spawned through %s, seen through %s: %s on %q, want ready on %s", res.b.ID, via.name, other.name, got.Status, got.Drone, droneID)
		}
		if st := inspect(t, res.b.ID); !st.Running {
			t.Fatalf("container of %s (spawned through %s) is not running", res.b.ID, via.name)
		}
		t.Logf("a spawn through %s alone: ready after %s", via.name, res.took.Round(time.Millisecond))
	}

	// 2. A dashboard session made on A works on B: sessions are in the store.
	browser := newDashboardBrowser(t)
	browser.login(a, failoverEmail, failoverPassword)
	if browser.cookie(b, "plane_session") == "" {
		t.Fatal("the cookie jar does not send A's session cookie to B")
	}
	browser.expectSignedIn(b, "/projects", "Ops")

	// 3. A burst of keyed spawns alternating between A and B; A dies by
	// SIGKILL in the middle, while some of its spawns are in flight.
	burst := runFailoverBurst(t, api, a, b, 20, 4)
	killedAt := burst.killedAt

	// Every key got its backend, ready, and a spawn cut or refused by A
	// got it from B within 2 s, not counting the time the drone spent
	// starting the container meanwhile: on a busy shared machine Docker
	// alone takes from 0.4 s to 6 s to start one, failover or not.
	var retries, overheads, ownB []time.Duration
	cut, refused, failed, answeredA := 0, 0, 0, 0
	for _, r := range burst.results {
		switch {
		case r.via == b.name:
			ownB = append(ownB, r.first.took)
		case r.retry == nil:
			answeredA++
		case r.first.err == nil:
			failed++
		case r.first.sentBefore(killedAt):
			cut++
		default:
			refused++
		}
		final := r.final()
		if final.err != nil || (final.status != http.StatusOK && final.status != http.StatusCreated) || final.b.Status != plane.StatusReady {
			t.Errorf("key %s (first through %s: %s): final answer %s", r.key, r.via, r.first, final)
			continue
		}
		if r.retry == nil {
			continue
		}
		docker := droneTime(api.get(b, final.b.ID), r.retry.sent, r.retry.sent.Add(r.retry.took))
		overhead := r.retry.took - docker
		retries, overheads = append(retries, r.retry.took), append(overheads, overhead)
		if overhead > 2*time.Second {
			t.Errorf("key %s: A answered %s; the retry on B took %s, %s of it not the drone's (want at most 2s): %s",
				r.key, r.first, r.retry.took.Round(time.Millisecond), overhead.Round(time.Millisecond), r.retry)
		} else if r.retry.took > 2*time.Second {
			t.Logf("key %s: the retry on B took %s, %s of it the drone's starting the container", r.key, r.retry.took.Round(time.Millisecond), docker.Round(time.Millisecond))
		}
	}
	if len(retries) == 0 {
		t.Error("no spawn was retried on B: A was not killed in the middle of the burst")
	}

	// Exactly one live backend per key, the one the spawn answered with,
	// and none left scheduled.
	all := api.list(b, "?status=all&limit=1000")
	liveByKey := map[string][]string{}
	for _, bk := range all {
		if bk.Status == plane.StatusScheduled {
			t.Errorf("backend %s (key %q) is still scheduled after every spawn answered", bk.ID, bk.Key)
		}
		if bk.Status.Live() && bk.Key != "" {
			liveByKey[bk.Key] = append(liveByKey[bk.Key], bk.ID)
		}
	}
	for _, r := range burst.results {
		live := api.list(b, "?key="+url.QueryEscape(r.key))
		if len(live) != 1 || len(liveByKey[r.key]) != 1 {
			t.Errorf("key %s has %d live backends by ?key= and %d in the full list, want 1: %v", r.key, len(live), len(liveByKey[r.key]), liveByKey[r.key])
			continue
		}
		if want := r.final().b.ID; live[0].ID != want || live[0].Status != plane.StatusReady {
			t.Errorf("key %s: live backend %s %s, want %s ready (the spawn's answer)", r.key, live[0].ID, live[0].Status, want)
		}
	}

	// 4. The dashboard session still works through B, for reading and for
	// a form that writes (its CSRF token is bound to the session).
	browser.expectSignedIn(b, "/projects", "Ops")
	browser.createProject(b, "after-failover")

	// 5. B takes the lease within 10 s of A's death, and not before it.
	if l, ok := b.log.find(leaseLine, time.Time{}); ok && l.at.Before(killedAt) {
		t.Errorf("B took the lease at %s, before A died at %s: %s", l.at.Format(time.StampMilli), killedAt.Format(time.StampMilli), l.text)
	}
	takeover := b.log.wait(t, leaseLine, killedAt, time.Until(killedAt.Add(10*time.Second))).at.Sub(killedAt)
	if takeover > 10*time.Second {
		t.Errorf("B took the lease %s after A's death, want within 10s", takeover.Round(time.Millisecond))
	}

	// 6. What was measured.
	t.Logf("burst of %d keyed spawns: %d through B; through A: %d answered, %d failed (5xx), %d cut by its death, %d refused after it",
		len(burst.results), len(ownB), answeredA, failed, cut, refused)
	t.Logf("spawns through B (not retried): p50 %s, max %s", pct(ownB, 0.5).Round(time.Millisecond), pct(ownB, 1).Round(time.Millisecond))
	t.Logf("retries on B after A's failure: %d, latency p50 %s, max %s; without the drone's container start: p50 %s, max %s",
		len(retries), pct(retries, 0.5).Round(time.Millisecond), pct(retries, 1).Round(time.Millisecond),
		pct(overheads, 0.5).Round(time.Millisecond), pct(overheads, 1).Round(time.Millisecond))
	t.Logf("lease taken over by B %s after A's SIGKILL", takeover.Round(time.Millisecond))

	// 7. The two writes a controller can die between cost B nothing.
	checkHalfDoneWrites(t, fc)
}

// droneTime is how much of [from, to] backend b spent on its drone, from
// loading to ready, by its status history.
func droneTime(b backendOut, from, to time.Time) time.Duration {
	var loading, ready time.Time
	for _, h := range b.StatusHistory {
		switch h.Status {
		case plane.StatusLoading:
			loading = h.Time
		case plane.StatusReady:
			ready = h.Time
		}
	}
	if loading.IsZero() || ready.IsZero() {
		return 0
	}
	if loading.Before(from) {
		loading = from
	}
	if ready.After(to) {
		ready = to
	}
	return max(ready.Sub(loading), 0)
}

// failoverCluster is two controller processes, A and B, on one Postgres
// store and one NATS cluster of three servers, with one drone in this process, an admin user
// (failoverEmail) and a token of the default project with every scope.
type failoverCluster struct {
	a, b    *controllerProcess
	api     *apiClient
	droneID string
	dsn     string // the shared store
}

const failoverEmail, failoverPassword = "ops@example.com", "correct horse battery"

func newFailoverCluster(t *testing.T) *failoverCluster {
	t.Helper()
	dockertest.Runtime(t) // skips without Docker
	dsn := pgtest.DSN(t)  // skips without Postgres
	// A NATS cluster of three, as docs/deploy.md has it: the streams get
	// three replicas.
	natsURL := natstest.URLs(natstest.StartCluster(t, 3))

	// A starts alone and takes the lease; B gets A's signing key (API,
	// connect and CSRF tokens are signed with it) and starts next.
	dataA, dataB := t.TempDir(), t.TempDir()
	a := startControllerProcess(t, "A", dsn, natsURL, dataA)
	a.log.wait(t, leaseLine, time.Time{}, 15*time.Second)
	key, err := os.ReadFile(filepath.Join(dataA, auth.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataB, auth.KeyFileName), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startControllerProcess(t, "B", dsn, natsURL, dataB)

	// What an operator does from the first controller's machine.
	scopes := joinScopes(append(slices.Clone(plane.AllScopes), plane.AdminScopes...))
	token := strings.TrimSpace(runPlane(t, "", "admin", "token", "create", "--store", dsn, "--data", dataA,
		"--project", plane.DefaultProject, "--name", "failover", "--scopes", scopes))
	runPlane(t, failoverPassword+"\n", "admin", "user", "create", "--store", dsn, "--data", dataA,
		"--email", failoverEmail, "--name", "Ops", "--admin", "--password-stdin")
	api := &apiClient{t: t, token: token, http: &http.Client{Timeout: 90 * time.Second}}
	if status, body := api.do(a, http.MethodPost, "/api/v1/images",
		map[string]any{"name": "demo", "ref": dockertest.DemoImage, "pull_policy": plane.PullNever}); status != http.StatusCreated {
		t.Fatalf("register image demo on A: %d %s", status, body)
	}

	droneID := "t" + randHex(5)
	startFailoverDrone(t, natsURL, droneID, api, b)
	for _, c := range []*controllerProcess{a, b} {
		eventually(t, 10*time.Second, "controller "+c.name+" to list drone "+droneID+" ready", func() bool {
			return api.droneReady(c, droneID)
		})
	}
	return &failoverCluster{a: a, b: b, api: api, droneID: droneID, dsn: dsn}
}

// controllerProcess is a `plane controller` run as a separate process, so
// that a test can SIGKILL it.
type controllerProcess struct {
	name   string
	url    string
	cmd    *exec.Cmd
	log    *timedLog
	exited chan struct{}
}

// startControllerProcess starts controller name on the Postgres store dsn
// and the NATS at natsURL with its own data folder and HTTP port, and
// waits until it answers /readyz. At the end of the test it is stopped with
// SIGTERM (SIGKILL if it lingers), and its log printed if the test failed.
func startControllerProcess(t *testing.T, name, dsn, natsURL, data string) *controllerProcess {
	t.Helper()
	addr := freeAddr(t)
	c := &controllerProcess{name: name, url: "http://" + addr, log: &timedLog{}, exited: make(chan struct{})}
	c.cmd = exec.Command(planeBin, "controller", "--data", data, "--store", dsn, "--nats", natsURL,
		"--http", addr, "--domain", "plane.localhost", "--backend-url", "http://{id}.plane.localhost:9090/",
		"--log-level", "debug")
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	// A controller outlives no test binary killed by go test's timeout.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(15 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			t.Logf("controller %s log:\n%s", name, c.log.String())
		}
	})
	eventually(t, 30*time.Second, "controller "+name+" to answer /readyz", func() bool {
		select {
		case <-c.exited:
			t.Fatalf("controller %s exited: %v\n%s", name, c.cmd.ProcessState, c.log.String())
		default:
		}
		resp, err := http.Get(c.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return c
}

// kill9 ends the controller with SIGKILL and returns when the signal was
// sent, once the process is gone.
func (c *controllerProcess) kill9(t *testing.T) time.Time {
	t.Helper()
	at := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill controller %s: %v", c.name, err)
	}
	<-c.exited
	return at
}

// runPlane runs the plane binary with args and stdin, and returns what it
// printed; it fails the test if the command fails.
func runPlane(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(planeBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("plane %s: %v\n%s", strings.Join(args[:min(3, len(args))], " "), err, stderr.String())
	}
	return string(out)
}

// startFailoverDrone runs a drone in this process on the cluster's NATS.
// At the end of the test it is closed once no backend is on its way to
// ready (as far as controller c says), and its containers are removed.
func startFailoverDrone(t *testing.T, natsURL, id string, api *apiClient, c *controllerProcess) {
	t.Helper()
	t.Cleanup(func() { dockertest.RemoveDroneContainers(t, id) })
	d, err := OpenDrone(context.Background(), DroneConfig{
		DataDir: t.TempDir(), ID: id, NATSURL: natsURL, IP: "127.0.0.1", ProxyAddr: "127.0.0.1:0",
		Domain: "plane.localhost", StopGrace: 3 * time.Second, Logger: testLogger(t, "drone "+id),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Closing the drone while it creates a container would leave
		// one behind Docker's back.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) && api.busy(c) {
			time.Sleep(50 * time.Millisecond)
		}
		d.Close()
	})
}

// apiClient calls the JSON API of either controller with one token.
type apiClient struct {
	t     *testing.T
	token string
	http  *http.Client
}

// do sends a JSON request to controller c and returns the status and body;
// it fails the test when the request cannot be made.
func (api *apiClient) do(c *controllerProcess, method, path string, body any) (int, []byte) {
	api.t.Helper()
	status, data, err := api.try(c, method, path, body)
	if err != nil {
		api.t.Fatalf("%s %s%s: %v", method, c.name, path, err)
	}
	return status, data
}

// try is do that returns a failed request's error instead.
func (api *apiClient) try(c *controllerProcess, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.url+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+api.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := api.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// spawnResult is one spawn request's outcome.
type spawnResult struct {
	via    string // the controller asked
	sent   time.Time
	took   time.Duration
	status int
	b      backendOut
	body   string
	err    error // the request failed: refused, cut, or an answer that did not decode
}

func (r *spawnResult) String() string {
	if r.err != nil {
		return fmt.Sprintf("through %s after %s: %v", r.via, r.took.Round(time.Millisecond), r.err)
	}
	return fmt.Sprintf("through %s after %s: %d %s %s %s", r.via, r.took.Round(time.Millisecond), r.status, r.b.ID, r.b.Status, r.body)
}

// sentBefore reports whether the request was sent before at.
func (r *spawnResult) sentBefore(at time.Time) bool { return r.sent.Before(at) }

// spawn posts a spawn request to controller c.
func (api *apiClient) spawn(c *controllerProcess, req map[string]any) *spawnResult {
	r := &spawnResult{via: c.name, sent: time.Now()}
	status, data, err := api.try(c, http.MethodPost, "/api/v1/backends", req)
	r.took = time.Since(r.sent)
	r.status, r.body, r.err = status, strings.TrimSpace(string(data)), err
	if err == nil && (status == http.StatusOK || status == http.StatusCreated) {
		if derr := json.Unmarshal(data, &r.b); derr != nil {
			r.err = fmt.Errorf("decode %s: %w", data, derr)
		}
		r.body = ""
	}
	return r
}

func (api *apiClient) get(c *controllerProcess, id string) backendOut {
	api.t.Helper()
	status, data := api.do(c, http.MethodGet, "/api/v1/backends/"+id, nil)
	if status != http.StatusOK {
		api.t.Fatalf("get %s through %s: %d %s", id, c.name, status, data)
	}
	var b backendOut
	if err := json.Unmarshal(data, &b); err != nil {
		api.t.Fatal(err)
	}
	return b
}

// list returns GET /api/v1/backends with query through controller c.
func (api *apiClient) list(c *controllerProcess, query string) []backendOut {
	api.t.Helper()
	status, data := api.do(c, http.MethodGet, "/api/v1/backends"+query, nil)
	if status != http.StatusOK {
		api.t.Fatalf("list backends%s through %s: %d %s", query, c.name, status, data)
	}
	var out struct {
		Backends []backendOut `json:"backends"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		api.t.Fatal(err)
	}
	return out.Backends
}

// droneReady reports whether controller c lists drone id as ready.
func (api *apiClient) droneReady(c *controllerProcess, id string) bool {
	status, data, err := api.try(c, http.MethodGet, "/api/v1/drones", nil)
	if err != nil || status != http.StatusOK {
		return false
	}
	var out struct {
		Drones []plane.Drone `json:"drones"`
	}
	if json.Unmarshal(data, &out) != nil {
		return false
	}
	return slices.ContainsFunc(out.Drones, func(d plane.Drone) bool { return d.ID == id && d.Status == plane.DroneReady })
}

// busy reports whether controller c lists a live backend not yet ready;
// false when it does not answer.
func (api *apiClient) busy(c *controllerProcess) bool {
	status, data, err := api.try(c, http.MethodGet, "/api/v1/backends?limit=1000", nil)
	if err != nil || status != http.StatusOK {
		return false
	}
	var out struct {
		Backends []backendOut `json:"backends"`
	}
	if json.Unmarshal(data, &out) != nil {
		return false
	}
	return slices.ContainsFunc(out.Backends, func(b backendOut) bool { return b.Status.Rank() < plane.StatusReady.Rank() })
}

// keyedSpawn is one key of the burst: its first request, and the retry on
// the survivor when the first went to the controller that died and failed.
type keyedSpawn struct {
	key   string
	ctrl  *controllerProcess // the controller asked first
	via   string
	sent  chan struct{} // closed when the first request goes out
	first *spawnResult
	retry *spawnResult
}

func (k *keyedSpawn) final() *spawnResult {
	if k.retry != nil {
		return k.retry
	}
	return k.first
}

// failoverBurst is what runFailoverBurst saw.
type failoverBurst struct {
	results  []*keyedSpawn
	killedAt time.Time
}

// runFailoverBurst sends n keyed spawns (wait: true) back to back through
// that many concurrent clients, key i to a when i is even and to b when it
// is odd, and kills a by SIGKILL in the middle: once the spawn of the
// middle key, sent to a, has a backend on its way to ready (a stored it
// and sent it to the drone), so that a dies while spawns wait on it. A
// spawn that a refuses, cuts or fails is sent again to b at once by the
// same client, as a client that knows both addresses would. It returns
// when every spawn has answered.
//
// A few clients, not n: a drone on a busy 2-core machine starts one
// container in about 0.5 s and ten at once in 3 to 4 s each; four keep
// two or three of a's spawns in flight when it dies.
func runFailoverBurst(t *testing.T, api *apiClient, a, b *controllerProcess, n, clients int) failoverBurst {
	t.Helper()
	var out failoverBurst
	for i := range n {
		via := a
		if i%2 == 1 {
			via = b
		}
		out.results = append(out.results, &keyedSpawn{key: fmt.Sprintf("failover-%02d", i), ctrl: via, via: via.name, sent: make(chan struct{})})
	}
	queue := make(chan *keyedSpawn)
	go func() {
		for _, k := range out.results {
			queue <- k
		}
		close(queue)
	}()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for k := range queue {
				req := map[string]any{"image": "demo", "key": k.key, "wait": true}
				close(k.sent)
				k.first = api.spawn(k.ctrl, req)
				if k.ctrl == a && (k.first.err != nil || k.first.status >= 500) {
					k.retry = api.spawn(b, req)
				}
			}
		})
	}

	middle := out.results[n/2]
	if middle.ctrl != a {
		t.Fatalf("the middle key %s goes to %s, want A", middle.key, middle.via)
	}
	<-middle.sent
	eventually(t, 10*time.Second, "A's spawn of "+middle.key+" on its way to ready", func() bool {
		status, data, err := api.try(b, http.MethodGet, "/api/v1/backends?key="+middle.key, nil)
		var list struct {
			Backends []backendOut `json:"backends"`
		}
		return err == nil && status == http.StatusOK && json.Unmarshal(data, &list) == nil && len(list.Backends) > 0
	})
	out.killedAt = a.kill9(t)
	wg.Wait()
	return out
}

// dashboardBrowser is a cookie-keeping client of the dashboard that does
// not follow redirects. Its jar, like a browser's, sends 127.0.0.1's
// cookies to every port, so one session serves both controllers.
type dashboardBrowser struct {
	t   *testing.T
	jar *cookiejar.Jar
	c   *http.Client
}

func newDashboardBrowser(t *testing.T) *dashboardBrowser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &dashboardBrowser{t: t, jar: jar, c: &http.Client{
		Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends req as a browser would and returns the answer with its HTML.
func (br *dashboardBrowser) do(req *http.Request) (*http.Response, *goquery.Document) {
	br.t.Helper()
	req.Header.Set("Accept", "text/html")
	resp, err := br.c.Do(req)
	if err != nil {
		br.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		br.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return resp, doc
}

func (br *dashboardBrowser) get(c *controllerProcess, path string) (*http.Response, *goquery.Document) {
	br.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.url+path, nil)
	if err != nil {
		br.t.Fatal(err)
	}
	return br.do(req)
}

// post sends a form, with the CSRF token of the page at tokenFrom.
func (br *dashboardBrowser) post(c *controllerProcess, tokenFrom, path string, form url.Values) *http.Response {
	br.t.Helper()
	_, doc := br.get(c, tokenFrom)
	tok, _ := doc.Find(`meta[name="csrf-token"]`).Attr("content")
	if tok == "" {
		br.t.Fatalf("no CSRF token on %s%s", c.name, tokenFrom)
	}
	form.Set("_csrf", tok)
	req, err := http.NewRequest(http.MethodPost, c.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		br.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _ := br.do(req)
	return resp
}

func (br *dashboardBrowser) cookie(c *controllerProcess, name string) string {
	u, _ := url.Parse(c.url)
	for _, ck := range br.jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// login signs in through controller c's login form.
func (br *dashboardBrowser) login(c *controllerProcess, email, password string) {
	br.t.Helper()
	resp := br.post(c, "/login", "/login", url.Values{"email": {email}, "password": {password}})
	if resp.StatusCode != http.StatusSeeOther || br.cookie(c, "plane_session") == "" {
		br.t.Fatalf("log in through %s: %d to %q, session cookie %q", c.name, resp.StatusCode, resp.Header.Get("Location"), br.cookie(c, "plane_session"))
	}
}

// expectSignedIn gets a page that needs a session through controller c,
// and checks that it is served to user, not sent to /login.
func (br *dashboardBrowser) expectSignedIn(c *controllerProcess, path, user string) {
	br.t.Helper()
	resp, doc := br.get(c, path)
	if resp.StatusCode != http.StatusOK {
		br.t.Fatalf("GET %s%s with the session: %d to %q, want 200", c.name, path, resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := strings.TrimSpace(doc.Find(`[data-testid="current-user"]`).Text()); got != user {
		br.t.Fatalf("GET %s%s: signed in as %q, want %q", c.name, path, got, user)
	}
}

// createProject creates a project through controller c's form, in the
// user's first team.
func (br *dashboardBrowser) createProject(c *controllerProcess, name string) {
	br.t.Helper()
	_, doc := br.get(c, "/projects")
	team, _ := doc.Find(`select[name="team_id"] option`).First().Attr("value")
	resp := br.post(c, "/projects", "/projects", url.Values{"team_id": {team}, "name": {name}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/projects/") {
		br.t.Fatalf("create project %s through %s: %d to %q", name, c.name, resp.StatusCode, resp.Header.Get("Location"))
	}
}

// timedLog keeps a process's output with the time each line arrived, so
// that a test can wait for a line and time it.
type timedLog struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	lines   []timedLine
}

type timedLine struct {
	at   time.Time
	text string
}

func (l *timedLog) Write(p []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, timedLine{at: now, text: string(l.partial[:i])})
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *timedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// find returns the first line containing substr that arrived after after.
func (l *timedLog) find(substr string, after time.Time) (timedLine, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if line.at.After(after) && strings.Contains(line.text, substr) {
			return line, true
		}
	}
	return timedLine{}, false
}

// wait polls for a line containing substr that arrived after after, for
// at most within.
func (l *timedLog) wait(t *testing.T, substr string, after time.Time, within time.Duration) timedLine {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if line, ok := l.find(substr, after); ok {
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %s", substr, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkHalfDoneWrites: the two writes a controller can die between, made
// here directly in the shared store, cost a spawn through another
// controller (fc.b) no more than a moment.
//   - A backend stored but never sent to its drone (the controller died
//     between the two) holds its key, scheduled: a spawn of that key sends
//     it to the drone again after controller.RedispatchAfter, instead of
//     waiting 30 s for reconciliation to end it as lost.
//   - A change stored but never announced on the bus (the controller died
//     between the two) still ends a wait on the other controller, which
//     reads the store every second, instead of running to the 60 s timeout.
func checkHalfDoneWrites(t *testing.T, fc *failoverCluster) {
	t.Helper()
	ctx := context.Background()
	db, err := postgres.Open(ctx, fc.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := db.FindProjectByName(ctx, plane.DefaultProject)
	if err != nil {
		t.Fatal(err)
	}
	store := func(key, drone string) *plane.Backend {
		t.Helper()
		b, created, err := db.CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "demo", ImageRef: dockertest.DemoImage, Key: key, DroneID: drone, CreatedAt: time.Now()})
		if err != nil || !created {
			t.Fatalf("store a backend with key %s: %v", key, err)
		}
		return b
	}

	orphan := store("orphan", fc.droneID)
	res := fc.api.spawn(fc.b, map[string]any{"image": "demo", "key": "orphan", "wait": true})
	if res.err != nil || res.b.ID != orphan.ID || res.b.Status != plane.StatusReady {
		t.Fatalf("spawn of the orphan's key through B: %s; want %s ready", res, orphan.ID)
	}
	t.Logf("a backend stored and never sent: ready through B after %s", res.took.Round(time.Millisecond))
	if limit := controller.RedispatchAfter + 15*time.Second; res.took > limit {
		t.Errorf("the orphan took %s, more than %s: it was not sent again", res.took, limit)
	}

	// A drone that does not exist: only the store speaks for this backend.
	quiet := store("quiet", "ghost")
	done := make(chan *spawnResult, 1)
	go func() { done <- fc.api.spawn(fc.b, map[string]any{"image": "demo", "key": "quiet", "wait": true}) }()
	time.Sleep(300 * time.Millisecond) // B is waiting; the event below is never announced
	if _, applied, err := db.ApplyBackendEvent(ctx, plane.BackendEvent{BackendID: quiet.ID, DroneID: "ghost", Status: plane.StatusReady, Time: time.Now()}); err != nil || !applied {
		t.Fatalf("store ready without announcing it: %v, %v", applied, err)
	}
	res = <-done
	if res.err != nil || res.b.ID != quiet.ID || res.b.Status != plane.StatusReady {
		t.Fatalf("spawn of the quiet key through B: %s; want %s ready", res, quiet.ID)
	}
	t.Logf("a change stored and never announced: B answered after %s", res.took.Round(time.Millisecond))
	if res.took > 10*time.Second {
		t.Errorf("B answered after %s: it waited for an announcement that never came", res.took)
	}
}
