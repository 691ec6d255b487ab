package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"plane"
)

// poolMembers lists the running containers of drone's pool image that
// are no backend of the project's (not claimed), by backend ID.
func (c *cluster) poolMembers(t *testing.T, image string) []string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "--filter", "label=plane.drone="+c.droneID, "--filter", "label=plane.pool="+image,
		"--format", `{{.Label "plane.backend"}}`).Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	status, data := c.call(http.MethodGet, "/api/v1/backends?status=live", nil)
	if status != http.StatusOK {
		t.Fatalf("list backends: %d %s", status, data)
	}
	var list struct{ Backends []backendOut }
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	var members []string
	for _, id := range strings.Fields(string(out)) {
		if !slices.ContainsFunc(list.Backends, func(b backendOut) bool { return b.ID == id }) {
			members = append(members, id)
		}
	}
	slices.Sort(members)
	return members
}

// readyMembers is how many ready members the controller knows of on the
// cluster's drone.
func (c *cluster) readyMembers(image string) int {
	img, err := c.ctrl.DB.FindImage(c.t.Context(), c.project.ID, image)
	if err != nil {
		c.t.Fatal(err)
	}
	n := 0
	for _, p := range c.ctrl.Server.Core().ImagePools(img) {
		if p.Drone == c.droneID && !p.Stale {
			n += p.Ready
		}
	}
	return n
}

// Warm pools on real Docker: an image with warm_pool 2 gets two started,
// ready members on the drone, which are no backends of the project; a
// spawn claims one and answers ready and warm, and the app serves the
// spawn's user and key through the proxy; the pool refills; a spawn with
// env goes cold and says why; a member that exits is replaced; members
// hold no key; a drain empties the pool.
func TestWarmPoolDocker(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	if status, data := c.call(http.MethodPatch, "/api/v1/images/demo", map[string]any{"warm_pool": 2}); status != http.StatusOK {
		t.Fatalf("set warm_pool: %d %s", status, data)
	}
	fill := func(what string) []string {
		t.Helper()
		var members []string
		eventually(t, 30*time.Second, what, func() bool {
			members = c.poolMembers(t, "demo")
			return len(members) == 2 && c.readyMembers("demo") == 2
		})
		return members
	}
	members := fill("the pool to fill with 2 ready members")
	t.Logf("pool filled: %v", members)
	for _, id := range members {
		env := containerEnv(t, id)
		if env["PLANE_BACKEND_ID"] != id || env["PLANE_BACKEND_KEY"] != "" {
			t.Errorf("member %s's env: PLANE_BACKEND_ID=%q PLANE_BACKEND_KEY=%q; want its ID and no key", id, env["PLANE_BACKEND_ID"], env["PLANE_BACKEND_KEY"])
		}
	}

	// 1. A spawn claims a member: ready at once, warm.
	start := time.Now()
	status, b := c.spawn(map[string]any{"image": "demo", "key": "room-1", "user": "alice", "max_idle_seconds": 60, "wait": true})
	took := time.Since(start)
	if status != http.StatusCreated || b.Status != plane.StatusReady || b.Warm == nil || !*b.Warm || b.ColdReason != "" {
		t.Fatalf("warm spawn: %d %s warm=%v cold_reason=%q; want 201 ready warm", status, b.Status, b.Warm, b.ColdReason)
	}
	if !slices.Contains(members, b.ID) || b.Key != "room-1" || b.User != "alice" || b.MaxIdleSeconds != 60 {
		t.Fatalf("warm spawn: backend %s key %q user %q idle %d; want one of %v with the spawn's key, user and limit", b.ID, b.Key, b.User, b.MaxIdleSeconds, members)
	}
	t.Logf("warm spawn → ready in %s: %s", took.Round(time.Millisecond), b.ID)

	// The app serves the spawn's key and user through the proxy.
	tok := c.connectToken(b.ID, "alice", time.Hour)
	resp, body := c.proxyGet(t, c.proxyClient(), c.hostURL(b.ID, "/headers"), tokenCookie(tok))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /headers: %d %.200s", resp.StatusCode, body)
	}
	var seen struct{ Headers http.Header }
	if err := json.Unmarshal(body, &seen); err != nil {
		t.Fatal(err)
	}
	if seen.Headers.Get("X-Plane-Key") != "room-1" || seen.Headers.Get("X-Plane-User") != "alice" || seen.Headers.Get("X-Plane-Backend") != b.ID {
		t.Errorf("the app got X-Plane-Key %q, X-Plane-User %q, X-Plane-Backend %q; want room-1, alice, %s",
			seen.Headers.Get("X-Plane-Key"), seen.Headers.Get("X-Plane-User"), seen.Headers.Get("X-Plane-Backend"), b.ID)
	}
	// The key is the claimed backend's: a spawn of it finds that one.
	if status, again := c.spawn(map[string]any{"image": "demo", "key": "room-1"}); status != http.StatusOK || again.ID != b.ID || again.Spawned {
		t.Errorf("spawn of the claimed key: %d %s spawned=%v; want 200 %s", status, again.ID, again.Spawned, b.ID)
	}
	hist := c.get(b.ID).StatusHistory
	if len(hist) < 2 || hist[0].Status != plane.StatusScheduled || hist[len(hist)-1].Status != plane.StatusReady {
		t.Errorf("claimed backend's history: %+v; want scheduled … ready", hist)
	}

	// 2. The pool refills, with new members.
	refilled := fill("the pool to refill after the claim")
	if slices.Contains(refilled, b.ID) {
		t.Errorf("the claimed backend %s is still counted in the pool: %v", b.ID, refilled)
	}

	// 3. A spawn with env cannot use a member: cold, and why.
	status, cold := c.spawn(map[string]any{"image": "demo", "env": map[string]string{"DEMO_X": "1"}, "wait": true})
	if status != http.StatusCreated || cold.Status != plane.StatusReady || cold.Warm == nil || *cold.Warm || cold.ColdReason != plane.ColdEnv {
		t.Fatalf("spawn with env: %d %s warm=%v cold_reason=%q; want 201 ready, cold for env", status, cold.Status, cold.Warm, cold.ColdReason)
	}
	if slices.Contains(refilled, cold.ID) {
		t.Errorf("the cold spawn took member %s", cold.ID)
	}

	// The metrics count the claim and the miss, and show the pool.
	resp, err := http.Get(c.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	img, err := c.ctrl.DB.FindImage(t.Context(), c.project.ID, "demo")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"plane_pool_claims_total 1\n",
		`plane_pool_misses_total{reason="env"} 1` + "\n",
		`plane_pool_misses_total{reason="pool_empty"} 0` + "\n",
		`plane_pool_members{drone="` + c.droneID + `",pool="` + plane.PoolID(img.ID) + `",state="ready"}`,
		`plane_pool_refill_seconds{drone="` + c.droneID + `",pool="` + plane.PoolID(img.ID) + `"}`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// 4. A member that exits is replaced.
	doomed := refilled[0]
	if out, err := exec.Command("docker", "kill", "plane-"+doomed).CombinedOutput(); err != nil {
		t.Fatalf("docker kill: %v: %s", err, out)
	}
	eventually(t, 30*time.Second, "the killed member to be replaced", func() bool {
		now := c.poolMembers(t, "demo")
		return len(now) == 2 && !slices.Contains(now, doomed) && c.readyMembers("demo") == 2
	})
	if _, data := c.call(http.MethodGet, "/api/v1/backends/"+doomed, nil); !strings.Contains(string(data), "not found") {
		t.Errorf("the killed member shows as a backend: %s", data)
	}

	// 5. A drain empties the drone's pools; its backends stay.
	if _, err := c.ctrl.Server.Core().Drain(t.Context(), plane.Actor{Name: "test"}, c.droneID, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the drain to empty the pool", func() bool { return len(c.poolMembers(t, "demo")) == 0 })
	if got := c.get(b.ID); got.Status != plane.StatusReady {
		t.Errorf("the claimed backend after the drain: %s, want ready", got.Status)
	}
}

// containerEnv reads a backend container's environment.
func containerEnv(t *testing.T, backendID string) map[string]string {
	t.Helper()
	out, err := exec.Command("docker", "inspect", "-f", "{{json .Config.Env}}", "plane-"+backendID).Output()
	if err != nil {
		t.Fatalf("docker inspect %s: %v", backendID, err)
	}
	var kv []string
	if err := json.Unmarshal(out, &kv); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, e := range kv {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	return env
}
