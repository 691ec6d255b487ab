package main

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"plane"
)

// droneProcess runs `plane drone` as a separate process, so that a test can
// SIGKILL it.
type droneProcess struct {
	cmd *exec.Cmd
	log *syncBuffer
}

func startDroneProcess(t *testing.T, c *cluster, dataDir, proxyAddr string) *droneProcess {
	t.Helper()
	log := &syncBuffer{}
	cmd := exec.Command(planeBin, "drone", "--data", dataDir, "--id", c.droneID, "--nats", c.ns.ClientURL(), "--ip", "127.0.0.1", "--proxy", proxyAddr, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &droneProcess{cmd: cmd, log: log}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("drone process log:\n%s", log.String())
		}
	})
	return p
}

func (p *droneProcess) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

// A drone killed with SIGKILL and started again adopts the containers that
// kept running, without restarting them, and reports those that died while
// it was down with their exit code.
func TestDroneRestartAdoptsBackends(t *testing.T) {
	c := newCluster(t, clusterOpts{noDrone: true})
	data := t.TempDir()
	proxyAddr := freeAddr(t)
	p := startDroneProcess(t, c, data, proxyAddr)
	c.waitDrone()

	var ids []string
	for range 4 {
		_, b := c.spawn(map[string]any{"image": "demo", "wait": true})
		if b.Status != plane.StatusReady {
			t.Fatalf("backend %s is %s (%s)", b.ID, b.Status, b.Error)
		}
		ids = append(ids, b.ID)
	}
	keep, doomed := ids[:3], ids[3]
	before := map[string]string{}
	for _, id := range keep {
		before[id] = inspect(t, id).ID
	}

	p.kill()
	// While the drone is down, one container dies by SIGKILL.
	if out, err := exec.Command("docker", "kill", "plane-"+doomed).CombinedOutput(); err != nil {
		t.Fatalf("docker kill: %v %s", err, out)
	}
	startDroneProcess(t, c, data, proxyAddr)

	// The proxy routes to adopted backends from local state at once, without
	// waiting for the controller.
	client := proxyClientTo(proxyAddr)
	for _, id := range keep {
		var status int
		eventually(t, 10*time.Second, "proxy of the restarted drone", func() bool {
			req, _ := http.NewRequest(http.MethodGet, "http://"+id+".plane.localhost/healthz", nil)
			req.Header = tokenCookie(c.connectToken(id, "", time.Hour))
			resp, err := client.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			status = resp.StatusCode
			return status != http.StatusServiceUnavailable // 503 only while the key is on its way
		})
		if status != http.StatusOK {
			t.Errorf("GET through the restarted proxy: %d", status)
		}
	}

	b := c.waitStatus(doomed, plane.StatusTerminated, 15*time.Second)
	if b.TerminationReason != plane.ReasonExited || b.ExitCode == nil || *b.ExitCode != 137 {
		t.Errorf("killed backend: reason %q exit code %v, want exited 137", b.TerminationReason, deref(b.ExitCode))
	}
	for _, id := range keep {
		b := c.get(id)
		if b.Status != plane.StatusReady {
			t.Errorf("backend %s is %s after the drone restart, want ready", id, b.Status)
		}
		st := inspect(t, id)
		if !st.Running || st.ID != before[id] {
			t.Errorf("container of %s: running %v id %s, want the same container still running", id, st.Running, st.ID)
		}
		if n := restartCount(t, id); n != "0" {
			t.Errorf("container of %s restarted %s times", id, n)
		}
		// The adopted backend is still driven by the drone: it can be terminated.
		if status, data := c.call("POST", "/api/v1/backends/"+id+"/terminate", map[string]bool{"hard": true}); status != 202 {
			t.Errorf("terminate adopted backend %s: %d %s", id, status, data)
		}
	}
	for _, id := range keep {
		c.waitStatus(id, plane.StatusTerminated, 10*time.Second)
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func restartCount(t *testing.T, backendID string) string {
	t.Helper()
	out, err := exec.Command("docker", "inspect", "-f", "{{.RestartCount}}/{{.State.StartedAt}}", "plane-"+backendID).Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out[:1])
}

// A status change that happens while the controller is down reaches the
// store when it starts again: the drone's outbox and the durable JetStream
// consumer keep it.
func TestControllerRestartKeepsStatusChanges(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	_, b := c.spawn(map[string]any{"image": "demo", "lifetime_seconds": 2, "wait": true})
	if b.Status != plane.StatusReady {
		t.Fatalf("backend is %s (%s)", b.Status, b.Error)
	}
	c.ctrl.Close()
	c.ctrl = nil
	// The lifetime ends while the controller is down: wait for the container to go.
	eventually(t, 15*time.Second, "container removed", func() bool {
		_, err := c.drone.Runtime.Inspect(context.Background(), "plane-"+b.ID)
		return err != nil
	})
	c.startController()
	b = c.waitStatus(b.ID, plane.StatusTerminated, 10*time.Second)
	if b.TerminationReason != plane.ReasonLifetime {
		t.Errorf("reason %q, want lifetime", b.TerminationReason)
	}
	if n := len(b.StatusHistory); n != 7 {
		t.Errorf("history has %d entries, want all 7: %+v", n, b.StatusHistory)
	}
}

// A backend the controller holds terminated (here: marked lost, as when
// its drone was unreachable for a while) but its drone still runs is
// stopped when the drone's heartbeat lists it.
func TestControllerStopsBackendsItHoldsTerminated(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	_, b := c.spawn(map[string]any{"image": "demo", "wait": true})
	ev := plane.BackendEvent{BackendID: b.ID, DroneID: b.Drone, Status: plane.StatusTerminated, Time: time.Now(), Reason: plane.ReasonLost, Error: "test: drone unreachable"}
	if _, err := c.ctrl.Dispatch.Apply(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the drone to stop the container", func() bool {
		_, err := c.drone.Runtime.Inspect(context.Background(), "plane-"+b.ID)
		return err != nil
	})
	if got := c.get(b.ID); got.TerminationReason != plane.ReasonLost {
		t.Errorf("reason %q, want the controller's lost to stand", got.TerminationReason)
	}
}

// An admin's drain outlives a restart of the drone: it keeps refusing new
// backends until it is undrained.
func TestDroneRestartKeepsDrain(t *testing.T) {
	c := newCluster(t, clusterOpts{noDrone: true})
	data := t.TempDir()
	proxyAddr := freeAddr(t)
	p := startDroneProcess(t, c, data, proxyAddr)
	c.waitDrone()
	ctx := context.Background()
	if err := c.ctrl.Dispatch.Drain(ctx, c.droneID, true); err != nil {
		t.Fatal(err)
	}
	p.kill()
	startDroneProcess(t, c, data, proxyAddr)
	// The restarted drone's heartbeats say draining.
	restarted := time.Now()
	eventually(t, 10*time.Second, "a heartbeat of the restarted drone", func() bool {
		d, err := c.ctrl.DB.FindDroneByID(ctx, c.droneID)
		return err == nil && d.LastHeartbeat.After(restarted)
	})
	if d, _ := c.ctrl.DB.FindDroneByID(ctx, c.droneID); !d.Draining || d.Status != plane.DroneDraining {
		t.Fatalf("after the restart: draining %v status %s, want draining", d.Draining, d.Status)
	}
	if status, data := c.call("POST", "/api/v1/backends", map[string]any{"image": "demo"}); status != 503 || !strings.Contains(string(data), "draining") {
		t.Fatalf("spawn on a drained drone: %d %s", status, data)
	}
	if err := c.ctrl.Dispatch.Drain(ctx, c.droneID, false); err != nil {
		t.Fatal(err)
	}
	c.waitDrone()
	if _, b := c.spawn(map[string]any{"image": "demo", "wait": true}); b.Status != plane.StatusReady {
		t.Fatalf("spawn after undrain: %s (%s)", b.Status, b.Error)
	}
}
