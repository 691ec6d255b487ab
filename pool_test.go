package plane_test

import (
	"encoding/json"
	"strings"
	"testing"

	"plane"
)

// poolJSON is a valid pool of the PoolsRequest tests, with mutate applied.
func poolJSON(t *testing.T, mutate func(*plane.PoolSpec)) string {
	t.Helper()
	p := plane.PoolSpec{ID: plane.PoolID(7), Image: "demo", Size: 3,
		Spec: plane.SpawnSpec{ImageRef: "plane-demo:latest", PullPolicy: plane.PullNever, Port: 8080, Limits: plane.Limits{MaxIdleSeconds: 60}}}
	p.Hash = p.SpecHash()
	if mutate != nil {
		mutate(&p)
	}
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestDecodePoolsRequest(t *testing.T) {
	ok := poolJSON(t, nil)
	cases := []decodeCase[plane.PoolsRequest]{
		{name: "none", json: `{"pools":[]}`, valid: true},
		{name: "one", json: `{"pools":[` + ok + `]}`, valid: true},
		{name: "twice", json: `{"pools":[` + ok + `,` + ok + `]}`, field: "pools", contains: "twice"},
		{name: "no id", json: `{"pools":[` + poolJSON(t, func(p *plane.PoolSpec) { p.ID = "" }) + `]}`, field: "id"},
		{name: "control in id", json: `{"pools":[` + poolJSON(t, func(p *plane.PoolSpec) { p.ID = "a\x00b" }) + `]}`, field: "id"},
		{name: "bad image name", json: `{"pools":[` + poolJSON(t, func(p *plane.PoolSpec) { p.Image = "Demo!" }) + `]}`, field: "name"},
		{name: "negative size", json: `{"pools":[` + poolJSON(t, func(p *plane.PoolSpec) { p.Size = -1 }) + `]}`, field: "size"},
		{name: "size past the bound", json: `{"pools":[` + poolJSON(t, func(p *plane.PoolSpec) { p.Size = plane.MaxWarmPool + 1 }) + `]}`, field: "size"},
		{name: "spec names a backend", json: `{"pools":[` + poolJSON(t, func(p *plane.PoolSpec) { p.Spec.BackendID = "abc" }) + `]}`, field: "spec"},
		{name: "spec holds a key", json: `{"pools":[` + poolJSON(t, func(p *plane.PoolSpec) { p.Spec.Key = "k" }) + `]}`, field: "spec"},
		{name: "spec with a bad port", json: `{"pools":[` + poolJSON(t, func(p *plane.PoolSpec) { p.Spec.Port = 0; p.Hash = p.SpecHash() }) + `]}`, field: "port"},
		{name: "hash of another spec", json: `{"pools":[` + poolJSON(t, func(p *plane.PoolSpec) { p.Spec.Port = 9090 }) + `]}`, field: "hash"},
		{name: "too many", json: `{"pools":[` + strings.Repeat(ok+",", plane.MaxPools) + ok + `]}`, field: "pools", contains: "at most"},
	}
	runDecode(t, append(cases, malformed[plane.PoolsRequest]()...))
}

func TestDecodeHeartbeatPools(t *testing.T) {
	ok := `"protocol_version":3,"drone_id":"drone-1","time":"2025-01-02T03:04:05.678Z"`
	cases := []decodeCase[plane.Heartbeat]{
		{name: "a pool", valid: true, json: `{` + ok + `,"pools":[{"id":"i7","hash":"ab","size":2,"ready":["abc"],"starting":1,"refill_ms":250}]}`,
			want: &plane.Heartbeat{ProtocolVersion: 3, DroneID: "drone-1", Time: t0,
				Pools: []plane.PoolState{{ID: "i7", Hash: "ab", Size: 2, Ready: []string{"abc"}, Starting: 1, RefillMillis: 250}}}},
		{name: "bad member", json: `{` + ok + `,"pools":[{"id":"i7","ready":["NOPE"]}]}`, field: "id"},
		{name: "no pool id", json: `{` + ok + `,"pools":[{"ready":[]}]}`, field: "pools"},
		{name: "negative starting", json: `{` + ok + `,"pools":[{"id":"i7","starting":-1}]}`, field: "pools"},
		{name: "size past the bound", json: `{` + ok + `,"pools":[{"id":"i7","size":1000}]}`, field: "pools"},
	}
	runDecode(t, cases)
}

// TestSpecHash: the hash changes with what members run, and only with it.
func TestSpecHash(t *testing.T) {
	a := plane.PoolSpec{Spec: plane.SpawnSpec{ImageRef: "x:1", Port: 80}}
	b := a
	b.Size, b.ID = 9, "other"
	if a.SpecHash() != b.SpecHash() {
		t.Errorf("hash changed with the pool's size or id")
	}
	b.Spec.Env = map[string]string{"A": "1"}
	if a.SpecHash() == b.SpecHash() {
		t.Errorf("hash unchanged by the spec's env")
	}
}

func TestImageWarmPool(t *testing.T) {
	for _, tt := range []struct {
		n     int
		valid bool
	}{{0, true}, {1, true}, {plane.MaxWarmPool, true}, {-1, false}, {plane.MaxWarmPool + 1, false}} {
		name, ref, n := "demo", "plane-demo:latest", tt.n
		_, err := plane.NewImage(1, plane.ImageInput{Name: &name, Ref: &ref, WarmPool: &n})
		if (err == nil) != tt.valid {
			t.Errorf("warm_pool %d: err = %v, want valid %v", tt.n, err, tt.valid)
		}
		if err != nil {
			assertInvalid(t, err, "warm_pool", "")
		}
	}
}
