package dispatch

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
)

// fakeDrone answers the requests on subject with reply (raw JSON when it is
// a string, nothing when nil) and hands each request's data to got.
func fakeDrone(t *testing.T, nc *nats.Conn, subject string, reply any) <-chan []byte {
	t.Helper()
	drone := connect(t, nc.ConnectedUrl())
	got := make(chan []byte, 10)
	if _, err := drone.Subscribe(subject, func(m *nats.Msg) {
		got <- m.Data
		if reply != nil {
			_ = m.Respond(msg(t, reply).Data)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := drone.Flush(); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestRequest(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	spec := plane.SpawnSpec{BackendID: "a"}
	for i, tc := range []struct {
		name  string
		drone bool // a drone subscribes
		reply any
		want  plane.ErrorCode // "": success
	}{
		{name: "ok", drone: true, reply: plane.ReplyOf(nil)},
		{name: "drone error keeps its code", drone: true, reply: plane.ReplyOf(plane.Errorf(plane.ECONFLICT, "already running")), want: plane.ECONFLICT},
		{name: "drone error without code", drone: true, reply: `{"error":{"message":"boom"}}`, want: plane.EINTERNAL},
		{name: "malformed reply", drone: true, reply: `not json`, want: plane.EINTERNAL},
		{name: "no responders", want: plane.EUNAVAILABLE},
		{name: "timeout", drone: true, want: plane.EUNAVAILABLE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			droneID := fmt.Sprintf("d%d", i) // one drone per case
			var got <-chan []byte
			if tc.drone {
				got = fakeDrone(t, nc, plane.SubjectSpawn(droneID), tc.reply)
			}
			d, _ := newDispatcher(newStore(nil, nil), nc)
			// Long enough for a loaded machine to answer; the timeout
			// case waits it out, so only that one is short.
			d.RequestTimeout = 5 * time.Second
			if tc.name == "timeout" {
				d.RequestTimeout = 100 * time.Millisecond
			}
			_, err := d.Spawn(t.Context(), droneID, spec)
			if code := plane.ErrorCodeOf(err); err != nil && code != tc.want || err == nil && tc.want != "" {
				t.Fatalf("Spawn = %v (code %q), want code %q", err, code, tc.want)
			}
			if tc.drone {
				var req plane.SpawnSpec
				if err := json.Unmarshal(wait(t, got, "spawn request"), &req); err != nil || req.BackendID != "a" {
					t.Errorf("drone got %+v (%v), want the spec", req, err)
				}
			}
		})
	}
}

// Each request goes to its drone's subject with its message.
func TestRequestSubjects(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	d, _ := newDispatcher(newStore(nil, nil), nc)
	ok := plane.ReplyOf(nil)
	term := fakeDrone(t, nc, plane.SubjectTerminate("d1"), ok)
	drain := fakeDrone(t, nc, plane.SubjectDrain("d1"), ok)
	pull := fakeDrone(t, nc, plane.SubjectPull("d1"), ok)
	ctx := t.Context()
	if err := d.Terminate(ctx, "d1", plane.TerminateRequest{BackendID: "a", Reason: plane.ReasonRequested}); err != nil {
		t.Fatal(err)
	}
	if r, err := plane.Decode[plane.TerminateRequest](wait(t, term, "terminate")); err != nil || r.BackendID != "a" {
		t.Errorf("terminate request %+v, %v", r, err)
	}
	if err := d.Drain(ctx, "d1", true); err != nil {
		t.Fatal(err)
	}
	if r, err := plane.Decode[plane.DrainRequest](wait(t, drain, "drain")); err != nil || !r.Draining {
		t.Errorf("drain request %+v, %v", r, err)
	}
	if err := d.Pull(ctx, "d1", "nginx:1"); err != nil {
		t.Fatal(err)
	}
	if r, err := plane.Decode[plane.PullRequest](wait(t, pull, "pull")); err != nil || r.ImageRef != "nginx:1" {
		t.Errorf("pull request %+v, %v", r, err)
	}
}

// A request lost on the way (the NATS node of the controller or the drone
// died with it in flight) is sent again after ResendAfter, well before
// RequestTimeout; a drone slower than ResendAfter still has its first
// reply taken.
func TestRequestResent(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	for _, tc := range []struct {
		name  string
		drop  int           // requests the drone never sees
		delay time.Duration // before it answers the others
		wantN int           // requests it answers at least
	}{
		{name: "first lost", drop: 1, wantN: 1},
		{name: "two lost", drop: 2, wantN: 1},
		{name: "slower than ResendAfter", delay: 250 * time.Millisecond, wantN: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			droneID := strings.ReplaceAll(tc.name, " ", "-")
			drone := connect(t, nc.ConnectedUrl())
			var mu sync.Mutex
			seen := 0
			if _, err := drone.Subscribe(plane.SubjectSpawn(droneID), func(m *nats.Msg) {
				mu.Lock()
				seen++
				n := seen
				mu.Unlock()
				if n <= tc.drop {
					return
				}
				time.Sleep(tc.delay)
				_ = m.Respond(msg(t, plane.ReplyOf(plane.Errorf(plane.ECONFLICT, "answer %d", n))).Data)
			}); err != nil {
				t.Fatal(err)
			}
			if err := drone.Flush(); err != nil {
				t.Fatal(err)
			}
			d, _ := newDispatcher(newStore(nil, nil), nc)
			d.RequestTimeout, d.ResendAfter = 10*time.Second, 100*time.Millisecond
			start := time.Now()
			_, err := d.Spawn(t.Context(), droneID, plane.SpawnSpec{BackendID: "a"})
			if plane.ErrorCodeOf(err) != plane.ECONFLICT || !strings.Contains(err.Error(), fmt.Sprintf("answer %d", tc.drop+1)) {
				t.Fatalf("Spawn = %v, want the reply to request %d", err, tc.drop+1)
			}
			if took := time.Since(start); took >= d.RequestTimeout/2 {
				t.Errorf("Spawn took %s: the request was not sent again", took)
			}
		})
	}
}

// A pull is not sent again while the drone pulls: it answers once the pull
// is over, and every copy would pull the image once more.
func TestPullNotResent(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	drone := connect(t, nc.ConnectedUrl())
	var mu sync.Mutex
	pulls := 0
	if _, err := drone.Subscribe(plane.SubjectPull("puller"), func(m *nats.Msg) {
		mu.Lock()
		pulls++
		mu.Unlock()
		time.Sleep(350 * time.Millisecond) // the pull
		_ = m.Respond(msg(t, plane.ReplyOf(nil)).Data)
	}); err != nil {
		t.Fatal(err)
	}
	if err := drone.Flush(); err != nil {
		t.Fatal(err)
	}
	d, _ := newDispatcher(newStore(nil, nil), nc)
	d.RequestTimeout, d.ResendAfter = 10*time.Second, 100*time.Millisecond
	if err := d.Pull(t.Context(), "puller", "plane-demo:latest"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if pulls != 1 {
		t.Errorf("the drone pulled %d times, want once", pulls)
	}
}

// A drone whose connection is replaced after it got a request is briefly
// without a subscription: the resends meet "no responders", which does not
// fail the request; the drone's answer, once it is back, does.
func TestRequestSurvivesTheDroneReconnecting(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	drone := connect(t, nc.ConnectedUrl())
	got := make(chan struct{}, 1)
	sub, err := drone.Subscribe(plane.SubjectSpawn("mover"), func(m *nats.Msg) { got <- struct{}{} }) // gets it, then goes
	if err != nil {
		t.Fatal(err)
	}
	if err := drone.Flush(); err != nil {
		t.Fatal(err)
	}
	go func() {
		<-got
		_ = sub.Unsubscribe()
		_ = drone.Flush()
		time.Sleep(350 * time.Millisecond) // reconnecting: several resends meet no responders
		_, _ = drone.Subscribe(plane.SubjectSpawn("mover"), func(m *nats.Msg) {
			_ = m.Respond(msg(t, plane.ReplyOf(nil)).Data)
		})
		_ = drone.Flush()
	}()
	d, _ := newDispatcher(newStore(nil, nil), nc)
	d.RequestTimeout, d.ResendAfter = 10*time.Second, 100*time.Millisecond
	if _, err := d.Spawn(t.Context(), "mover", plane.SpawnSpec{BackendID: "a"}); err != nil {
		t.Fatalf("Spawn = %v, want the answer of the drone once it is back", err)
	}
}
