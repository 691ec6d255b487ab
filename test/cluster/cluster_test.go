// Package cluster_test runs fault scenarios against a real multi-host
// cluster made on this one machine: three nats-servers clustered with
// JetStream, a controller and three drones, each process in a network
// namespace of its own (hosts_test.go), started as an operator would start
// them (nodes_test.go). A scenario cuts hosts off, kills processes and
// checks what the API, the controller's DNS and Docker say afterwards.
//
// The scenarios need root, Docker and the demo image, and take minutes:
// they run only with PLANE_CLUSTER_TESTS=1 (make test-cluster).
package cluster_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/drone/docker"
)

// TestSpread: 40 spawns at once on three idle drones land evenly.
func TestSpread(tt *testing.T) {
	t := scenario(tt)
	c := newCluster(t, clusterOpts{})
	const n = 40
	ss := c.spawnMany(n, nil, true)
	logLatencies(t, "spawn until ready (wait: true)", latencies(ss))
	counts := map[string]int{}
	var failed []string
	for _, s := range ss {
		if s.ok() {
			counts[s.b.Drone]++
		} else {
			failed = append(failed, s.String())
		}
	}
	placement := c.placement(counts)
	t.Logf("placement of %d spawns: %s", n, placement)
	if len(failed) > 0 {
		t.Errorf("%d of %d spawns got no backend:\n  %s", len(failed), n, strings.Join(failed, "\n  "))
	}
	// An even share is 13 or 14 each.
	lo, hi := n/len(c.drones)-3, (n+len(c.drones)-1)/len(c.drones)+3
	for _, d := range c.drones {
		if got := counts[d.id]; got < lo || got > hi {
			t.Errorf("drone %s got %d of %d backends, want %d to %d (placement: %s)", d.host.name, got, n, lo, hi, placement)
		}
	}
	c.checkAgree()
}

// TestDronePartitionHeals: a drone cut off for a minute, shorter than the
// lost limit, keeps its backends running and serving the users that still
// reach it, and is back to ready within seconds of healing.
func TestDronePartitionHeals(tt *testing.T) {
	t := scenario(tt)
	requireCluster(t)
	const cutFor = 60 * time.Second
	var opts clusterOpts
	if controllerHasFlag("drone-lost-after") {
		opts.controllerFlags = []string{"--drone-lost-after", "2m"}
	} else {
		t.Log("plane controller has no --drone-lost-after: its default lost limit applies")
	}
	c := newCluster(t, opts)
	ss := c.spawnMany(6, nil, true)
	logLatencies(t, "spawn until ready (wait: true)", latencies(ss))
	target, ids := c.busiest(ss)
	t.Logf("cutting %s (%s) with backends %s", target.host.name, target.id, strings.Join(ids, ", "))
	before := c.containersOf(ids)

	probe := c.startProbe(target, ids)
	c.eventually(15*time.Second, "the probe's first 200", func() bool {
		return slices.ContainsFunc(probeResults(t, probe), func(r probeResult) bool { return r.ok })
	}, func() string { return probe.tail(2000) })

	cutAt := time.Now()
	c.net.cut(target.host)
	// The cut is real: from outside, its proxy is out of reach.
	if err := c.fetch(c.get(ids[0])); err == nil {
		t.Fatalf("backend %s answers through %s's proxy from the root namespace: the host is not cut off", ids[0], target.host.name)
	}
	last := c.droneStatus()[target.id]
	for time.Since(cutAt) < cutFor {
		if st := c.droneStatus()[target.id]; st != last {
			t.Logf("%s after the cut: %s is %s", time.Since(cutAt).Round(time.Second), target.host.name, st)
			last = st
		}
		time.Sleep(time.Second)
	}
	healAt := time.Now()
	c.net.heal(target.host)

	// Ready again: a heartbeat after the heal, and every backend ready.
	var back time.Duration
	var state string
	c.eventually(90*time.Second, target.host.name+" and its backends ready again after the heal", func() bool {
		d := c.droneInfo(target.id)
		state = fmt.Sprintf("drone %s, last heartbeat %s", d.Status, d.LastHeartbeat.Format(time.StampMilli))
		if d.Status != plane.DroneReady || d.LastHeartbeat.Before(healAt) {
			return false
		}
		for _, id := range ids {
			if b := c.get(id); b.Status != plane.StatusReady {
				state += "; " + b.String()
				return false
			}
		}
		back = time.Since(healAt)
		return true
	}, func() string { return state })
	t.Logf("heal to ready: %s", back.Round(time.Millisecond))
	if back > 10*time.Second {
		t.Errorf("%s and its backends were ready again %s after the heal, want within 10s", target.host.name, back.Round(time.Millisecond))
	}

	probe.stop()
	var ok int
	var fails []string
	for _, r := range probeResults(t, probe) {
		if r.at.Before(cutAt) || r.at.After(healAt) {
			continue
		}
		if r.ok {
			ok++
		} else {
			fails = append(fails, fmt.Sprintf("%s after the cut: %s: %s", r.at.Sub(cutAt).Round(time.Millisecond), r.host, r.what))
		}
	}
	t.Logf("during the cut the probe in %s got %d answers 200 and %d failures through its proxy", target.host.name, ok, len(fails))
	if len(fails) > 0 {
		t.Errorf("the proxy of the cut drone failed its users %d times:\n  %s", len(fails), strings.Join(first(fails, 10), "\n  "))
	}
	if min := int(cutFor / (200 * time.Millisecond) / 2); ok < min {
		t.Errorf("the probe got %d answers during the cut, want at least %d", ok, min)
	}

	after := c.containersOf(ids)
	for _, id := range ids {
		if b, a := before[id], after[id]; a != b {
			t.Errorf("backend %s: container was %s, now %s: want the same, never restarted", id, b, a)
		}
	}

	// Ready is the drone's heartbeats reaching the controller; it must take
	// the controller's requests as soon, which go the other way: terminate
	// one of its backends, and retry until the drone answers, to measure.
	var firstErr string
	var answered time.Duration
	c.eventually(150*time.Second, "the healed drone to answer a terminate", func() bool {
		code, body := c.call(http.MethodPost, "/api/v1/backends/"+ids[0]+"/terminate", map[string]any{"hard": false})
		if code == http.StatusOK || code == http.StatusAccepted {
			answered = time.Since(healAt)
			return true
		}
		if firstErr == "" {
			firstErr = fmt.Sprintf("%s after the heal: %d %s", time.Since(healAt).Round(time.Millisecond), code, bytes.TrimSpace(body))
		}
		time.Sleep(time.Second)
		return false
	}, nil)
	c.waitStatus(ids[:1], plane.StatusTerminated, "", 30*time.Second)
	t.Logf("heal to the drone answering the controller's requests (terminate of %s): %s", ids[0], answered.Round(time.Millisecond))
	if firstErr != "" {
		t.Logf("first terminate failed, %s", firstErr)
	}
	if answered > 10*time.Second {
		t.Errorf("%s was ready %s after the heal, but answered the controller's requests only %s after it, want within 10s (first try %s)",
			target.host.name, back.Round(time.Millisecond), answered.Round(time.Millisecond), firstErr)
	}
	c.checkAgree()
}

// TestDroneLostAfterPartition: a drone cut off for longer than the lost
// limit loses its backends (terminated, lost, their keys free again), and
// once back it stops exactly those containers.
func TestDroneLostAfterPartition(tt *testing.T) {
	t := scenario(tt)
	requireCluster(t)
	if !controllerHasFlag("drone-lost-after") {
		t.Skip("skipping: plane controller has no --drone-lost-after yet (the change that adds it has not landed)")
	}
	const cutFor = 30 * time.Second
	c := newCluster(t, clusterOpts{controllerFlags: []string{"--drone-lost-after", "20s"}})
	ss := c.spawnMany(6, func(i int) string { return fmt.Sprintf("lost-%d", i) }, true)
	logLatencies(t, "spawn until ready (wait: true)", latencies(ss))
	target, ids := c.busiest(ss)
	keys := map[string]string{}
	for _, s := range ss {
		keys[s.b.ID] = s.b.Key
	}
	t.Logf("cutting %s (%s) with backends %s", target.host.name, target.id, strings.Join(ids, ", "))

	cutAt := time.Now()
	c.net.cut(target.host)
	c.waitStatus(ids, plane.StatusTerminated, string(plane.ReasonLost), cutFor)
	t.Logf("cut to lost: %s", time.Since(cutAt).Round(time.Millisecond))

	// Their keys are free: a keyed spawn starts a new backend elsewhere.
	var again []spawned
	for _, id := range ids {
		s := c.spawn(keys[id], true)
		again = append(again, s)
		switch {
		case !s.ok():
			t.Errorf("spawn with key %s of lost backend %s: %s", keys[id], id, s)
		case s.b.ID == id || !s.b.Spawned:
			t.Errorf("spawn with key %s of lost backend %s: got %s (spawned %t), want a new backend", keys[id], id, s.b, s.b.Spawned)
		case s.b.Drone == target.id:
			t.Errorf("spawn with key %s: placed on the cut drone: %s", keys[id], s.b)
		}
	}
	logLatencies(t, "keyed spawns of lost keys", latencies(again))
	if wait := cutFor - time.Since(cutAt); wait > 0 {
		time.Sleep(wait)
	}
	healAt := time.Now()
	c.net.heal(target.host)

	// Back, it is told to stop exactly the lost backends' containers.
	var running []string
	c.eventually(60*time.Second, "the lost backends' containers to stop", func() bool {
		running = running[:0]
		ps := c.dockerPS()
		for _, id := range ids {
			if ct, ok := ps[id]; ok && ct.Running {
				running = append(running, id)
			}
		}
		return len(running) == 0
	}, func() string { return "still running: " + strings.Join(running, ", ") })
	t.Logf("heal to lost containers stopped: %s", time.Since(healAt).Round(time.Millisecond))
	for _, id := range ids {
		if b := c.get(id); b.Status != plane.StatusTerminated || b.TerminationReason != string(plane.ReasonLost) {
			t.Errorf("lost backend %s is now %s, want terminated (lost)", id, b)
		}
	}
	for _, s := range again {
		if s.ok() && c.get(s.b.ID).Status != plane.StatusReady {
			t.Errorf("the backend that took a lost key is now %s, want ready", c.get(s.b.ID))
		}
	}
	c.waitDrones(30*time.Second, target)
	c.checkAgree()
}

// TestKillDroneDuringBurst: a drone killed (SIGKILL) in the middle of a
// burst of 15 spawns costs none of them a backend, those sent after the
// kill included; restarted, it settles what it had taken.
func TestKillDroneDuringBurst(tt *testing.T) {
	t := scenario(tt)
	c := newCluster(t, clusterOpts{})
	victim := c.drones[1]
	// 15 spawns sent 20 ms apart, each answered in some tens of
	// milliseconds: several are in flight at any time, and the kill lands
	// among them.
	const n, killBefore, every = 15, 5, 20 * time.Millisecond
	ss := make([]spawned, n)
	var wg sync.WaitGroup
	for i := range n {
		if i == killBefore {
			victim.proc.kill9()
			t.Logf("killed %s (pid %d) after %d of %d spawns were sent", victim.host.name, victim.proc.cmd.Process.Pid, i, n)
		}
		wg.Go(func() { ss[i] = c.spawn("", false) })
		time.Sleep(every)
	}
	wg.Wait()
	logLatencies(t, "spawn answers (wait: false)", latencies(ss))

	counts := map[string]int{}
	var failed []string
	for i, s := range ss {
		when := "before"
		if i >= killBefore {
			when = "after"
		}
		if s.ok() {
			counts[s.b.Drone]++
		} else {
			failed = append(failed, fmt.Sprintf("spawn %d (sent %s the kill): %s", i+1, when, s))
		}
		if s.ok() && s.b.Drone == victim.id {
			t.Logf("spawn %d (sent %s the kill) placed on the killed drone: %s; container: %s", i+1, when, s, c.containersOf([]string{s.b.ID})[s.b.ID])
		}
	}
	t.Logf("placement of %d spawns: %s", n, c.placement(counts))
	if len(failed) > 0 {
		t.Errorf("%d of %d spawns got no backend with %s killed:\n  %s",
			len(failed), n, victim.host.name, strings.Join(failed, "\n  "))
	}

	// The others' backends come up; the victim, restarted, adopts or ends
	// what it had taken.
	var others []string
	for _, s := range ss {
		if s.ok() && s.b.Drone != victim.id {
			others = append(others, s.b.ID)
		}
	}
	c.waitStatus(others, plane.StatusReady, "", 60*time.Second)
	c.startDrone(victim)
	c.waitDrones(30*time.Second, victim)
	c.checkAgree()
	for _, s := range ss {
		if s.ok() && s.b.Drone == victim.id {
			t.Logf("after the restart: %s", c.get(s.b.ID))
		}
	}
}

// busiest returns the drone that got the most of ss's backends, and those.
func (c *cluster) busiest(ss []spawned) (*droneNode, []string) {
	c.t.Helper()
	on := map[string][]string{}
	for _, s := range ss {
		if !s.ok() {
			c.t.Fatalf("spawn: %s", s)
		}
		on[s.b.Drone] = append(on[s.b.Drone], s.b.ID)
	}
	var best *droneNode
	for _, d := range c.drones {
		if best == nil || len(on[d.id]) > len(on[best.id]) {
			best = d
		}
	}
	return best, on[best.id]
}

// placement is "d1=13 d2=13 d3=14".
func (c *cluster) placement(counts map[string]int) string {
	var parts []string
	for _, d := range c.drones {
		parts = append(parts, fmt.Sprintf("%s=%d", d.host.name, counts[d.id]))
	}
	for id, n := range counts {
		if !slices.Contains(c.droneIDs(), id) {
			parts = append(parts, fmt.Sprintf("%q=%d", id, n))
		}
	}
	return strings.Join(parts, " ")
}

// droneInfo is the controller's record of a drone.
func (c *cluster) droneInfo(id string) plane.Drone {
	c.t.Helper()
	d, ok := c.dronesNow()[id]
	if !ok {
		c.t.Fatalf("the controller has no drone %s", id)
	}
	return d
}

// containersOf describes each backend's container: ID, running, start
// time; a container restarted or replaced describes differently.
func (c *cluster) containersOf(ids []string) map[string]string {
	c.t.Helper()
	out := map[string]string{}
	for _, id := range ids {
		b, err := exec.Command("docker", "inspect", "--format", "{{.Id}} {{.State.Status}} started={{.State.StartedAt}} restarts={{.RestartCount}}", docker.ContainerNamePrefix+id).CombinedOutput()
		if err != nil {
			out[id] = fmt.Sprintf("(docker inspect: %v: %s)", err, strings.TrimSpace(string(b)))
			continue
		}
		full, rest, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		out[id] = fmt.Sprintf("%.12s %s", full, rest)
	}
	return out
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("… and %d more", len(s)-n))
	}
	return s
}
