package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"

	"plane"
	"plane/drone/docker"
)

// enableEnv turns the scenarios on: they take minutes and root, so that
// `go test ./...` skips them and `make test-cluster` runs them.
const enableEnv = "PLANE_CLUSTER_TESTS"

const (
	domain    = "cluster.plane.test"
	demoImage = "plane-demo:latest"
	proxyPort = "9090"
)

// bin holds the programs every cluster runs, built once per test binary.
var bin struct{ plane, nats string }

func TestMain(m *testing.M) {
	if os.Getenv(probeEnv) != "" {
		os.Exit(probeMain()) // this binary, run in a namespace as a client
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Getenv(enableEnv) != "1" || os.Geteuid() != 0 {
		return m.Run() // every test skips, saying why
	}
	dir, err := os.MkdirTemp("", "plane-cluster-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "find the module root: %v\n", err)
		return 1
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin.plane, bin.nats = filepath.Join(dir, "plane"), filepath.Join(dir, "nats-server")
	// nats-server at the version go.mod pins, which the product is tested with.
	for _, b := range [][]string{
		{"go", "build", "-o", bin.plane, "./cmd/plane"},
		{"go", "build", "-o", bin.nats, "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.Command(b[0], b[1:]...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n%s", strings.Join(b, " "), err, out)
			return 1
		}
	}
	return m.Run()
}

// requireCluster skips unless the scenarios are asked for and can run.
func requireCluster(t *T) {
	t.Helper()
	if os.Getenv(enableEnv) != "1" {
		t.Skipf("skipping the multi-host cluster scenarios (minutes, as root, on network namespaces): set %s=1 to run them, as `make test-cluster` does", enableEnv)
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: the cluster scenarios make network namespaces and need root")
	}
	if out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", demoImage).CombinedOutput(); err != nil {
		t.Fatalf("the demo image %s is missing (docker image inspect: %v: %s): build it with `make test-images`",
			demoImage, err, bytes.TrimSpace(out))
	}
}

// clusterOpts changes a cluster.
type clusterOpts struct {
	controllerFlags []string // added to plane controller's command line
}

// cluster is three nats-servers clustered with JetStream, a controller and
// three drones, each process on a host of its own.
type cluster struct {
	t        *T
	net      *network
	nats     []*host
	natsURLs string
	// natsProcs and natsStores are each nats-server's process and store
	// folder, by the index of its host in nats; natsRoutes its --routes.
	natsProcs  []*proc
	natsStores []string
	natsRoutes string
	ctrlHost   *host
	ctrl       *proc
	ctrlArgs   []string // its command line, for a restart
	data       string   // the controller's data folder
	apiURL     string
	token      string // project default's, all the project scopes
	admin      string // the admin scope's, for the drones
	drones     []*droneNode
	rt         *docker.Runtime     // the test's view of Docker
	js         jetstream.JetStream // the test's own JetStream client (jetStream)
	http       *http.Client
}

// droneNode is one drone: its host, id, data folder and process.
type droneNode struct {
	id   string
	host *host
	data string
	proc *proc
}

// newCluster starts a cluster and returns once every drone is ready.
func newCluster(t *T, opts clusterOpts) *cluster {
	t.Helper()
	requireCluster(t)
	start := time.Now()
	n := newNetwork(t)
	c := &cluster{t: t, net: n, http: &http.Client{Timeout: 90 * time.Second}}
	for i := 1; i <= 3; i++ {
		c.nats = append(c.nats, n.addHost(fmt.Sprintf("n%d", i), false))
	}
	c.ctrlHost = n.addHost("ctrl", false)
	for i := 1; i <= 3; i++ {
		c.drones = append(c.drones, &droneNode{
			id:   fmt.Sprintf("%s-d%d", n.prefix, i),
			host: n.addHost(fmt.Sprintf("d%d", i), true),
			data: t.TempDir(),
		})
	}
	var err error
	if c.rt, err = docker.New(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.removeStaleContainers()
	// After the drones have stopped (cleanups run last first), before the
	// links the containers publish on go.
	t.Cleanup(func() {
		c.removeContainers()
		c.rt.Close()
	})
	c.startNATS()
	c.startController(opts)
	c.registerImage()
	for _, d := range c.drones {
		c.startDrone(d)
	}
	c.waitDrones(30*time.Second, c.drones...)
	t.Logf("cluster %s up in %s: nats %s, controller %s, drones %s", n.prefix, time.Since(start).Round(time.Millisecond),
		c.natsURLs, c.ctrlHost.ip, strings.Join(c.droneIDs(), ", "))
	return c
}

func (c *cluster) droneIDs() []string {
	ids := make([]string, len(c.drones))
	for i, d := range c.drones {
		ids[i] = d.id
	}
	return ids
}

// drone returns the drone with id.
func (c *cluster) drone(id string) *droneNode {
	for _, d := range c.drones {
		if d.id == id {
			return d
		}
	}
	c.t.Fatalf("no drone %q in this cluster", id)
	return nil
}

// startNATS starts the three nats-servers, routed to each other, and waits
// until each says it is healthy: JetStream has its meta leader.
func (c *cluster) startNATS() {
	c.t.Helper()
	var routes, urls []string
	for _, h := range c.nats {
		routes = append(routes, "nats://"+h.ip.String()+":6222")
		urls = append(urls, "nats://"+h.ip.String()+":4222")
	}
	c.natsURLs, c.natsRoutes = strings.Join(urls, ","), strings.Join(routes, ",")
	c.natsProcs = make([]*proc, len(c.nats))
	for range c.nats {
		c.natsStores = append(c.natsStores, c.t.TempDir())
	}
	for i := range c.nats {
		c.startNATSServer(i)
	}
	for i, h := range c.nats {
		c.waitHTTP(c.natsProcs[i], "http://"+h.ip.String()+":8222/healthz", 60*time.Second)
	}
	c.waitMetaGroup()
}

// startNATSServer starts (or restarts, on the same store) the nats-server
// of host c.nats[i]; it does not wait for it.
func (c *cluster) startNATSServer(i int) {
	c.t.Helper()
	h := c.nats[i]
	c.natsProcs[i] = c.net.run(h, "nats-"+h.name, nil, bin.nats,
		"--server_name", h.name, "--addr", h.ip.String(), "--port", "4222", "--http_port", "8222",
		"--cluster_name", c.net.prefix, "--cluster", "nats://"+h.ip.String()+":6222", "--routes", c.natsRoutes,
		"--jetstream", "--store_dir", c.natsStores[i])
}

// waitMetaGroup waits until JetStream's meta group has a leader that
// holds every other server current: healthy servers may not have found
// each other yet, and a stream with replicas cannot be placed before.
func (c *cluster) waitMetaGroup() {
	c.t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	type jsz struct {
		Meta *struct {
			Leader   string `json:"leader"`
			Replicas []struct {
				Name    string `json:"name"`
				Current bool   `json:"current"`
			} `json:"replicas"`
		} `json:"meta_cluster"`
	}
	var last string
	c.eventually(60*time.Second, "the JetStream meta group of all three servers", func() bool {
		for _, h := range c.nats {
			resp, err := hc.Get("http://" + h.ip.String() + ":8222/jsz")
			if err != nil {
				last = err.Error()
				return false
			}
			var j jsz
			err = json.NewDecoder(resp.Body).Decode(&j)
			resp.Body.Close()
			if err != nil || j.Meta == nil {
				last = fmt.Sprintf("%s: no meta group (%v)", h.name, err)
				return false
			}
			last = fmt.Sprintf("%s: leader %q, replicas %+v", h.name, j.Meta.Leader, j.Meta.Replicas)
			if j.Meta.Leader != h.name {
				continue // only the leader knows who is current
			}
			current := 0
			for _, r := range j.Meta.Replicas {
				if r.Current {
					current++
				}
			}
			return current == len(c.nats)-1
		}
		return false
	}, func() string { return "last /jsz: " + last })
}

// waitHTTP polls url until it answers 200, failing early if p exits.
func (c *cluster) waitHTTP(p *proc, url string, within time.Duration) {
	c.t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	var last string
	c.eventually(within, p.name+" at "+url, func() bool {
		if p.exited() {
			c.t.Fatalf("%s exited (%v) before %s answered", p.name, p.err, url)
		}
		resp, err := hc.Get(url)
		if err != nil {
			last = err.Error()
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = resp.Status + " " + string(body)
		return resp.StatusCode == http.StatusOK
	}, func() string { return "last answer: " + last })
}

// startController starts the controller on a fresh data folder, waits
// until it is ready, and makes the API tokens as docs/deploy.md tells an
// operator to: plane admin token create on the running controller's data
// folder, in the project default that the controller creates.
func (c *cluster) startController(opts clusterOpts) {
	c.t.Helper()
	c.data = c.t.TempDir()
	ip := c.ctrlHost.ip.String()
	args := []string{bin.plane, "controller",
		"--data", c.data, "--nats", c.natsURLs, "--domain", domain,
		"--http", ip + ":8080", "--dns", ip + ":8053", "--dns-ip", ip,
		"--backend-url", "http://{id}." + domain + ":" + proxyPort + "/"}
	c.ctrlArgs = append(args, opts.controllerFlags...)
	c.apiURL = "http://" + ip + ":8080"
	c.runController()
	// `plane controller` creates project default at its first start (as
	// plane dev does), just after it begins to answer /readyz: the first
	// token is asked for until the project is there.
	c.token = c.newToken("cluster-test", "", 10*time.Second)
	c.admin = c.newToken("cluster-test-admin", string(plane.ScopeAdmin), 0)
}

// runController starts (or restarts) the controller with its command line
// and data folder, and waits until it is ready.
func (c *cluster) runController() {
	c.t.Helper()
	c.ctrl = c.net.run(c.ctrlHost, "controller", nil, c.ctrlArgs...)
	c.waitHTTP(c.ctrl, c.apiURL+"/readyz", 60*time.Second)
}

// newToken creates an API token of project default with scopes (empty:
// the default ones) and returns it: plane admin token create, tried again
// for up to within while it fails (the project not there yet).
func (c *cluster) newToken(name, scopes string, within time.Duration) string {
	c.t.Helper()
	args := []string{"token", "create", "--data", c.data, "--project", plane.DefaultProject, "--name", name}
	if scopes != "" {
		args = append(args, "--scopes", scopes)
	}
	var tok string
	var err error
	c.eventually(within, "plane admin token create", func() bool {
		tok, err = c.admincmd(args...)
		return err == nil
	}, func() string { return err.Error() })
	if tok == "" {
		c.t.Fatal("plane admin token create printed no token")
	}
	return tok
}

// admincmd runs plane admin with args and returns what it printed, or
// its failure with what it said.
func (c *cluster) admincmd(args ...string) (string, error) {
	out, err := exec.Command(bin.plane, append([]string{"admin"}, args...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return "", fmt.Errorf("plane admin %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr))
	}
	return strings.TrimSpace(string(out)), nil
}

// registerImage registers the demo image, public (the proxy wants no
// connect token), never pulled, with an idle limit longer than any
// scenario.
func (c *cluster) registerImage() {
	c.t.Helper()
	code, body := c.call(http.MethodPost, "/api/v1/images", map[string]any{
		"name": "demo", "ref": demoImage, "pull_policy": "never", "public": true, "max_idle_seconds": 1800,
	})
	if code != http.StatusCreated && code != http.StatusOK {
		c.t.Fatalf("register image: %d %s", code, body)
	}
}

// startDrone starts (or restarts) drone d in its host.
func (c *cluster) startDrone(d *droneNode) {
	c.t.Helper()
	h := d.host
	d.proc = c.net.run(h, "drone-"+h.name, nil, bin.plane, "drone",
		"--id", d.id, "--data", d.data, "--nats", c.natsURLs, "--domain", domain,
		"--proxy", h.ip.String()+":"+proxyPort, "--ip", h.ip.String(),
		"--publish-ip", h.dockerIP.String(), "--stop-grace", "2s")
}

// waitDrones waits until the controller holds every drone of ds ready.
func (c *cluster) waitDrones(within time.Duration, ds ...*droneNode) {
	c.t.Helper()
	var last string
	c.eventually(within, "drones ready", func() bool {
		for _, d := range ds {
			if d.proc.exited() {
				c.t.Fatalf("drone %s exited: %v", d.id, d.proc.err)
			}
		}
		st := c.droneStatus()
		last = fmt.Sprint(st)
		for _, d := range ds {
			if st[d.id] != plane.DroneReady {
				return false
			}
		}
		return true
	}, func() string { return "drone status: " + last })
}

// dronesNow is what the controller holds of each drone, by ID: GET
// /api/v1/drones, with the admin token.
func (c *cluster) dronesNow() map[string]plane.Drone {
	c.t.Helper()
	code, body := c.callWith(c.admin, http.MethodGet, "/api/v1/drones", nil)
	if code != http.StatusOK {
		c.t.Fatalf("list drones: %d %s", code, body)
	}
	var out struct{ Drones []plane.Drone }
	if err := json.Unmarshal(body, &out); err != nil {
		c.t.Fatalf("decode drones %s: %v", body, err)
	}
	ds := map[string]plane.Drone{}
	for _, d := range out.Drones {
		ds[d.ID] = d
	}
	return ds
}

// droneStatus is each drone's status.
func (c *cluster) droneStatus() map[string]plane.DroneStatus {
	c.t.Helper()
	st := map[string]plane.DroneStatus{}
	for id, d := range c.dronesNow() {
		st[id] = d.Status
	}
	return st
}

// controllerHasFlag reports whether plane controller has --name, for
// scenarios that need a flag another change adds.
func controllerHasFlag(name string) bool {
	out, _ := exec.Command(bin.plane, "controller", "-h").CombinedOutput()
	return bytes.Contains(out, []byte("--"+name+" "))
}

// removeStaleContainers removes the containers of the drones of dead runs
// (see sweepStale).
func (c *cluster) removeStaleContainers() {
	ctx := context.Background()
	for _, prefix := range stalePrefixes {
		for i := 1; i <= 3; i++ {
			cs, err := c.rt.List(ctx, fmt.Sprintf("%s-d%d", prefix, i))
			if err != nil {
				c.t.Fatal(err)
			}
			for _, ct := range cs {
				if err := c.rt.Remove(ctx, ct.ID); err != nil {
					c.t.Errorf("remove stale container: %v", err)
				}
			}
		}
	}
}

// removeContainers removes every container of the cluster's drones.
func (c *cluster) removeContainers() {
	ctx := context.Background()
	for _, d := range c.drones {
		cs, err := c.rt.List(ctx, d.id)
		if err != nil {
			c.t.Errorf("cleanup: %v", err)
			continue
		}
		for _, ct := range cs {
			if err := c.rt.Remove(ctx, ct.ID); err != nil {
				c.t.Errorf("cleanup: %v", err)
			}
		}
	}
}

// backend is what the scenarios read of the API's backend.
type backend struct {
	ID                string               `json:"id"`
	Key               string               `json:"key"`
	Status            plane.BackendStatus  `json:"status"`
	Spawned           bool                 `json:"spawned"`
	Drone             string               `json:"drone"`
	DroneUnreachable  bool                 `json:"drone_unreachable"`
	TerminationReason string               `json:"termination_reason"`
	Error             string               `json:"error"`
	StatusHistory     []plane.StatusChange `json:"status_history"`
}

func (b backend) String() string {
	s := fmt.Sprintf("%s on %s: %s", b.ID, b.Drone, b.Status)
	if b.DroneUnreachable {
		s += " (drone unreachable)"
	}
	if b.TerminationReason != "" {
		s += " (" + b.TerminationReason + ")"
	}
	if b.Error != "" {
		s += ": " + b.Error
	}
	return s
}

// call sends a JSON request to the API with the project's token and
// returns the status code and body; a transport error is code 0 and its
// text.
func (c *cluster) call(method, path string, body any) (int, []byte) {
	return c.callWith(c.token, method, path, body)
}

func (c *cluster) callWith(token, method, path string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.apiURL+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, []byte(err.Error())
	}
	return resp.StatusCode, data
}

// spawned is the outcome of one spawn request.
type spawned struct {
	b    backend
	code int // 0: no answer
	body string
	took time.Duration
}

func (s spawned) ok() bool { return s.code == http.StatusCreated || s.code == http.StatusOK }

func (s spawned) String() string {
	if s.ok() {
		return fmt.Sprintf("%d %s in %s", s.code, s.b, s.took.Round(time.Millisecond))
	}
	return fmt.Sprintf("%d %s in %s", s.code, strings.TrimSpace(s.body), s.took.Round(time.Millisecond))
}

// spawn asks for a backend of the demo image; key may be empty. With wait
// the answer comes once it is ready (or after 60 s).
func (c *cluster) spawn(key string, wait bool) spawned {
	req := map[string]any{"image": "demo", "wait": wait}
	if key != "" {
		req["key"] = key
	}
	start := time.Now()
	code, body := c.call(http.MethodPost, "/api/v1/backends", req)
	s := spawned{code: code, body: string(body), took: time.Since(start)}
	if s.ok() {
		if err := json.Unmarshal(body, &s.b); err != nil {
			c.t.Errorf("decode spawn answer %s: %v", body, err)
		}
	}
	return s
}

// spawnMany sends n spawns at once (key(i) for the i-th, nil: no keys).
func (c *cluster) spawnMany(n int, key func(int) string, wait bool) []spawned {
	out := make([]spawned, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k := ""
			if key != nil {
				k = key(i)
			}
			out[i] = c.spawn(k, wait)
		})
	}
	wg.Wait()
	return out
}

// backends lists every backend of the project, live or not.
func (c *cluster) backends() []backend {
	c.t.Helper()
	code, body := c.call(http.MethodGet, "/api/v1/backends?status=all&limit=1000", nil)
	if code != http.StatusOK {
		c.t.Fatalf("list backends: %d %s", code, body)
	}
	var out struct{ Backends []backend }
	if err := json.Unmarshal(body, &out); err != nil {
		c.t.Fatalf("decode backends %s: %v", body, err)
	}
	return out.Backends
}

// get returns one backend.
func (c *cluster) get(id string) backend {
	c.t.Helper()
	code, body := c.call(http.MethodGet, "/api/v1/backends/"+id, nil)
	if code != http.StatusOK {
		c.t.Fatalf("get backend %s: %d %s", id, code, body)
	}
	var b backend
	if err := json.Unmarshal(body, &b); err != nil {
		c.t.Fatalf("decode backend %s: %v", body, err)
	}
	return b
}

// waitStatus waits until every backend of ids has status (and, for
// terminated, reason when not empty); it returns them.
func (c *cluster) waitStatus(ids []string, status plane.BackendStatus, reason string, within time.Duration) []backend {
	c.t.Helper()
	var got []backend
	c.eventually(within, fmt.Sprintf("%d backends %s %s", len(ids), status, reason), func() bool {
		got = got[:0]
		done := true
		for _, id := range ids {
			b := c.get(id)
			got = append(got, b)
			done = done && b.Status == status && (reason == "" || b.TerminationReason == reason)
		}
		return done
	}, func() string { return fmt.Sprint("backends: ", got) })
	return got
}

// settle waits until no backend is on its way up or down, so that the API,
// DNS and Docker can be compared.
func (c *cluster) settle(within time.Duration) {
	c.t.Helper()
	var busy []backend
	c.eventually(within, "backends to settle (none between scheduled and ready, or terminating)", func() bool {
		busy = busy[:0]
		for _, b := range c.backends() {
			if b.Status != plane.StatusReady && b.Status != plane.StatusTerminated {
				busy = append(busy, b)
			}
		}
		return len(busy) == 0
	}, func() string { return fmt.Sprint("still busy: ", busy) })
}

// container is a backend container of one of the cluster's drones.
type container struct {
	docker.ContainerState
	drone string
}

// dockerPS lists the containers labelled with the cluster's drones, running
// or not, by backend ID.
func (c *cluster) dockerPS() map[string]container {
	c.t.Helper()
	out := map[string]container{}
	for _, d := range c.drones {
		cs, err := c.rt.List(context.Background(), d.id)
		if err != nil {
			c.t.Fatal(err)
		}
		for _, ct := range cs {
			out[ct.BackendID] = container{ct, d.id}
		}
	}
	return out
}

// resolve asks the controller's DNS server for the A records of a
// backend's name.
func (c *cluster) resolve(id string) ([]netip.Addr, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(id+"."+domain), dns.TypeA)
	cl := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := cl.Exchange(m, net.JoinHostPort(c.ctrlHost.ip.String(), "8053"))
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("%s", dns.RcodeToString[r.Rcode])
	}
	var addrs []netip.Addr
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			ip, _ := netip.AddrFromSlice(a.A.To4())
			addrs = append(addrs, ip)
		}
	}
	return addrs, nil
}

// fetch gets /healthz of a backend through its drone's proxy, from the
// root namespace.
func (c *cluster) fetch(b backend) error {
	d := c.drone(b.Drone)
	req, err := http.NewRequest(http.MethodGet, "http://"+net.JoinHostPort(d.host.ip.String(), proxyPort)+"/healthz", nil)
	if err != nil {
		return err
	}
	req.Host = b.ID + "." + domain
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// checkAgree asserts that the API, DNS and Docker agree, once backends have
// settled: every live backend has a running container of its drone,
// resolves to its drone's address and (ready, on a drone not in cut)
// answers through its proxy; no container runs whose backend the API holds
// terminated, or does not know. Terminations travel asynchronously, so it
// retries for a while before it reports what still disagrees.
func (c *cluster) checkAgree(cut ...*droneNode) {
	c.t.Helper()
	c.settle(90 * time.Second)
	var problems []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		problems = c.disagreements(cut)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(problems) > 0 {
		c.t.Errorf("API, DNS and docker ps disagree:\n  %s", strings.Join(problems, "\n  "))
		return
	}
	live := 0
	for _, b := range c.backends() {
		if b.Status.Live() {
			live++
		}
	}
	c.t.Logf("API, DNS and docker ps agree: %d live backends, each with its container and name", live)
}

func (c *cluster) disagreements(cut []*droneNode) []string {
	var problems []string
	ps := c.dockerPS()
	known := map[string]bool{}
	for _, b := range c.backends() {
		known[b.ID] = true
		ct, has := ps[b.ID]
		if !b.Status.Live() {
			if has && ct.Running {
				problems = append(problems, fmt.Sprintf("%s: its container %.12s still runs on %s", b, ct.ID, ct.drone))
			}
			if addrs, err := c.resolve(b.ID); err == nil {
				problems = append(problems, fmt.Sprintf("%s: still resolves to %v", b, addrs))
			}
			continue
		}
		switch {
		case !has:
			problems = append(problems, fmt.Sprintf("%s: no container", b))
		case !ct.Running:
			problems = append(problems, fmt.Sprintf("%s: its container %.12s is not running (exit %d)", b, ct.ID, ct.ExitCode))
		case ct.drone != b.Drone:
			problems = append(problems, fmt.Sprintf("%s: its container runs on %s", b, ct.drone))
		}
		d := c.drone(b.Drone)
		addrs, err := c.resolve(b.ID)
		if err != nil || !slices.Equal(addrs, []netip.Addr{d.host.ip}) {
			problems = append(problems, fmt.Sprintf("%s: resolves to %v (%v), want %s", b, addrs, err, d.host.ip))
		}
		if b.Status == plane.StatusReady && !slices.Contains(cut, d) {
			if err := c.fetch(b); err != nil {
				problems = append(problems, fmt.Sprintf("%s: through its proxy: %v", b, err))
			}
		}
	}
	for id, ct := range ps {
		if !known[id] && ct.Running {
			problems = append(problems, fmt.Sprintf("container %.12s of backend %s runs on %s, unknown to the API", ct.ID, id, ct.drone))
		}
	}
	slices.Sort(problems)
	return problems
}

// eventually polls cond every 100 ms until it holds, or fails the test
// after within with what and, if given, detail().
func (c *cluster) eventually(within time.Duration, what string, cond func() bool, detail func() string) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("timed out after %s waiting for %s", within, what)
			if detail != nil {
				msg += "; " + detail()
			}
			c.t.Fatal(msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logLatencies logs the median and the longest of ds.
func logLatencies(t *T, what string, ds []time.Duration) {
	t.Helper()
	if len(ds) == 0 {
		t.Logf("%s: none", what)
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	t.Logf("%s: n=%d p50=%s max=%s", what, len(s), s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}

// latencies are the answer times of the spawns that got an answer.
func latencies(ss []spawned) []time.Duration {
	var ds []time.Duration
	for _, s := range ss {
		if s.code != 0 {
			ds = append(ds, s.took)
		}
	}
	return ds
}
