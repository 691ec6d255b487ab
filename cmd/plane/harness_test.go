package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"plane"
	"plane/auth"
	"plane/drone/docker"
	"plane/drone/docker/dockertest"
	"plane/server/postgres/pgtest"
)

// planeBin is the plane binary built once for the tests that run it as a
// separate process (to SIGKILL it).
var planeBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if err := dockertest.Setup(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "plane-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	planeBin = filepath.Join(dir, "plane")
	if out, err := exec.Command("go", "build", "-o", planeBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build plane: %v\n%s", err, out)
		return 1
	}
	return pgtest.Run(m) // stops the Postgres cluster the store tests may start
}

// cluster is a controller with its own nats-server and sqlite file, and a
// drone with Docker, all real, in this process.
type cluster struct {
	t       testing.TB
	ns      *natsserver.Server
	ctrlCfg ControllerConfig
	ctrl    *Controller
	drone   *Drone
	droneID string
	project *plane.Project
	token   string
	api     string
	opts    clusterOpts
}

type clusterOpts struct {
	startTimeout time.Duration
	noDrone      bool
	domain       string // the cluster zone; default plane.localhost
	store        string // the controller's --store: a postgres:// URL; "" for sqlite in its data folder
}

func newCluster(t testing.TB, opts clusterOpts) *cluster {
	t.Helper()
	dockertest.Runtime(t)
	ctx := context.Background()
	ns, err := startNATS("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if opts.domain == "" {
		opts.domain = "plane.localhost"
	}
	c := &cluster{t: t, ns: ns, droneID: "t" + randHex(5), opts: opts}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	c.ctrlCfg = ControllerConfig{
		DataDir:    t.TempDir(),
		Store:      opts.store,
		HTTPAddr:   "127.0.0.1:0",
		BackendURL: "http://{id}." + opts.domain + ":9090/",
		NATSURL:    ns.ClientURL(),
		DNSAddr:    "127.0.0.1:0",
		Domain:     opts.domain,
		DNSIP:      "127.0.0.1",
		Logger:     testLogger(t, "controller"),
		// The tests' webhook receivers listen on 127.0.0.1.
		WebhookAllowPrivate: true,
	}
	c.startController()
	t.Cleanup(func() {
		if c.ctrl != nil {
			c.ctrl.Close()
		}
	})
	if c.project, err = c.ctrl.EnsureProject(ctx, plane.DefaultProject); err != nil {
		t.Fatal(err)
	}
	c.registerImage(c.project.ID, "demo", "plane-demo:latest", plane.PullNever)
	c.token = c.newToken(c.project.ID, nil)

	if !opts.noDrone {
		c.drone = c.startDrone(c.droneID, nil)
	} else {
		t.Cleanup(func() { dockertest.RemoveDroneContainers(t, c.droneID) })
	}
	return c
}

// startDrone opens a drone with the cluster's settings, changed by edit
// when not nil, and waits for its first heartbeat. At the end of the test
// it is closed once its backends have settled, and their containers removed.
func (c *cluster) startDrone(id string, edit func(*DroneConfig)) *Drone {
	c.t.Helper()
	c.t.Cleanup(func() { dockertest.RemoveDroneContainers(c.t, id) })
	cfg := DroneConfig{
		DataDir: c.t.TempDir(), ID: id, NATSURL: c.ns.ClientURL(), IP: "127.0.0.1", PublishIP: dockertest.PublishIP.String(),
		ProxyAddr: "127.0.0.1:0", Domain: c.opts.domain,
		StartTimeout: c.opts.startTimeout, StopGrace: 3 * time.Second, Logger: testLogger(c.t, "drone "+id),
	}
	if edit != nil {
		edit(&cfg)
	}
	d, err := OpenDrone(context.Background(), cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		c.settle()
		d.Close()
	})
	c.waitDroneID(id)
	return d
}

func (c *cluster) startController() {
	c.t.Helper()
	ctrl, err := OpenController(context.Background(), c.ctrlCfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.ctrl = ctrl
	c.api = "http://" + ctrl.Server.Addr()
}

// settle waits until no backend is between scheduled and ready, so that
// closing the drone leaves no container half-created behind Docker's back.
func (c *cluster) settle() {
	if c.ctrl == nil {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		live := true
		bs, err := c.ctrl.DB.FindBackends(context.Background(), plane.BackendFilter{Live: &live, Limit: 1000})
		if err != nil {
			return
		}
		busy := false
		for _, b := range bs {
			busy = busy || b.Status.Rank() < plane.StatusReady.Rank()
		}
		if !busy {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitDrone waits until the controller has seen the drone's heartbeat.
func (c *cluster) waitDrone() {
	c.t.Helper()
	c.waitDroneID(c.droneID)
}

// waitDroneID waits until the controller has seen drone id's heartbeat.
func (c *cluster) waitDroneID(id string) {
	c.t.Helper()
	eventually(c.t, 10*time.Second, "drone heartbeat", func() bool {
		d, err := c.ctrl.DB.FindDroneByID(context.Background(), id)
		return err == nil && d.Status == plane.DroneReady
	})
}

func (c *cluster) registerImage(projectID int64, name, ref string, policy plane.PullPolicy) {
	c.t.Helper()
	img, err := plane.NewImage(projectID, plane.ImageInput{Name: &name, Ref: &ref, PullPolicy: &policy})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.ctrl.DB.CreateImage(context.Background(), img); err != nil {
		c.t.Fatal(err)
	}
}

// newToken stores a token for the project and returns it signed; edit may
// change the record first.
func (c *cluster) newToken(projectID int64, edit func(*plane.Token)) string {
	c.t.Helper()
	tok := &plane.Token{ID: auth.NewTokenID(), ProjectID: projectID, Name: "test", Scopes: plane.AllScopes, CreatedAt: time.Now()}
	if edit != nil {
		edit(tok)
	}
	key, err := auth.LoadOrCreateKey(c.ctrlCfg.DataDir)
	if err != nil {
		c.t.Fatal(err)
	}
	signed, err := (&auth.Issuer{Key: ed25519.PrivateKey(key)}).IssueAPIToken(tok)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.ctrl.DB.CreateToken(context.Background(), tok); err != nil {
		c.t.Fatal(err)
	}
	return signed
}

// call sends a JSON request with the cluster's token and returns the status
// and the raw body.
func (c *cluster) call(method, path string, body any) (int, []byte) {
	c.t.Helper()
	return c.callWith(c.token, method, path, body)
}

func (c *cluster) callWith(token, method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.api+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, data
}

// spawn posts a spawn request and decodes the answer; it fails the test on
// any status other than 200 and 201.
func (c *cluster) spawn(req map[string]any) (int, backendOut) {
	c.t.Helper()
	status, data := c.call(http.MethodPost, "/api/v1/backends", req)
	if status != http.StatusOK && status != http.StatusCreated {
		c.t.Fatalf("spawn %v: %d %s", req, status, data)
	}
	var b backendOut
	if err := json.Unmarshal(data, &b); err != nil {
		c.t.Fatalf("decode %s: %v", data, err)
	}
	return status, b
}

func (c *cluster) get(id string) backendOut {
	c.t.Helper()
	status, data := c.call(http.MethodGet, "/api/v1/backends/"+id, nil)
	if status != http.StatusOK {
		c.t.Fatalf("get %s: %d %s", id, status, data)
	}
	var b backendOut
	if err := json.Unmarshal(data, &b); err != nil {
		c.t.Fatal(err)
	}
	return b
}

// waitStatus polls the API until the backend reaches status.
func (c *cluster) waitStatus(id string, status plane.BackendStatus, within time.Duration) backendOut {
	c.t.Helper()
	var b backendOut
	eventually(c.t, within, fmt.Sprintf("backend %s %s", id, status), func() bool {
		b = c.get(id)
		return b.Status == status
	})
	return b
}

// eventually polls cond every 20 ms until it holds or within has passed.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testLogger collects what a component logs and prints it if the test
// fails; printing later than the test's end would panic, so no t.Log here.
func testLogger(t testing.TB, name string) *slog.Logger {
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", name, buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// inspect returns the docker state of a backend's container.
func inspect(t testing.TB, backendID string) docker.ContainerState {
	t.Helper()
	st, err := dockertest.Runtime(t).Inspect(context.Background(), "plane-"+backendID)
	if err != nil {
		t.Fatalf("inspect container of %s: %v", backendID, err)
	}
	return st
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
