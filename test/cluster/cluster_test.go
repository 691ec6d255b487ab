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
	"math"
	"net/http"
	"net/netip"
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
	// Within ±3 of an even share, n/3 = 13.3: 11 to 16 each.
	even := float64(n) / float64(len(c.drones))
	for _, d := range c.drones {
		if got := counts[d.id]; math.Abs(float64(got)-even) > 3 {
			t.Errorf("drone %s got %d of %d backends, want within ±3 of an even share %.1f, %d to %d (placement: %s)",
				d.host.name, got, n, even, int(math.Ceil(even-3)), int(math.Floor(even+3)), placement)
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
	// Spawns just after the cut, while the controller still holds the
	// drone ready: one placed on it waits out the request to it (5 s), then
	// goes to the next drone.
	early := c.spawnMany(2, nil, true)
	logLatencies(t, "spawn until ready (wait: true) just after the cut, the drone not yet known silent", latencies(early))
	c.checkSpawnedElsewhere(target, "just after the cut", early)

	// Past --drone-unreachable-after the controller shows the drone
	// unreachable: it takes no new backends, but its backends keep their
	// status, flagged drone_unreachable, and their names in DNS (the bug
	// was NXDOMAIN for them from 30 s on, and their end on the heal).
	c.eventually(cutFor/2, target.host.name+" shown unreachable", func() bool {
		return c.droneStatus()[target.id] == plane.DroneUnreachable
	}, func() string { return fmt.Sprint("drone status: ", c.droneStatus()) })
	t.Logf("%s after the cut: %s is %s", time.Since(cutAt).Round(time.Millisecond), target.host.name, plane.DroneUnreachable)
	// The flag follows the drone's status within the second the
	// controller caches it.
	var held []string
	c.eventually(10*time.Second, "the cut drone's backends held: ready, flagged drone_unreachable, resolving to their drone", func() bool {
		held = c.heldWhileUnreachable(target, ids)
		return len(held) == 0
	}, func() string { return strings.Join(held, "; ") })
	t.Logf("%s after the cut: its %d backends are ready, flagged drone_unreachable, and resolve to %s", time.Since(cutAt).Round(time.Millisecond), len(ids), target.host.ip)

	// Spawns meanwhile go to the other drones.
	during := c.spawnMany(4, nil, true)
	logLatencies(t, "spawn until ready (wait: true) during the cut, the drone unreachable", latencies(during))
	c.checkSpawnedElsewhere(target, "during the cut, the drone unreachable", during)

	// Until the heal: the drone's status, and its backends held, every
	// second.
	last, checks := plane.DroneUnreachable, 0
	var lapses []string
	for time.Since(cutAt) < cutFor {
		if st := c.droneStatus()[target.id]; st != last {
			t.Logf("%s after the cut: %s is %s", time.Since(cutAt).Round(time.Second), target.host.name, st)
			last = st
		}
		checks++
		for _, p := range c.heldWhileUnreachable(target, ids) {
			lapses = append(lapses, fmt.Sprintf("%s after the cut: %s", time.Since(cutAt).Round(time.Millisecond), p))
		}
		time.Sleep(time.Second)
	}
	if len(lapses) > 0 {
		t.Errorf("during the cut, after %s was shown unreachable, its backends were not held %d times:\n  %s",
			target.host.name, len(lapses), strings.Join(first(lapses, 10), "\n  "))
	} else {
		t.Logf("checked %d times until the heal: the cut drone's backends stayed ready, flagged drone_unreachable, resolving to %s", checks, target.host.ip)
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
// burst of 15 spawns costs none of them a backend: every spawn sent after
// the kill is answered 2xx (no 503) and ends ready on a surviving drone;
// those sent before it and placed on the killed drone may end terminated
// (failed, lost), and are counted apart. Restarted, the drone settles what it had taken.
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
	logLatencies(t, "spawn answers (wait: false), all", latencies(ss))
	logLatencies(t, "  those sent before the kill", latencies(ss[:killBefore]))
	logLatencies(t, "  those sent after the kill", latencies(ss[killBefore:]))

	counts := map[string]int{}
	var failed, onVictim, after, survivors []string
	for i, s := range ss {
		when := sentWhen(i, killBefore)
		switch {
		case !s.ok():
			failed = append(failed, fmt.Sprintf("spawn %d (sent %s the kill): %s", i+1, when, s))
			continue
		case s.b.Drone == victim.id && i >= killBefore:
			t.Errorf("spawn %d, sent after the kill, placed on the killed drone %s: %s", i+1, victim.host.name, s)
		case s.b.Drone == victim.id:
			onVictim = append(onVictim, s.b.ID)
			t.Logf("spawn %d (sent before the kill) placed on the killed drone: %s; container: %s", i+1, s, c.containersOf([]string{s.b.ID})[s.b.ID])
		default:
			survivors = append(survivors, s.b.ID)
		}
		counts[s.b.Drone]++
		if i >= killBefore {
			after = append(after, s.b.ID)
		}
	}
	t.Logf("placement of %d spawns: %s", n, c.placement(counts))
	if len(failed) > 0 {
		t.Errorf("%d of %d spawns were not answered 2xx with %s killed:\n  %s",
			len(failed), n, victim.host.name, strings.Join(failed, "\n  "))
	}

	// Before the victim is back: every backend placed on a surviving drone
	// ready there, those sent after the kill all of them.
	bs := c.waitStatus(survivors, plane.StatusReady, "", 60*time.Second)
	for _, b := range bs {
		if b.Drone == victim.id {
			t.Errorf("backend %s, placed on a surviving drone, is now on the killed one", b)
		}
	}
	t.Logf("ready on the surviving drones: %d backends, of the %d spawns sent after the kill and the %d sent before it not placed on %s",
		len(survivors), len(after), killBefore-len(onVictim), victim.host.name)

	// The victim, restarted, adopts or ends what it had taken: those may
	// end lost or terminated, which is not a spawn lost.
	c.startDrone(victim)
	c.waitDrones(30*time.Second, victim)
	c.checkAgree()
	ends := map[string]int{}
	for _, id := range onVictim {
		b := c.get(id)
		end := string(b.Status)
		if b.TerminationReason != "" {
			end += " (" + b.TerminationReason + ")"
		}
		ends[end]++
		t.Logf("sent before the kill, placed on %s, after its restart: %s", victim.host.name, b)
	}
	t.Logf("%d spawns sent before the kill were placed on the killed drone; after its restart: %v", len(onVictim), ends)
}

// checkSpawnedElsewhere reports the spawns of ss (with wait) that got no
// backend, or one not ready, or one on drone d, which is cut off.
func (c *cluster) checkSpawnedElsewhere(d *droneNode, when string, ss []spawned) {
	c.t.Helper()
	for i, s := range ss {
		switch {
		case !s.ok():
			c.t.Errorf("spawn %d %s: no backend: %s", i+1, when, s)
		case s.b.Drone == d.id:
			c.t.Errorf("spawn %d %s placed on the cut drone %s: %s", i+1, when, d.host.name, s)
		case s.b.Status != plane.StatusReady:
			c.t.Errorf("spawn %d %s with wait answered %s, want ready", i+1, when, s)
		}
	}
}

// heldWhileUnreachable says how the API or DNS fails backends ids of drone
// d, which the controller holds unreachable: each should keep its status
// ready, be flagged drone_unreachable, and resolve to d's address.
func (c *cluster) heldWhileUnreachable(d *droneNode, ids []string) []string {
	c.t.Helper()
	var problems []string
	for _, id := range ids {
		b := c.get(id)
		if b.Status != plane.StatusReady || b.Drone != d.id || !b.DroneUnreachable {
			problems = append(problems, fmt.Sprintf("API: %s (drone_unreachable %t), want ready on %s, flagged drone_unreachable", b, b.DroneUnreachable, d.id))
		}
		if addrs, err := c.resolve(id); err != nil || !slices.Equal(addrs, []netip.Addr{d.host.ip}) {
			problems = append(problems, fmt.Sprintf("DNS: %s resolves to %v (%v), want %s", id, addrs, err, d.host.ip))
		}
	}
	return problems
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
