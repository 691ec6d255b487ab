package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"plane"
	"plane/server/dispatch"
)

// TestKillNATSLeaderDuringBurst: the nats-server that leads every stream,
// bucket and the status consumer, killed (SIGKILL) in the middle of a burst
// of spawns, costs none of them more than a few seconds, nor any status
// change or log line. With a second server cut off too JetStream has no
// quorum, and /readyz says so until it is back. Back on its store, the
// killed server rejoins every stream.
func TestKillNATSLeaderDuringBurst(tt *testing.T) {
	t := scenario(tt)
	c := newCluster(t, clusterOpts{})
	// The leaders spread over the servers as the controller makes the
	// streams: gather them on one server, so that its kill takes them all,
	// and the controller's connection with them: the one the controller is
	// connected to (or, should none say so, the status stream's leader).
	leader := c.streamLeader(plane.StreamStatus)
	if h := c.serverOf("plane-controller"); h != nil {
		leader = h.name
	}
	t.Logf("leaders as the controller made them: %s", c.leaders())
	gatherAt := time.Now()
	c.gatherLeaders(leader, 30*time.Second)
	c.waitWhole(30 * time.Second)
	vi := c.natsIndex(leader)
	victim := c.nats[vi]
	t.Logf("leaders gathered on %s in %s by step-down requests: %s; JetStream meta leader %s; clients of %s: %s",
		victim.name, time.Since(gatherAt).Round(time.Millisecond), c.leaders(), c.metaLeader(victim), victim.name, c.clientsOf(victim))

	// 15 spawns with wait, sent 100 ms apart, each ready in about a second:
	// several are in flight, between scheduled and ready, at the kill.
	// Every spawn answers within 5 s, also when the killed server is the
	// one the controller and the drones are connected to: a spawn request
	// lost while they reconnect is sent again after a second
	// (dispatch.Dispatcher.ResendAfter) instead of waiting out the 5 s
	// request timeout, which once made a spawn take 5.3 s.
	const n, killBefore, every, bound = 15, 5, 100 * time.Millisecond, 5 * time.Second
	ss := make([]spawned, n)
	var wg sync.WaitGroup
	var killedAt time.Time
	var moved chan string
	for i := range n {
		if i == killBefore {
			led := c.ledBy(victim.name)
			if len(led) != len(c.jsAssets()) {
				t.Errorf("%s leads only %v of %v at the kill: %s", victim.name, led, c.jsAssets(), c.leaders())
			}
			c.natsProcs[vi].kill9()
			killedAt = time.Now()
			t.Logf("killed %s (pid %d), the leader of %v, after %d of %d spawns were sent",
				victim.name, c.natsProcs[vi].cmd.Process.Pid, led, i, n)
			moved = c.watchLeaderMoves(led, victim.name, killedAt)
		}
		wg.Go(func() { ss[i] = c.spawn("", true) })
		time.Sleep(every)
	}
	wg.Wait()
	for line := range moved {
		t.Log(line)
	}
	logLatencies(t, "spawn until ready (wait: true), all, during the fault", latencies(ss))
	logLatencies(t, "  those sent before the kill", latencies(ss[:killBefore]))
	logLatencies(t, "  those sent after the kill", latencies(ss[killBefore:]))

	var ids, slow []string
	for i, s := range ss {
		when := sentWhen(i, killBefore)
		switch {
		case !s.ok():
			t.Errorf("spawn %d (sent %s the kill): no backend: %s", i+1, when, s)
			continue
		case s.b.Status != plane.StatusReady:
			t.Errorf("spawn %d (sent %s the kill) with wait answered %s, want ready", i+1, when, s)
		}
		if s.took > bound {
			slow = append(slow, fmt.Sprintf("spawn %d (sent %s the kill): %s", i+1, when, s))
		}
		ids = append(ids, s.b.ID)
	}
	if len(slow) > 0 {
		t.Errorf("%d of %d spawns answered later than %s with %s killed:\n  %s", len(slow), n, bound, victim.name, strings.Join(slow, "\n  "))
	}

	// Every backend ready, with every step of the way in its history.
	bs := c.waitStatus(ids, plane.StatusReady, "", 30*time.Second)
	for _, b := range bs {
		if p := historyProblem(b, true); p != "" {
			t.Errorf("backend %s: %s", b, p)
		}
	}
	// Every backend's start-up lines in its logs, each once.
	c.checkDemoLogs(ids, 30*time.Second)

	// Two servers of three still make a quorum: ready. A second one cut
	// off too (one the controller is not connected to, so that NATS is
	// still connected and only JetStream fails) leaves none: JetStream
	// cannot take a write, and /readyz says so until it is back.
	c.waitHTTP(c.ctrl, c.apiURL+"/readyz", 10*time.Second)
	var second *host
	for i, h := range c.nats {
		if i != vi && (second == nil || second == c.serverOf("plane-controller")) {
			second = h
		}
	}
	t.Logf("/readyz is ready with %s down; cutting %s off too (its clients: %s)", victim.name, second.name, c.clientsOf(second))
	cutAt := time.Now()
	c.net.cut(second)
	var code int
	var body string
	c.eventually(30*time.Second, "/readyz to fail with two of three nats-servers gone", func() bool {
		code, body = c.readyz()
		return code != http.StatusOK
	}, func() string { return fmt.Sprintf("/readyz: %d %s", code, body) })
	connected := "(none)"
	if h := c.serverOf("plane-controller"); h != nil {
		connected = h.name
	}
	t.Logf("/readyz not ready %s after the cut of %s (no JetStream quorum; the controller connected to %s): %d %s",
		time.Since(cutAt).Round(time.Millisecond), second.name, connected, code, body)
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz without a JetStream quorum: %d %s, want 503", code, body)
	}
	healAt := time.Now()
	c.net.heal(second)
	c.eventually(60*time.Second, "/readyz ready again once "+second.name+" is back", func() bool {
		code, body = c.readyz()
		return code == http.StatusOK
	}, func() string { return fmt.Sprintf("/readyz: %d %s", code, body) })
	t.Logf("/readyz ready %s after %s was healed (cut for %s)", time.Since(healAt).Round(time.Millisecond), second.name, healAt.Sub(cutAt).Round(time.Millisecond))

	// Back on its store, the server rejoins: every stream and the status
	// consumer have their three replicas again, current.
	restartAt := time.Now()
	c.startNATSServer(vi)
	c.waitHTTP(c.natsProcs[vi], "http://"+victim.ip.String()+":8222/healthz", 60*time.Second)
	c.waitWhole(60 * time.Second)
	t.Logf("%s restarted on its store: the cluster is whole again (meta group, streams and consumer current) %s later; leaders: %s",
		victim.name, time.Since(restartAt).Round(time.Millisecond), c.leaders())
	c.waitHTTP(c.ctrl, c.apiURL+"/readyz", 10*time.Second)
	if s := c.spawn("", true); !s.ok() || s.b.Status != plane.StatusReady {
		t.Errorf("spawn after %s is back: %s, want ready", victim.name, s)
	} else {
		t.Logf("spawn after %s is back: %s", victim.name, s)
	}
	c.checkAgree()
}

// TestKillControllerDuringKeyedBurst: the controller killed (SIGKILL) in
// the middle of a burst of keyed spawns and restarted on its data folder
// loses nothing: each key retried gets the backend that holds it, or a new
// one, and ends with exactly one live backend; no backend stays scheduled;
// every status history is whole.
//
// One drone is frozen (SIGSTOP) during the burst, then killed and
// restarted: the spawns placed on it are waiting for its answer when the
// controller dies, and their requests die unread with it. Those are the
// backends a controller killed mid-spawn leaves live in its store and on no
// drone, which a kill alone makes only by chance (it must land between
// storing a backend and its drone reading the request).
func TestKillControllerDuringKeyedBurst(tt *testing.T) {
	t := scenario(tt)
	c := newCluster(t, clusterOpts{})
	frozen := c.drones[0]
	if err := syscall.Kill(frozen.proc.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("freeze %s: %v", frozen.host.name, err)
	}
	t.Logf("froze %s (SIGSTOP): the spawns placed on it wait for its answer", frozen.host.name)

	// 15 keyed spawns with wait, sent 25 ms apart: a spawn is placed and
	// dispatched in milliseconds, then takes a second or so to be ready, so
	// at the kill the last ones are being placed, the first ones at every
	// step of the way, their status changes in flight and all their answers
	// lost.
	const n, killBefore, every = 15, 12, 25 * time.Millisecond
	key := func(i int) string { return fmt.Sprintf("kb-%02d", i+1) }
	ss := make([]spawned, n)
	var wg sync.WaitGroup
	var killedAt time.Time
	for i := range n {
		if i == killBefore {
			c.ctrl.kill9()
			killedAt = time.Now()
			t.Logf("killed the controller (pid %d) after %d of %d keyed spawns were sent", c.ctrl.cmd.Process.Pid, i, n)
		}
		wg.Go(func() { ss[i] = c.spawn(key(i), true) })
		time.Sleep(every)
	}
	wg.Wait()
	logLatencies(t, "keyed spawn answers (wait: true) during the fault", latencies(ss))
	var answered int
	for i, s := range ss {
		if s.ok() {
			answered++
		}
		t.Logf("key %s (sent %s the kill): %s", key(i), sentWhen(i, killBefore), s)
	}
	t.Logf("%d of %d keyed spawns answered with a backend before the controller died", answered, n)

	// The frozen drone dies without reading the requests; restarted, it
	// runs none of them.
	frozen.proc.kill9()
	c.startDrone(frozen)
	restartAt := time.Now()
	c.runController()
	t.Logf("controller restarted %s after the kill, ready in %s", restartAt.Sub(killedAt).Round(time.Millisecond), time.Since(restartAt).Round(time.Millisecond))
	c.waitDrones(30*time.Second, c.drones...)
	gapsSeen := c.watchGaps(restartAt)

	// What the store holds of the burst: the backends that hold a key;
	// those on the frozen drone run nowhere.
	held := map[string]backend{}
	var phantoms []string
	phantom := map[string]bool{} // by key
	for _, b := range c.backends() {
		if b.Status.Live() && b.Key != "" {
			held[b.Key] = b
			if b.Drone == frozen.id {
				phantoms = append(phantoms, b.String())
				phantom[b.Key] = true
			}
		}
	}
	t.Logf("after the restart, %d of %d keys are held by a backend the killed controller placed; %d of those on the frozen drone, which does not run them: %v",
		len(held), n, len(phantoms), phantoms)

	// Retry every key: the backend that holds it, or a new one. A backend
	// the killed controller stored but its drone never ran is sent to that
	// drone again by the retry (controller.RedispatchAfter), and answers
	// ready; should that fail, it ends lost and the retry gets a new one
	// (the controller spawns again for a keyed spawn that waits).
	retry := c.spawnMany(n, key, true)
	logLatencies(t, "retried keyed spawns after the restart (wait: true)", latencies(retry))
	for i, s := range retry {
		h, isHeld := held[key(i)]
		switch {
		case !s.ok():
			t.Errorf("retry of key %s: no backend: %s", key(i), s)
		case s.b.Key != key(i):
			t.Errorf("retry of key %s answered %s with key %q", key(i), s.b, s.b.Key)
		case phantom[key(i)] && (s.b.Status != plane.StatusReady || s.b.ID != h.ID && !s.b.Spawned):
			t.Errorf("retry of key %s answered %s (spawned %t), want %s sent again and ready, or a new backend in its place", key(i), s.b, s.b.Spawned, h)
		case isHeld && !phantom[key(i)] && (s.b.ID != h.ID || s.b.Spawned):
			t.Errorf("retry of key %s answered %s (spawned %t), want %s, which holds the key", key(i), s.b, s.b.Spawned, h)
		case !isHeld && !s.b.Spawned:
			t.Errorf("retry of key %s answered %s as the key's holder, but no backend held it after the restart", key(i), s.b)
		case ss[i].ok() && s.b.ID != ss[i].b.ID:
			t.Errorf("retry of key %s answered %s, but the first spawn had got %s", key(i), s.b, ss[i].b)
		default:
			how := "a new backend"
			if phantom[key(i)] && s.b.ID == h.ID {
				how = "the backend holding the key, which its drone never ran: sent again"
			} else if phantom[key(i)] {
				how = "a new backend, in place of " + h.ID + ", which no drone ran"
			} else if isHeld {
				how = "the backend holding the key"
			}
			t.Logf("retry of key %s: %s (%s)", key(i), s, how)
		}
	}

	// The controller ends as lost a live backend its drone has not listed
	// for 30 s, once it holds the cluster's lease (up to 15 s after the
	// restart): none stays scheduled.
	var stuck []backend
	c.eventually(90*time.Second, "no backend left scheduled", func() bool {
		stuck = stuck[:0]
		for _, b := range c.backends() {
			if b.Status == plane.StatusScheduled {
				stuck = append(stuck, b)
			}
		}
		return len(stuck) == 0
	}, func() string { return fmt.Sprint("still scheduled: ", stuck) })
	t.Logf("no backend scheduled %s after the restart", time.Since(restartAt).Round(time.Millisecond))
	c.settle(60 * time.Second)

	// A retry that got a backend no drone runs got it ended as lost: the
	// key is free again, and another retry, as a client would send, gets a
	// new backend.
	for i := range n {
		if !retry[i].ok() || c.get(retry[i].b.ID).Status.Live() {
			continue
		}
		s := c.spawn(key(i), true)
		t.Logf("key %s: its retry waited %s for %s, which no drone ran, and got it %s; retried again: %s",
			key(i), retry[i].took.Round(time.Millisecond), retry[i].b.ID, retry[i].b.Status, s)
		switch {
		case !s.ok() || s.b.Status != plane.StatusReady:
			t.Errorf("second retry of key %s: %s, want a new backend, ready", key(i), s)
		case !s.b.Spawned:
			t.Errorf("second retry of key %s answered %s as the key's holder, want a new backend", key(i), s.b)
		}
		retry[i] = s
	}

	// Every history whole: the status changes the killed controller had
	// taken from the stream but not stored come again.
	var gaps []string
	var all []backend
	c.eventually(60*time.Second, "every status history whole", func() bool {
		gaps, all = gaps[:0], c.backends()
		for _, b := range all {
			if p := historyProblem(b, false); p != "" {
				gaps = append(gaps, fmt.Sprintf("%s: %s", b, p))
			}
		}
		return len(gaps) == 0
	}, func() string { return strings.Join(gaps, "\n  ") })
	t.Logf("every status history whole %s after the restart", time.Since(restartAt).Round(time.Millisecond))
	if seen := gapsSeen(); len(seen) > 0 {
		t.Logf("ready backends whose history had a gap after the restart (status changes the killed controller had taken, delivered again only after the consumer's ack wait):\n  %s",
			strings.Join(seen, "\n  "))
	}

	// Each key: exactly one live backend, ready, the one its retry got.
	byKey := map[string][]backend{}
	for _, b := range all {
		byKey[b.Key] = append(byKey[b.Key], b)
		if b.Status == plane.StatusTerminated {
			t.Logf("terminated: %s", b)
		}
	}
	for i := range n {
		var live []backend
		for _, b := range byKey[key(i)] {
			if b.Status.Live() {
				live = append(live, b)
			}
		}
		switch {
		case len(live) != 1:
			t.Errorf("key %s has %d live backends, want 1: %v (its retry got %s)", key(i), len(live), live, retry[i])
		case live[0].Status != plane.StatusReady:
			t.Errorf("key %s: its backend is %s, want ready", key(i), live[0])
		case retry[i].ok() && live[0].ID != retry[i].b.ID:
			t.Errorf("key %s: its live backend is %s, but its retry answered %s", key(i), live[0], c.get(retry[i].b.ID))
		}
	}
	c.checkAgree()
}

// TestSecondControllerRefused: a second controller with a data folder of
// its own, started on the cluster's NATS, refuses to start within seconds
// and changes nothing: the backends keep their containers, the claim and
// the lease are as they were, the first controller keeps working.
func TestSecondControllerRefused(tt *testing.T) {
	t := scenario(tt)
	c := newCluster(t, clusterOpts{})
	ss := c.spawnMany(3, nil, true)
	logLatencies(t, "spawn until ready (wait: true)", latencies(ss))
	var ids []string
	for _, s := range ss {
		if !s.ok() {
			t.Fatalf("spawn: %s", s)
		}
		ids = append(ids, s.b.ID)
	}
	c.waitStatus(ids, plane.StatusReady, "", 30*time.Second)
	before := c.containersOf(ids)
	stateBefore := c.natsState()

	ip := c.ctrlHost.ip.String()
	startedAt := time.Now()
	second := c.net.run(c.ctrlHost, "controller-2", nil, bin.plane, "controller",
		"--data", c.t.TempDir(), "--nats", c.natsURLs, "--domain", domain,
		"--http", ip+":8081", "--dns", ip+":8054", "--dns-ip", ip)
	const within = 10 * time.Second
	select {
	case <-second.done:
	case <-time.After(within):
		t.Fatalf("the second controller still runs %s after its start, want it refused:\n%s", within, second.tail(4000))
	}
	took := time.Since(startedAt)
	out := second.output()
	t.Logf("the second controller exited after %s: %v", took.Round(time.Millisecond), second.err)
	if second.err == nil {
		t.Errorf("the second controller exited with status 0, want non-zero")
	}
	if line := lineWith(out, "belongs to cluster"); line == "" {
		t.Errorf("the second controller said nothing of \"belongs to cluster\":\n%s", out)
	} else {
		t.Logf("it said: %s", line)
	}

	// A few heartbeats later, nothing has changed: a refused controller
	// that had reconciled would have ended the backends.
	time.Sleep(6 * time.Second)
	if after := c.natsState(); after != stateBefore {
		t.Errorf("the cluster's NATS state changed under the refused controller:\nbefore: %s\nafter:  %s", stateBefore, after)
	}
	c.waitStatus(ids, plane.StatusReady, "", 10*time.Second)
	after := c.containersOf(ids)
	for _, id := range ids {
		if before[id] != after[id] {
			t.Errorf("backend %s: container was %s, now %s: want the same", id, before[id], after[id])
		}
	}
	c.waitHTTP(c.ctrl, c.apiURL+"/readyz", 5*time.Second)
	s := c.spawn("", true)
	if !s.ok() || s.b.Status != plane.StatusReady {
		t.Errorf("spawn on the first controller after the refusal: %s, want ready", s)
	} else {
		t.Logf("spawn on the first controller after the refusal: %s", s)
	}
	c.checkAgree()
	c.checkReplicas()
}

// checkReplicas checks that the controller, which ran with the default
// --nats-replicas, gave every stream and bucket one copy per NATS server
// (three), and that asking for fewer later (a controller started with
// --nats-replicas 1) never lowers the count.
func (c *cluster) checkReplicas() {
	c.t.Helper()
	js := c.jetStream()
	names := []string{plane.StreamStatus, plane.StreamLogs, "KV_" + plane.CertBucket, "KV_" + plane.ClusterBucket}
	check := func(when string) {
		for _, name := range names {
			st, err := js.Stream(context.Background(), name)
			if err != nil {
				c.t.Errorf("stream %s: %v", name, err)
				continue
			}
			if r := st.CachedInfo().Config.Replicas; r != 3 {
				c.t.Errorf("%s: stream %s has %d replicas, want 3", when, name, r)
			}
		}
	}
	check("as the controller made them")
	if err := dispatch.EnsureStreams(context.Background(), js, 1); err != nil {
		c.t.Fatalf("EnsureStreams with 1 replica: %v", err)
	}
	check("after asking for 1")
}

// watchGaps polls, every 200 ms from now on, for ready backends whose
// status history lacks a step (a status change the controller has not
// stored, though a later one is); the function it returns stops it and
// says which, from when to when after since.
func (c *cluster) watchGaps(since time.Time) func() []string {
	type gap struct {
		first, last time.Time
		what        string
	}
	var (
		mu    sync.Mutex
		gaps  = map[string]*gap{}
		order []string
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			code, body := c.call(http.MethodGet, "/api/v1/backends?status=all&limit=1000", nil)
			var out struct{ Backends []backend }
			if code == http.StatusOK && json.Unmarshal(body, &out) == nil {
				now := time.Now()
				mu.Lock()
				for _, b := range out.Backends {
					if b.Status != plane.StatusReady {
						continue
					}
					if p := historyProblem(b, false); p != "" {
						g := gaps[b.ID]
						if g == nil {
							g = &gap{first: now, what: p}
							gaps[b.ID] = g
							order = append(order, b.ID)
						}
						g.last = now
					}
				}
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return func() []string {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, id := range order {
			g := gaps[id]
			out = append(out, fmt.Sprintf("%s: %s, seen from %s to %s after the restart", id, g.what,
				g.first.Sub(since).Round(100*time.Millisecond), g.last.Sub(since).Round(100*time.Millisecond)))
		}
		return out
	}
}

func sentWhen(i, killBefore int) string {
	if i < killBefore {
		return "before"
	}
	return "after"
}

// lineWith is the first line of out that contains s, or "".
func lineWith(out, s string) string {
	for line := range strings.Lines(out) {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// lifecycle is a backend's way up, which a ready backend's history holds
// whole.
var lifecycle = []plane.BackendStatus{plane.StatusScheduled, plane.StatusLoading, plane.StatusStarting, plane.StatusWaiting, plane.StatusReady}

// historyProblem says what is wrong with b's status history, or "": each
// status once, in lifecycle order, ending with its status; one that
// reached ready has every step up to it; exact: nothing but those steps.
func historyProblem(b backend, exact bool) string {
	var got []plane.BackendStatus
	for _, h := range b.StatusHistory {
		got = append(got, h.Status)
	}
	desc := fmt.Sprintf("status history %v", got)
	if exact {
		if !slices.Equal(got, lifecycle) {
			return fmt.Sprintf("%s, want %v", desc, lifecycle)
		}
		return ""
	}
	for i := 1; i < len(got); i++ {
		if got[i].Rank() <= got[i-1].Rank() {
			return desc + ": not each status once, in lifecycle order"
		}
	}
	if len(got) == 0 || got[0] != plane.StatusScheduled || got[len(got)-1] != b.Status {
		return fmt.Sprintf("%s: want it to start with scheduled and end with its status %s", desc, b.Status)
	}
	if slices.Contains(got, plane.StatusReady) {
		for _, st := range lifecycle {
			if !slices.Contains(got, st) {
				return fmt.Sprintf("%s: reached ready without %s", desc, st)
			}
		}
	}
	return ""
}

// logLines reads a backend's stored log lines: GET
// /api/v1/backends/{id}/logs.
func (c *cluster) logLines(id string) ([]plane.LogLine, error) {
	code, body := c.call(http.MethodGet, "/api/v1/backends/"+id+"/logs", nil)
	if code != http.StatusOK {
		return nil, fmt.Errorf("%d %s", code, bytes.TrimSpace(body))
	}
	var lines []plane.LogLine
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l plane.LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("decode log line %q: %v", sc.Bytes(), err)
		}
		lines = append(lines, l)
	}
	return lines, sc.Err()
}

// demoLogProblem says which of the lines the demo backend writes as it
// starts (testdata/demo: the start-up line on stderr, the listening line,
// and the drone's readiness probe GET / on stdout) are missing from lines,
// or there more than once, or "".
func demoLogProblem(id string, lines []plane.LogLine) string {
	want := []struct {
		stream, prefix string
		once           bool
	}{
		{"stderr", fmt.Sprintf("demo: starting backend %q ", id), true},
		{"stdout", "demo: listening on ", true},
		{"stdout", "demo: GET / 200 ", false},
	}
	var problems []string
	for _, w := range want {
		n := 0
		for _, l := range lines {
			if l.Stream == w.stream && strings.HasPrefix(l.Text, w.prefix) {
				n++
			}
		}
		switch {
		case n == 0:
			problems = append(problems, fmt.Sprintf("no %s line %q…", w.stream, w.prefix))
		case n > 1 && w.once:
			problems = append(problems, fmt.Sprintf("%s line %q… %d times", w.stream, w.prefix, n))
		}
	}
	return strings.Join(problems, "; ")
}

// checkDemoLogs waits until each backend's logs hold its start-up lines,
// and reports those that do not within the time given.
func (c *cluster) checkDemoLogs(ids []string, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	var problems []string
	total := 0
	for {
		problems, total = problems[:0], 0
		for _, id := range ids {
			lines, err := c.logLines(id)
			total += len(lines)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: logs: %v", id, err))
			} else if p := demoLogProblem(id, lines); p != "" {
				var texts []string
				for _, l := range lines {
					texts = append(texts, l.Stream+": "+l.Text)
				}
				problems = append(problems, fmt.Sprintf("%s: %s (its %d lines: %q)", id, p, len(lines), texts))
			}
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(problems) > 0 {
		c.t.Errorf("log lines lost or doubled, %s after the burst:\n  %s", within, strings.Join(problems, "\n  "))
		return
	}
	c.t.Logf("logs: every backend's start-up lines are there, each once (%d lines for %d backends)", total, len(ids))
}

// jetStream is the test's own JetStream client on the cluster's NATS,
// connected on first use and closed when the test ends.
func (c *cluster) jetStream() jetstream.JetStream {
	c.t.Helper()
	if c.js == nil {
		nc, err := nats.Connect(c.natsURLs, nats.Name("cluster-test"), nats.MaxReconnects(-1),
			nats.ReconnectWait(100*time.Millisecond), nats.Timeout(2*time.Second))
		if err != nil {
			c.t.Fatalf("connect to NATS: %v", err)
		}
		c.t.Cleanup(nc.Close)
		if c.js, err = jetstream.New(nc); err != nil {
			c.t.Fatal(err)
		}
	}
	return c.js
}

// jsAsset is a stream the controller makes (a bucket's stream included),
// or, with consumer set, a durable consumer of one: what has a leader.
type jsAsset struct{ stream, consumer string }

func (a jsAsset) String() string {
	if a.consumer != "" {
		return "consumer " + a.consumer
	}
	return a.stream
}

// jsAssets are the streams the controller makes, buckets included, and the
// status consumer.
func (c *cluster) jsAssets() []jsAsset {
	return []jsAsset{{stream: plane.StreamStatus}, {stream: plane.StreamLogs},
		{stream: "KV_" + plane.ClusterBucket}, {stream: "KV_" + plane.CertBucket},
		{stream: plane.StreamStatus, consumer: plane.ConsumerStatus}}
}

// streamCluster is what the stream's leader says of its replicas:
// $JS.API.STREAM.INFO.<name>.
func (c *cluster) streamCluster(name string) (*jetstream.ClusterInfo, error) {
	return c.clusterOf(jsAsset{stream: name}, 3*time.Second)
}

// clusterOf is what a's leader says of its replicas ($JS.API.STREAM.INFO,
// $JS.API.CONSUMER.INFO), asked with a deadline: one without a leader does
// not answer.
func (c *cluster) clusterOf(a jsAsset, within time.Duration) (*jetstream.ClusterInfo, error) {
	js := c.jetStream()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var ci *jetstream.ClusterInfo
	if a.consumer != "" {
		cons, err := js.Consumer(ctx, a.stream, a.consumer)
		if err != nil {
			return nil, err
		}
		ci = cons.CachedInfo().Cluster
	} else {
		s, err := js.Stream(ctx, a.stream)
		if err != nil {
			return nil, err
		}
		ci = s.CachedInfo().Cluster
	}
	if ci == nil {
		return nil, fmt.Errorf("%s: no cluster information", a)
	}
	return ci, nil
}

// streamLeader waits for the stream to have a leader and returns its name.
func (c *cluster) streamLeader(name string) string {
	c.t.Helper()
	var leader, last string
	c.eventually(30*time.Second, "a leader of stream "+name, func() bool {
		ci, err := c.streamCluster(name)
		if err != nil {
			last = err.Error()
			return false
		}
		leader = ci.Leader
		return leader != ""
	}, func() string { return last })
	return leader
}

// natsIndex is the index in c.nats of the server named name.
func (c *cluster) natsIndex(name string) int {
	c.t.Helper()
	for i, h := range c.nats {
		if h.name == name {
			return i
		}
	}
	c.t.Fatalf("no nats-server %q in this cluster", name)
	return -1
}

// leaders is "PLANE_STATUS=n1 PLANE_LOGS=n2 … consumer plane-controller=n1".
func (c *cluster) leaders() string {
	var parts []string
	for _, a := range c.jsAssets() {
		ci, err := c.clusterOf(a, 3*time.Second)
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s=(%v)", a, err))
			continue
		}
		parts = append(parts, a.String()+"="+ci.Leader)
	}
	return strings.Join(parts, " ")
}

// ledBy is the assets whose leader is server name.
func (c *cluster) ledBy(name string) []jsAsset {
	c.t.Helper()
	var led []jsAsset
	for _, a := range c.jsAssets() {
		if ci, err := c.clusterOf(a, 3*time.Second); err == nil && ci.Leader == name {
			led = append(led, a)
		}
	}
	return led
}

// gatherLeaders makes server to the leader of every stream, bucket and the
// status consumer: it asks each leader elsewhere to step down in favour of
// to ($JS.API.STREAM.LEADER.STEPDOWN.<stream>,
// $JS.API.CONSUMER.LEADER.STEPDOWN.<stream>.<consumer>, with the preferred
// placement the pinned nats-server takes), until to leads them all.
func (c *cluster) gatherLeaders(to string, within time.Duration) {
	c.t.Helper()
	for _, a := range c.jsAssets() {
		var last string
		asked := 0
		deadline := time.Now().Add(within)
		for {
			ci, err := c.clusterOf(a, 3*time.Second)
			switch {
			case err != nil:
				last = err.Error()
			case ci.Leader == to:
				last = ""
			case ci.Leader == "":
				last = "no leader"
			default:
				last = fmt.Sprintf("led by %s", ci.Leader)
				if err := c.stepDown(a, to); err != nil {
					last += fmt.Sprintf("; step-down to %s: %v", to, err)
				} else {
					asked++
					// The old leader has stepped down: wait for the
					// election before asking again.
					c.waitLeaderOtherThan(a, ci.Leader, 10*time.Second)
					continue
				}
			}
			if last == "" {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s not led by %s after %s (%d step-downs asked): %s", a, to, within, asked, last)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// waitLeaderOtherThan waits (without failing) for a to have a leader other
// than old.
func (c *cluster) waitLeaderOtherThan(a jsAsset, old string, within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if ci, err := c.clusterOf(a, time.Second); err == nil && ci.Leader != "" && ci.Leader != old {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stepDown asks a's leader to step down, preferring server to as the next.
func (c *cluster) stepDown(a jsAsset, to string) error {
	subj := "$JS.API.STREAM.LEADER.STEPDOWN." + a.stream
	if a.consumer != "" {
		subj = "$JS.API.CONSUMER.LEADER.STEPDOWN." + a.stream + "." + a.consumer
	}
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": to}})
	msg, err := c.jetStream().Conn().Request(subj, req, 3*time.Second)
	if err != nil {
		return err
	}
	var resp struct {
		Success bool `json:"success"`
		Error   *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("answer %q: %v", msg.Data, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("%d %s", resp.Error.Code, resp.Error.Description)
	}
	if !resp.Success {
		return fmt.Errorf("answer %s", msg.Data)
	}
	return nil
}

// metaLeader is the JetStream meta group's leader, as server h's /jsz says.
func (c *cluster) metaLeader(h *host) string {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + h.ip.String() + ":8222/jsz")
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer resp.Body.Close()
	var j struct {
		Meta *struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil || j.Meta == nil {
		return fmt.Sprintf("(no meta group: %v)", err)
	}
	return j.Meta.Leader
}

// watchLeaderMoves polls, from the kill at since, until each of as has a
// leader other than old, and sends a line for each that says when (or
// that it had none 30 s later); it closes the channel after the last.
func (c *cluster) watchLeaderMoves(as []jsAsset, old string, since time.Time) chan string {
	out := make(chan string, len(as))
	var wg sync.WaitGroup
	for _, a := range as {
		wg.Go(func() {
			for time.Since(since) < 30*time.Second {
				if ci, err := c.clusterOf(a, 250*time.Millisecond); err == nil && ci.Leader != "" && ci.Leader != old {
					out <- fmt.Sprintf("%s: new leader %s, %s after the kill (polled every 100 ms)", a, ci.Leader, time.Since(since).Round(time.Millisecond))
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			out <- fmt.Sprintf("%s: no leader but %s 30s after the kill", a, old)
		})
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// readyz asks the controller's /readyz: its status code (0: no answer)
// and body.
func (c *cluster) readyz() (int, string) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(c.apiURL + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// serverOf is the nats-server that has a client connection named name
// (the controller's is plane-controller, a drone's plane-drone-<id>), or
// nil.
func (c *cluster) serverOf(name string) *host {
	for _, h := range c.nats {
		if slices.Contains(strings.Split(c.clientsOf(h), ", "), name) {
			return h
		}
	}
	return nil
}

// clientsOf names the hosts with a client connection to nats-server h
// (its /connz): which processes a kill of h cuts off.
func (c *cluster) clientsOf(h *host) string {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + h.ip.String() + ":8222/connz")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var connz struct {
		Connections []struct {
			IP   string `json:"ip"`
			Name string `json:"name"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&connz); err != nil {
		return err.Error()
	}
	var names []string
	for _, cn := range connz.Connections {
		names = append(names, cn.Name)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// waitWhole waits until the NATS cluster is whole: the meta group's leader
// holds both others current, and so does the leader of every stream (and
// bucket) the controller made and of the status consumer.
func (c *cluster) waitWhole(within time.Duration) {
	c.t.Helper()
	c.waitMetaGroup()
	var last string
	whole := func(what string, ci *jetstream.ClusterInfo, err error) bool {
		if err != nil {
			last = fmt.Sprintf("%s: %v", what, err)
			return false
		}
		var rs []string
		ok := ci.Leader != "" && len(ci.Replicas) == len(c.nats)-1
		for _, r := range ci.Replicas {
			rs = append(rs, fmt.Sprintf("%s current=%t offline=%t", r.Name, r.Current, r.Offline))
			ok = ok && r.Current && !r.Offline
		}
		last = fmt.Sprintf("%s: leader %q, replicas %v", what, ci.Leader, rs)
		return ok
	}
	c.eventually(within, "every stream and the status consumer with a leader and two current replicas", func() bool {
		for _, a := range c.jsAssets() {
			ci, err := c.clusterOf(a, 3*time.Second)
			if !whole(a.String(), ci, err) {
				return false
			}
		}
		return true
	}, func() string { return last })
}

// natsState describes what a controller could have changed on the NATS:
// the claim (value and revision), the lease's holder, the streams and the
// status stream's consumers.
func (c *cluster) natsState() string {
	c.t.Helper()
	js := c.jetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, plane.ClusterBucket)
	if err != nil {
		c.t.Fatalf("bucket %s: %v", plane.ClusterBucket, err)
	}
	var parts []string
	if e, err := kv.Get(ctx, plane.ClusterOwnerKey); err != nil {
		parts = append(parts, fmt.Sprintf("owner: %v", err))
	} else {
		parts = append(parts, fmt.Sprintf("owner rev %d %s", e.Revision(), e.Value()))
	}
	if e, err := kv.Get(ctx, plane.ClusterLeaseKey); err != nil {
		parts = append(parts, fmt.Sprintf("lease: %v", err))
	} else {
		var rec struct{ Holder string }
		_ = json.Unmarshal(e.Value(), &rec)
		parts = append(parts, "lease holder "+rec.Holder)
	}
	var streams []string
	names := js.StreamNames(ctx)
	for n := range names.Name() {
		streams = append(streams, n)
	}
	if err := names.Err(); err != nil {
		c.t.Fatalf("list streams: %v", err)
	}
	slices.Sort(streams)
	parts = append(parts, "streams "+strings.Join(streams, ","))
	s, err := js.Stream(ctx, plane.StreamStatus)
	if err != nil {
		c.t.Fatalf("stream %s: %v", plane.StreamStatus, err)
	}
	var consumers []string
	cn := s.ConsumerNames(ctx)
	for n := range cn.Name() {
		consumers = append(consumers, n)
	}
	slices.Sort(consumers)
	parts = append(parts, "consumers "+strings.Join(consumers, ","))
	return strings.Join(parts, "; ")
}
