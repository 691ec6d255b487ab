package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"plane"
)

// TestEventBusAcrossControllers: a status change one controller applies
// reaches, within a second, an event stream served by another controller
// process on the same NATS (and the same store).
//
// Controller A runs in this process, B as `plane controller` on A's data
// folder. A fake drone takes the spawn and holds its answer until a client
// follows the backend's events on B; then it refuses the spawn, and A
// records the backend failed: a change only A applies.
func TestEventBusAcrossControllers(t *testing.T) {
	c := newCluster(t, clusterOpts{noDrone: true})
	bAddr := freeAddr(t)
	log := &syncBuffer{}
	cmd := exec.Command(planeBin, "controller", "--data", c.ctrlCfg.DataDir, "--nats", c.ns.ClientURL(),
		"--http", bAddr, "--domain", "plane.localhost", "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("controller B:\n%s", log.String())
		}
	})
	bURL := "http://" + bAddr
	eventually(t, 20*time.Second, "controller B to answer", func() bool {
		resp, err := http.Get(bURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	// The fake drone: heartbeats, and spawn requests held for the test.
	nc, err := nats.Connect(c.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	spawns := make(chan *nats.Msg, 1)
	sub, err := nc.ChanSubscribe(plane.SubjectSpawn(c.droneID), spawns)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	beat := func() {
		data, _ := json.Marshal(plane.Heartbeat{ProtocolVersion: plane.ProtocolVersion, DroneID: c.droneID, Address: "127.0.0.1", Time: time.Now()})
		_ = nc.Publish(plane.SubjectHeartbeat, data)
	}
	beat()
	c.waitDrone()

	spawned := make(chan int, 1)
	go func() {
		status, _ := c.call(http.MethodPost, "/api/v1/backends", map[string]any{"image": "demo"})
		spawned <- status
	}()
	var req *nats.Msg
	select {
	case req = <-spawns:
	case <-time.After(10 * time.Second):
		t.Fatal("the spawn did not reach the drone")
	}
	spec, err := plane.Decode[plane.SpawnSpec](req.Data)
	if err != nil {
		t.Fatal(err)
	}

	events := followEvents(t, bURL, c.token, spec.BackendID, "")
	if e := events.next(t, 5*time.Second); e.event != "status" || !strings.Contains(e.data, `"status":"scheduled"`) {
		t.Fatalf("first event on B: %+v, want the backend scheduled", e)
	}
	data, _ := json.Marshal(plane.ReplyOf(plane.Errorf(plane.EUNAVAILABLE, "the fake drone refuses")))
	if err := req.Respond(data); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	for {
		e := events.next(t, time.Second)
		if e.event == "status" && strings.Contains(e.data, `"status":"terminated"`) {
			t.Logf("applied on A, seen on B's stream %v later", time.Since(applied).Round(time.Millisecond))
			break
		}
	}
	if status := <-spawned; status < 500 {
		t.Fatalf("spawn answered %d, want the drone's refusal", status)
	}
}

// eventStream reads a Server-Sent Events stream event by event.
type eventStream struct {
	events chan sseEvent
}

// followEvents follows a backend's event stream on the controller at base,
// from after lastEventID when it is not empty.
func followEvents(t *testing.T, base, token, id, lastEventID string) *eventStream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/backends/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("events on %s: %d %s", base, resp.StatusCode, ct)
	}
	s := &eventStream{events: make(chan sseEvent, 16)}
	go func() {
		defer close(s.events)
		var cur sseEvent
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.event != "" {
					s.events <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				cur.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				cur.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				cur.data += line[6:]
			}
		}
	}()
	return s
}

// next returns the next event, failing the test if none comes within d.
func (s *eventStream) next(t *testing.T, d time.Duration) sseEvent {
	t.Helper()
	select {
	case e, ok := <-s.events:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return e
	case <-time.After(d):
		t.Fatal(fmt.Sprintf("no event within %v", d))
	}
	return sseEvent{}
}
