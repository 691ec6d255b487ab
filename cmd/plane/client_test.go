package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"plane"
	"plane/api"
)

// fakeAPI answers one API path with body as JSON, and fails the test on
// any other request.
func fakeAPI(t *testing.T, method, path string, status int, body any) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method || r.URL.Path != path {
			t.Errorf("request %s %s, want %s %s", r.Method, r.URL.Path, method, path)
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if err := json.NewEncoder(w).Encode(body); err != nil {
			t.Errorf("encode the answer: %v", err)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// The images listing shows each image's warm pool.
func TestClientImagesWarmPool(t *testing.T) {
	t.Parallel()
	url := fakeAPI(t, http.MethodGet, "/api/v1/images", http.StatusOK, api.Images{Images: []*plane.Image{
		{Name: "cold", Ref: "cold:1", Port: 8080, PullPolicy: plane.PullIfNotPresent},
		{Name: "pooled", Ref: "pooled:1", Port: 8080, PullPolicy: plane.PullAlways, Public: true, WarmPool: 3},
	}})
	var out, errOut bytes.Buffer
	if err := runImages(context.Background(), []string{"--url", url, "--token", "t"}, &out, &errOut); err != nil {
		t.Fatalf("plane images: %v\n%s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("printed %q, want a header and two images", out.String())
	}
	for i, want := range [][]string{
		{"NAME", "REF", "PORT", "PULL", "PUBLIC", "WARM", "POOL"},
		{"cold", "cold:1", "8080", "if_not_present", "false", "none"},
		{"pooled", "pooled:1", "8080", "always", "true", "3", "per", "drone"},
	} {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("line %d: %q, want %q", i, got, want)
		}
	}
}

// The spawn summary says whether the backend was claimed from a warm pool
// and, when not, why.
func TestClientSpawnWarmOrCold(t *testing.T) {
	t.Parallel()
	yes, no := true, false
	tests := []struct {
		name    string
		spawned bool
		warm    *bool
		reason  plane.ColdReason
		want    string // the line after the URL; "" for none
	}{
		{"warm", true, &yes, "", "started warm: claimed from the image's warm pool"},
		{"no pool", true, &no, plane.ColdNoPool, "started cold: the image has no warm pool (no_pool)"},
		{"env", true, &no, plane.ColdEnv, "started cold: the spawn sets env, which a started backend cannot take (env)"},
		{"cpu", true, &no, plane.ColdCPU, "started cold: the spawn sets a CPU limit other than the image's (cpu_millis)"},
		{"memory", true, &no, plane.ColdMemory, "started cold: the spawn sets a memory limit other than the image's (memory_mb)"},
		{"pool empty", true, &no, plane.ColdPoolEmpty, "started cold: no drone had a ready backend in the image's warm pool (pool_empty)"},
		{"raced", true, &no, plane.ColdRaced, "started cold: the warm pool's backend chosen was gone when its drone got the claim (pool_raced)"},
		{"a reason of a newer controller", true, &no, "tomorrow", "started cold: no reason given (tomorrow)"},
		{"found by its key", false, nil, "", ""},
		{"a controller that does not say", true, nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status := http.StatusOK
			if tt.spawned {
				status = http.StatusCreated
			}
			b := api.Backend{ID: "k3v9x0q2m8d1zr", Image: "demo", Status: plane.StatusReady, Spawned: tt.spawned,
				Warm: tt.warm, ColdReason: tt.reason, URL: "http://k3v9x0q2m8d1zr.plane.localhost/"}
			url := fakeAPI(t, http.MethodPost, "/api/v1/backends", status, b)
			var out, errOut bytes.Buffer
			if err := runSpawn(context.Background(), []string{"--url", url, "--token", "t", "--image", "demo", "--key", "k"}, &out, &errOut); err != nil {
				t.Fatalf("plane spawn: %v\n%s", err, errOut.String())
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			verb := "connected to"
			if tt.spawned {
				verb = "spawned"
			}
			// The first two lines are as before: scripts read them.
			if len(lines) < 2 || lines[0] != verb+" k3v9x0q2m8d1zr (ready)" || lines[1] != b.URL {
				t.Fatalf("printed %q", out.String())
			}
			got := ""
			if len(lines) > 2 {
				got = strings.Join(lines[2:], "\n")
			}
			if got != tt.want {
				t.Errorf("then %q, want %q", got, tt.want)
			}
		})
	}
}
