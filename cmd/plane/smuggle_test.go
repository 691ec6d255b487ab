package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"plane"
	"plane/drone/proxy/proxytest"
)

// These tests try the real drone proxy as an attacker would, in front of a
// real container: the demo image in DEMO_MODE=record, which records every
// request it reads with net/http's strict parser.

// spawnRecorder starts a public recording backend and returns it as a
// proxytest.Target.
func (c *cluster) spawnRecorder(t *testing.T, extra map[string]any) (backendOut, proxytest.Target) {
	t.Helper()
	c.registerImage(c.project.ID, "record", "plane-demo:latest", plane.PullNever)
	if _, err := c.ctrl.DB.UpdateImage(context.Background(), c.project.ID, "record", plane.ImageInput{Public: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	req := map[string]any{"image": "record", "env": map[string]string{"DEMO_MODE": "record"}, "wait": true}
	for k, v := range extra {
		req[k] = v
	}
	status, b := c.spawn(req)
	if status >= 300 || b.Status != plane.StatusReady {
		t.Fatalf("spawn: %d, status %s", status, b.Status)
	}
	_, port, _ := net.SplitHostPort(c.drone.ProxyAddr())
	client := c.proxyClient()
	tg := proxytest.Target{
		Addr: c.drone.ProxyAddr(), Host: b.ID + ".plane.localhost:" + port, BackendID: b.ID, User: "",
		Token: c.connectToken(b.ID, "alice", time.Hour),
		Recorded: func() ([]proxytest.Request, error) {
			resp, err := client.Get(c.hostURL(b.ID, proxytest.PathRecorded+"?clear=1"))
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				body, _ := io.ReadAll(resp.Body)
				return nil, fmt.Errorf("recorder: %d %s", resp.StatusCode, body)
			}
			var reqs []proxytest.Request
			return reqs, json.NewDecoder(resp.Body).Decode(&reqs)
		},
	}
	if _, err := tg.Recorded(); err != nil { // forget the drone's readiness probes
		t.Fatal(err)
	}
	return b, tg
}

// TestProxySmuggling runs the corpus of the security review's findings
// (proxytest.Vectors) through a real drone to a real container.
func TestProxySmuggling(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	_, tg := c.spawnRecorder(t, nil)
	for _, v := range proxytest.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			o, err := proxytest.Send(tg, v)
			if err != nil {
				t.Fatal(err)
			}
			for _, problem := range v.Check(tg, o) {
				t.Error(problem)
			}
		})
	}
}

// TestProxyHungBackendGoesIdle: finding 6. A request that a backend never
// answers keeps it alive while its client waits, and no longer: once the
// client leaves, the backend ends idle.
func TestProxyHungBackendGoesIdle(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	b, tg := c.spawnRecorder(t, map[string]any{"max_idle_seconds": 2})
	conn, err := net.Dial("tcp", tg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", proxytest.PathHang, tg.Host)
	eventually(t, 5*time.Second, "the API to show the waiting request", func() bool { return c.get(b.ID).Connections == 1 })
	time.Sleep(3 * time.Second) // longer than max_idle_seconds: a connected user keeps it
	if got := c.get(b.ID); got.Status != plane.StatusReady {
		t.Fatalf("status %s (%s) while a request waits, want ready", got.Status, got.TerminationReason)
	}
	conn.Close()
	got := c.waitStatus(b.ID, plane.StatusTerminated, 15*time.Second)
	if got.TerminationReason != plane.ReasonIdle {
		t.Fatalf("reason %q, want idle", got.TerminationReason)
	}
}

// TestProxyFirefoxWebSocket: the demo's WebSocket echo through the real
// drone, with the handshake Firefox sends ("Connection: keep-alive,
// Upgrade").
func TestProxyFirefoxWebSocket(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	_, b := c.spawn(map[string]any{"image": "demo", "wait": true})
	conn, err := net.Dial("tcp", c.drone.ProxyAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	_, port, _ := net.SplitHostPort(c.drone.ProxyAddr())
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s.plane.localhost:%s\r\nCookie: plane_token=%s\r\n"+
		"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://%s.plane.localhost:%s\r\n\r\n",
		b.ID, port, c.connectToken(b.ID, "", time.Hour), b.ID, port)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake: %d, Accept %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	if err := proxytest.WriteText(conn, "ping from firefox"); err != nil {
		t.Fatal(err)
	}
	if got, err := proxytest.ReadText(br); got != "ping from firefox" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

// TestProxyNoReplay: finding 5. A kept-alive connection that breaks after
// the backend read a request is retried only for an idempotent method: a
// POST reaches the container once, a GET may twice.
func TestProxyNoReplay(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	_, tg := c.spawnRecorder(t, nil)
	tests := []struct {
		method string
		reads  int // how often the backend reads the dropped request
	}{{"POST", 1}, {"DELETE", 2}, {"GET", 2}}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			conn, err := net.Dial("tcp", tg.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(conn)
			for _, req := range []string{"GET /first", tt.method + " " + proxytest.PathDrop} {
				fmt.Fprintf(conn, "%s HTTP/1.1\r\nHost: %s\r\n\r\n", req, tg.Host)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			reqs, err := tg.Recorded()
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, r := range reqs {
				if r.Target == proxytest.PathDrop {
					n++
				}
			}
			if n != tt.reads {
				t.Fatalf("the backend read %s %s %d times, want %d (all: %v)", tt.method, proxytest.PathDrop, n, tt.reads, reqs)
			}
		})
	}
}
