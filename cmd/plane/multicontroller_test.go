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
	mdns "github.com/miekg/dns"
	"github.com/nats-io/nats.go"

	"plane"
	"plane/auth"
	"plane/drone/docker"
	"plane/drone/docker/dockertest"
	"plane/natsjs/natstest"
	"plane/server/controller"
	"plane/server/postgres"
	"plane/server/postgres/pgtest"
	"plane/server/sqlstore"
)

// leaseLine is what a controller logs when it takes the cluster's lease.
const leaseLine = "this controller holds the cluster lease"

// TestTwoControllersFailover: two `plane controller` processes share one
// Postgres store and one NATS, and serve one cluster. Each answers for the
// other's backends (API and DNS) and dashboard sessions; when one dies by
// SIGKILL in the middle of a burst of keyed spawns, every spawn it failed
// or cut succeeds on the other within 2 s of being sent there again, every
// key ends with one live backend, and the survivor takes the cluster's
// lease within 10 s and runs its duties from then on: reconciliation (a
// zombie is stopped at the drone's next heartbeat) and the sweep (a drone
// that fell silent when A died is marked unreachable, then lost with its
// backends).
func TestTwoControllersFailover(t *testing.T) {
	fc := newFailoverCluster(t)
	a, b, api, droneID := fc.a, fc.b, fc.api, fc.droneID
	ctx := context.Background()
	db, err := postgres.Open(ctx, fc.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// 1. A spawn through either controller reaches ready on the drone, and
	// the other controller answers for it, by its API and by its DNS.
	var spawnedA string // the backend spawned through A
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
		if rcode, ip := other.resolve(t, res.b.ID); rcode != mdns.RcodeSuccess || ip != failoverDroneIP {
			t.Fatalf("backend %s spawned through %s: %s's DNS answers %s %q, want the drone's %s", res.b.ID, via.name, other.name, mdns.RcodeToString[rcode], ip, failoverDroneIP)
		}
		if st := inspect(t, res.b.ID); !st.Running {
			t.Fatalf("container of %s (spawned through %s) is not running", res.b.ID, via.name)
		}
		if via == a {
			spawnedA = res.b.ID
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
	// SIGKILL in the middle, while some of its spawns are in flight. A
	// drone of the test's own, beating until then, falls silent as A dies,
	// as if on A's machine: only B can sweep it (step 11).
	sweep := startSweepProbe(t, fc, db)
	burst := runFailoverBurst(t, api, a, b, 20, 4, sweep.silence)
	killedAt := burst.killedAt

	// 4. B takes the lease within 10 s of A's death, and not before it.
	if l, ok := b.log.find(leaseLine, time.Time{}); ok && l.at.Before(killedAt) {
		t.Errorf("B took the lease at %s, before A died at %s: %s", l.at.Format(time.StampMilli), killedAt.Format(time.StampMilli), l.text)
	}
	takenAt := b.log.wait(t, leaseLine, killedAt, time.Until(killedAt.Add(10*time.Second))).at
	takeover := takenAt.Sub(killedAt)
	if takeover > 10*time.Second {
		t.Errorf("B took the lease %s after A's death, want within 10s", takeover.Round(time.Millisecond))
	}

	// 5. Every key got its backend, ready, and a spawn cut or refused by A
	// got it from B within 2 s of being sent there: the whole request,
	// Docker's start of the container included. The drone's share and the
	// load average are reported, to tell a slow controller from a machine
	// so overloaded (by other tests sharing it, a load of 10 and more on 2
	// cores) that Docker alone takes over 2 s to start a container.
	var retries, dockerShares, ownB []time.Duration
	cut, refused, failed, answeredA := 0, 0, 0, 0
	var fromA []string // backends A answered for before it died
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
			if r.via == a.name {
				fromA = append(fromA, final.b.ID)
			}
			continue
		}
		docker := droneTime(api.get(b, final.b.ID), r.retry.sent, r.retry.sent.Add(r.retry.took))
		retries, dockerShares = append(retries, r.retry.took), append(dockerShares, docker)
		if r.retry.took > 2*time.Second {
			t.Errorf("key %s: A answered %s; the retry on B took %s (%s of it the drone's starting the container; load average %s), want at most 2s: %s",
				r.key, r.first, r.retry.took.Round(time.Millisecond), docker.Round(time.Millisecond), burst.load, r.retry)
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

	// 6. The backends spawned through A resolve through B's DNS after A's
	// death.
	for _, id := range append([]string{spawnedA}, fromA...) {
		if rcode, ip := b.resolve(t, id); rcode != mdns.RcodeSuccess || ip != failoverDroneIP {
			t.Errorf("backend %s, spawned through A: B's DNS answers %s %q after A's death, want the drone's %s", id, mdns.RcodeToString[rcode], ip, failoverDroneIP)
		}
	}

	// 7. The dashboard session still works through B, for reading and for
	// a form that writes (its CSRF token is bound to the session).
	browser.expectSignedIn(b, "/projects", "Ops")
	browser.createProject(b, "after-failover")

	// 8. B reconciles: the backend spawned through A, running on the drone,
	// is made a zombie — terminated in the store without a word to the
	// drone, as a controller that marked it lost while the drone was away
	// leaves it — and B's reconciliation, at the drone's next heartbeat,
	// asks the drone to stop it. Nothing else could: only the lease's
	// holder reconciles, and the store's write was announced to no one.
	zombieAt := time.Now()
	if _, applied, err := db.ApplyBackendEvent(ctx, plane.BackendEvent{BackendID: spawnedA, DroneID: droneID, Status: plane.StatusTerminated,
		Time: zombieAt, Reason: plane.ReasonLost, Error: "made a zombie by the test"}); err != nil || !applied {
		t.Fatalf("terminate %s in the store alone: %v, %v", spawnedA, applied, err)
	}
	asked := b.log.waitAll(t, zombieAt, plane.HeartbeatInterval+zombieSlack, zombieLine, spawnedA).at.Sub(zombieAt)
	rt := dockertest.Runtime(t)
	eventually(t, zombieStopWithin, "the zombie's container to stop", func() bool {
		st, err := rt.Inspect(ctx, docker.ContainerNamePrefix+spawnedA)
		return docker.IsNotFound(err) || err == nil && !st.Running
	})
	zombieStopped := time.Since(zombieAt)
	if rcode, _ := b.resolve(t, spawnedA); rcode != mdns.RcodeNameError {
		t.Errorf("the zombie %s: B's DNS answers %s, want NXDOMAIN (terminated in the store)", spawnedA, mdns.RcodeToString[rcode])
	}

	// 9. What was measured.
	t.Logf("burst of %d keyed spawns (load average %s): %d through B; through A: %d answered, %d failed (5xx), %d cut by its death, %d refused after it",
		len(burst.results), burst.load, len(ownB), answeredA, failed, cut, refused)
	t.Logf("spawns through B (not retried): p50 %s, max %s", pct(ownB, 0.5).Round(time.Millisecond), pct(ownB, 1).Round(time.Millisecond))
	t.Logf("retries on B after A's failure: %d, latency p50 %s, max %s; of which the drone's container start: p50 %s, max %s",
		len(retries), pct(retries, 0.5).Round(time.Millisecond), pct(retries, 1).Round(time.Millisecond),
		pct(dockerShares, 0.5).Round(time.Millisecond), pct(dockerShares, 1).Round(time.Millisecond))
	t.Logf("lease taken over by B %s after A's SIGKILL", takeover.Round(time.Millisecond))
	t.Logf("B's DNS answered for %d backends spawned through A after its death", 1+len(fromA))
	t.Logf("a zombie made in the store: B asked the drone to stop it after %s, its container stopped after %s",
		asked.Round(time.Millisecond), zombieStopped.Round(time.Millisecond))

	// 10. The two writes a controller can die between cost B nothing.
	checkHalfDoneWrites(t, fc)

	// 11. B swept: the drone silent since A's death unreachable, then
	// lost, and its backend terminated as lost, each within a sweep of its
	// limit or of B's takeover, whichever came later. (Checked last: the
	// steps above run while the limits run out.)
	sweep.check(t, fc, takenAt)
}

// The drone silence limits the failover test gives its controllers, short
// so that B's sweep is seen at work in seconds: unreachable at the least a
// controller takes (plane.DroneStaleAfter, when placement passes a drone
// over already), lost a few seconds later. The test's real drone beats every
// plane.HeartbeatInterval (2 s): it is not silent for 10 s unless broken.
const (
	failoverUnreachableAfter = plane.DroneStaleAfter
	failoverLostAfter        = 10 * time.Second
	// sweepSlack: the sweep runs every second (dispatch's sweepInterval);
	// a mark may come that much after its limit, and 2 s more on a busy
	// machine.
	sweepSlack = 3 * time.Second
)

// zombieLine is what the lease's holder logs when it asks a drone to stop
// a backend the store holds terminated. A zombie is caught at the drone's
// next heartbeat (within plane.HeartbeatInterval), with zombieSlack for a
// busy machine; its container stops within zombieStopWithin, Docker's
// kill included.
const (
	zombieLine       = "stopping a backend the controller holds terminated"
	zombieSlack      = 2 * time.Second
	zombieStopWithin = 15 * time.Second
)

// failoverDroneIP is the address of the test's drone, which the DNS
// servers answer with.
const failoverDroneIP = "127.0.0.1"

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
// store and one NATS cluster of three servers, with one drone in this
// process, an admin user (failoverEmail) and a token of the default project
// with every scope. Each controller serves DNS, and takes the short drone
// silence limits failoverUnreachableAfter and failoverLostAfter.
type failoverCluster struct {
	a, b    *controllerProcess
	api     *apiClient
	droneID string
	dsn     string // the shared store
	natsURL string
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
	return &failoverCluster{a: a, b: b, api: api, droneID: droneID, dsn: dsn, natsURL: natsURL}
}

// controllerProcess is a `plane controller` run as a separate process, so
// that a test can SIGKILL it.
type controllerProcess struct {
	name   string
	url    string
	dns    string // its DNS server's address
	cmd    *exec.Cmd
	log    *timedLog
	exited chan struct{}
}

// startControllerProcess starts controller name on the Postgres store dsn
// and the NATS at natsURL with its own data folder, HTTP port and DNS port,
// and waits until it answers /readyz. At the end of the test it is stopped with
// SIGTERM (SIGKILL if it lingers), and its log printed if the test failed.
func startControllerProcess(t *testing.T, name, dsn, natsURL, data string) *controllerProcess {
	t.Helper()
	addr := freeAddr(t)
	c := &controllerProcess{name: name, url: "http://" + addr, log: &timedLog{}, exited: make(chan struct{})}
	c.cmd = exec.Command(planeBin, "controller", "--data", data, "--store", dsn, "--nats", natsURL,
		"--http", addr, "--domain", "plane.localhost", "--backend-url", "http://{id}.plane.localhost:9090/",
		"--dns", "127.0.0.1:0",
		"--drone-unreachable-after", failoverUnreachableAfter.String(), "--drone-lost-after", failoverLostAfter.String(),
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
	// Its DNS server listens before the HTTP server answers.
	if c.dns = logField(c.log.wait(t, "dns listening", time.Time{}, 5*time.Second).text, "addr"); c.dns == "" {
		t.Fatalf("controller %s logged no DNS address", name)
	}
	return c
}

// logField returns the value of key in a log line of slog's text format.
func logField(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// resolve asks controller c's DNS server, over UDP, for the A record of
// backend id's name, and returns the answer's code and its address ("" for
// none).
func (c *controllerProcess) resolve(t *testing.T, id string) (rcode int, ip string) {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(id+".plane.localhost"), mdns.TypeA)
	r, _, err := (&mdns.Client{Net: "udp", Timeout: 5 * time.Second}).Exchange(m, c.dns)
	if err != nil {
		t.Fatalf("ask %s's DNS for %s: %v", c.name, id, err)
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			return r.Rcode, a.A.String()
		}
	}
	return r.Rcode, ""
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
		DataDir: t.TempDir(), ID: id, NATSURL: natsURL, IP: failoverDroneIP, ProxyAddr: "127.0.0.1:0",
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
	status, err := api.droneStatus(c, id)
	return err == nil && status == plane.DroneReady
}

// droneStatus returns the status controller c lists drone id with; "" when
// it does not list it.
func (api *apiClient) droneStatus(c *controllerProcess, id string) (plane.DroneStatus, error) {
	status, data, err := api.try(c, http.MethodGet, "/api/v1/drones", nil)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("list drones through %s: %d %s", c.name, status, data)
	}
	var out struct {
		Drones []plane.Drone `json:"drones"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return "", err
	}
	for _, d := range out.Drones {
		if d.ID == id {
			return d.Status, nil
		}
	}
	return "", nil
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
	// load is the machine's load average (1, 5 and 15 min) when every
	// spawn had answered: on a 2-core machine shared with other tests,
	// what to look at first when Docker is slow to start containers.
	load string
}

// runFailoverBurst sends n keyed spawns (wait: true) back to back through
// that many concurrent clients, key i to a when i is even and to b when it
// is odd, and kills a by SIGKILL in the middle: once the spawn of the
// middle key, sent to a, has a backend on its way to ready (a stored it
// and sent it to the drone), so that a dies while spawns wait on it. A
// spawn that a refuses, cuts or fails is sent again to b at once by the
// same client, as a client that knows both addresses would. atKill is
// called once a is gone. It returns when every spawn has answered.
//
// A few clients, not n: a drone on a busy 2-core machine starts one
// container in about 0.5 s and ten at once in 3 to 4 s each; four keep
// two or three of a's spawns in flight when it dies.
func runFailoverBurst(t *testing.T, api *apiClient, a, b *controllerProcess, n, clients int, atKill func()) failoverBurst {
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
	atKill()
	wg.Wait()
	out.load = loadAverage()
	return out
}

// loadAverage returns the first three fields of /proc/loadavg, or "?".
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
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
	return l.findAll(after, substr)
}

// findAll returns the first line that arrived after after and contains
// every one of substrs.
func (l *timedLog) findAll(after time.Time, substrs ...string) (timedLine, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if line.at.After(after) && !slices.ContainsFunc(substrs, func(s string) bool { return !strings.Contains(line.text, s) }) {
			return line, true
		}
	}
	return timedLine{}, false
}

// wait polls for a line containing substr that arrived after after, for
// at most within.
func (l *timedLog) wait(t *testing.T, substr string, after time.Time, within time.Duration) timedLine {
	t.Helper()
	return l.waitAll(t, after, within, substr)
}

// waitAll polls for a line that arrived after after and contains every one
// of substrs, for at most within.
func (l *timedLog) waitAll(t *testing.T, after time.Time, within time.Duration, substrs ...string) timedLine {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if line, ok := l.findAll(after, substrs...); ok {
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %s", substrs, within)
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

// sweepProbe is a drone of the test's own, on the cluster's NATS: it beats
// (draining, so that nothing is placed on it) with one live backend of the
// store until told to fall silent, as a drone whose machine died. Its
// goroutine then watches controller B mark it unreachable, then lost.
type sweepProbe struct {
	droneID, backendID string
	listed             chan struct{} // closed once B lists the drone
	quiet              chan struct{} // closed by silence
	done               chan struct{}
	// Set when done is closed: when the probe last beat, when B first
	// listed it unreachable and lost, and what went wrong.
	lastBeat, unreachableAt, lostAt time.Time
	err                             error
}

// startSweepProbe stores the probe's backend in db, starts the probe and
// returns once B lists it.
func startSweepProbe(t *testing.T, fc *failoverCluster, db *sqlstore.DB) *sweepProbe {
	t.Helper()
	ctx := context.Background()
	p := &sweepProbe{droneID: "g" + randHex(5), listed: make(chan struct{}), quiet: make(chan struct{}), done: make(chan struct{})}
	proj, err := db.FindProjectByName(ctx, plane.DefaultProject)
	if err != nil {
		t.Fatal(err)
	}
	bk, created, err := db.CreateBackend(ctx, &plane.Backend{ProjectID: proj.ID, Image: "demo", ImageRef: dockertest.DemoImage, DroneID: p.droneID, CreatedAt: time.Now()})
	if err != nil || !created {
		t.Fatalf("store a backend on drone %s: %v", p.droneID, err)
	}
	p.backendID = bk.ID
	if _, applied, err := db.ApplyBackendEvent(ctx, plane.BackendEvent{BackendID: bk.ID, DroneID: p.droneID, Status: plane.StatusReady, Time: time.Now()}); err != nil || !applied {
		t.Fatalf("store %s ready: %v, %v", bk.ID, applied, err)
	}
	nc, err := nats.Connect(fc.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(func() {
		cancel()
		<-p.done
		nc.Close()
	})
	go p.run(runCtx, nc, fc.api, fc.b)
	select {
	case <-p.listed:
	case <-p.done:
		t.Fatalf("sweep probe: %v", p.err)
	}
	return p
}

// silence stops the probe's heartbeats.
func (p *sweepProbe) silence() { close(p.quiet) }

func (p *sweepProbe) run(ctx context.Context, nc *nats.Conn, api *apiClient, c *controllerProcess) {
	defer close(p.done)
	// Beat every half second until silenced: a beat's time is known to
	// within that, whichever the last one.
	deadline := time.Now().Add(15 * time.Second)
	for beating := true; beating; {
		data, err := json.Marshal(plane.Heartbeat{ProtocolVersion: plane.ProtocolVersion, DroneID: p.droneID, Address: failoverDroneIP,
			Draining: true, Capacity: 1, LiveBackends: []string{p.backendID}, Time: time.Now()})
		if err != nil {
			p.err = err
			return
		}
		p.lastBeat = time.Now()
		if err := nc.Publish(plane.SubjectHeartbeat, data); err != nil {
			p.err = fmt.Errorf("heartbeat: %w", err)
			return
		}
		select {
		case <-p.listed:
		default:
			if status, err := api.droneStatus(c, p.droneID); err == nil && status == plane.DroneDraining {
				close(p.listed)
			} else if time.Now().After(deadline) {
				p.err = fmt.Errorf("%s did not list drone %s, draining, within 15s of its first heartbeat (%q, %v)", c.name, p.droneID, status, err)
				return
			}
		}
		select {
		case <-ctx.Done():
			p.err = ctx.Err()
			return
		case <-p.quiet:
			beating = false
		case <-time.After(500 * time.Millisecond):
		}
	}
	// Silent from now on: watch c's sweep.
	deadline = p.lastBeat.Add(failoverLostAfter + 10*time.Second + 2*sweepSlack) // the lease may change hands in between
	for p.lostAt.IsZero() {
		status, err := api.droneStatus(c, p.droneID)
		now := time.Now()
		switch {
		case err != nil:
			p.err = err
			return
		case status == plane.DroneUnreachable && p.unreachableAt.IsZero():
			p.unreachableAt = now
		case status == plane.DroneLost:
			p.lostAt = now
			return
		}
		if now.After(deadline) {
			p.err = fmt.Errorf("drone %s is %s on %s %s after its last heartbeat, want lost after %s", p.droneID, status, c.name,
				now.Sub(p.lastBeat).Round(time.Millisecond), failoverLostAfter)
			return
		}
		select {
		case <-ctx.Done():
			p.err = ctx.Err()
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// check waits for the probe and checks that B, which took the lease at
// takenAt, swept it: marked it unreachable and lost each within sweepSlack
// of when it was due (its limit after the probe's last beat, or takenAt if
// later), and terminated its backend as lost.
func (p *sweepProbe) check(t *testing.T, fc *failoverCluster, takenAt time.Time) {
	t.Helper()
	<-p.done
	if p.err != nil {
		t.Fatalf("sweep probe: %v", p.err)
	}
	later := func(a, b time.Time) time.Time {
		if a.After(b) {
			return a
		}
		return b
	}
	dueUnreachable := later(p.lastBeat.Add(failoverUnreachableAfter), takenAt)
	dueLost := later(p.lastBeat.Add(failoverLostAfter), takenAt)
	unreachable, lost := p.unreachableAt.Sub(p.lastBeat), p.lostAt.Sub(p.lastBeat)
	switch {
	case p.unreachableAt.IsZero():
		// B's first sweep marks lost at once a drone silent past both
		// limits; otherwise it is unreachable for a sweep at least.
		if takenAt.Add(time.Second).Before(dueLost) {
			t.Errorf("B never listed drone %s unreachable before lost, %s after its last heartbeat", p.droneID, lost.Round(time.Millisecond))
		}
	case p.unreachableAt.Sub(dueUnreachable) > sweepSlack:
		t.Errorf("B marked drone %s unreachable %s after its last heartbeat and %s after it was due (%s after B took the lease), want within %s",
			p.droneID, unreachable.Round(time.Millisecond), p.unreachableAt.Sub(dueUnreachable).Round(time.Millisecond), p.unreachableAt.Sub(takenAt).Round(time.Millisecond), sweepSlack)
	}
	if p.lostAt.Sub(dueLost) > sweepSlack {
		t.Errorf("B marked drone %s lost %s after its last heartbeat and %s after it was due (%s after B took the lease), want within %s",
			p.droneID, lost.Round(time.Millisecond), p.lostAt.Sub(dueLost).Round(time.Millisecond), p.lostAt.Sub(takenAt).Round(time.Millisecond), sweepSlack)
	}
	for _, line := range []string{"drone unreachable", "drone lost"} {
		if line == "drone unreachable" && p.unreachableAt.IsZero() {
			continue
		}
		if l, ok := fc.b.log.findAll(p.lastBeat, line, "drone="+p.droneID); !ok {
			t.Errorf("B did not log %q for drone %s", line, p.droneID)
		} else if l.at.Before(takenAt) {
			t.Errorf("B logged %q for drone %s before it took the lease: %s", line, p.droneID, l.text)
		}
	}
	// The sweep terminates a lost drone's backends in the pass that marks
	// it lost, just after.
	var bk backendOut
	eventually(t, sweepSlack, "the backend of the lost drone "+p.droneID+" to be terminated", func() bool {
		bk = fc.api.get(fc.b, p.backendID)
		return bk.Status == plane.StatusTerminated
	})
	if bk.TerminationReason != plane.ReasonLost {
		t.Errorf("backend %s of the lost drone %s: terminated as %q, want %q", bk.ID, p.droneID, bk.TerminationReason, plane.ReasonLost)
	}
	seenUnreachable := "never seen (lost at once)"
	if !p.unreachableAt.IsZero() {
		seenUnreachable = fmt.Sprintf("after %s (%s after due)", unreachable.Round(time.Millisecond), p.unreachableAt.Sub(dueUnreachable).Round(time.Millisecond))
	}
	t.Logf("a drone silent since A's death, its last beat %s before B took the lease: B marked it unreachable %s, lost after %s (%s after due; limits %s, %s), its backend %s as %s",
		takenAt.Sub(p.lastBeat).Round(time.Millisecond), seenUnreachable, lost.Round(time.Millisecond), p.lostAt.Sub(dueLost).Round(time.Millisecond),
		failoverUnreachableAfter, failoverLostAfter, bk.Status, bk.TerminationReason)
}
