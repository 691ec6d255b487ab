package controller_test

import (
	"context"
	"slices"
	"testing"

	"plane"
	"plane/server/controller"
)

// pooled gives the fake store's demo image a warm pool of 2 and the fake
// drones, by drone ID, the ready members their heartbeats report.
func pooled(t *testing.T, c *controller.Core, st *fakeStore, dr *fakeDrones, members map[string][]string) plane.PoolSpec {
	t.Helper()
	img := st.images["demo"]
	img.ID, img.WarmPool = 5, 2
	specs, err := c.PoolSpecs(context.Background())
	if err != nil || len(specs) != 1 {
		t.Fatalf("the demo image's pool: %+v, %v", specs, err)
	}
	dr.pools, dr.members = map[string][]plane.PoolState{}, map[string]bool{}
	for drone, ids := range members {
		dr.pools[drone] = []plane.PoolState{{ID: specs[0].ID, Hash: specs[0].Hash, Size: 2, Ready: ids}}
		for _, id := range ids {
			dr.members[id] = true
		}
	}
	return specs[0]
}

func TestSpawnClaimsAWarmMember(t *testing.T) {
	ctx := context.Background()
	five := 5
	cases := []struct {
		name    string
		req     plane.SpawnRequest
		members map[string][]string
		// gone: members the drone no longer has when the claim comes
		gone   []string
		warm   bool
		reason plane.ColdReason
		id     string // the backend's ID; "" for a new one
	}{
		{name: "claimed", req: plane.SpawnRequest{Image: "demo", Key: "room", User: "ann", LimitsInput: plane.LimitsInput{MaxIdleSeconds: &five}},
			members: map[string][]string{"d1": {"m1", "m2"}}, warm: true, id: "m1"},
		{name: "the image's own cpu", req: plane.SpawnRequest{Image: "demo", LimitsInput: plane.LimitsInput{CPUMillis: ptr(500)}},
			members: map[string][]string{"d1": {"m1"}}, warm: true, id: "m1"},
		{name: "env", req: plane.SpawnRequest{Image: "demo", Env: map[string]string{"X": "1"}},
			members: map[string][]string{"d1": {"m1"}}, reason: plane.ColdEnv},
		{name: "other cpu", req: plane.SpawnRequest{Image: "demo", LimitsInput: plane.LimitsInput{CPUMillis: ptr(250)}},
			members: map[string][]string{"d1": {"m1"}}, reason: plane.ColdCPU},
		{name: "memory", req: plane.SpawnRequest{Image: "demo", LimitsInput: plane.LimitsInput{MemoryMB: ptr(64)}},
			members: map[string][]string{"d1": {"m1"}}, reason: plane.ColdMemory},
		{name: "no member ready", req: plane.SpawnRequest{Image: "demo"}, members: map[string][]string{"d1": nil}, reason: plane.ColdPoolEmpty},
		{name: "member gone at the drone", req: plane.SpawnRequest{Image: "demo"},
			members: map[string][]string{"d1": {"m1"}}, gone: []string{"m1"}, reason: plane.ColdRaced, id: "m1"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c, st, dr, m := newCore(t)
			pooled(t, c, st, dr, tt.members)
			for _, id := range tt.gone {
				delete(dr.members, id)
			}
			sp, err := c.Spawn(ctx, alice, 1, tt.req)
			if err != nil || !sp.New {
				t.Fatalf("spawn: %+v, %v", sp, err)
			}
			if sp.Warm != tt.warm || sp.ColdReason != tt.reason {
				t.Errorf("warm %v, cold reason %q; want %v, %q", sp.Warm, sp.ColdReason, tt.warm, tt.reason)
			}
			if tt.id != "" && sp.Backend.ID != tt.id {
				t.Errorf("backend %s, want the member's ID %s", sp.Backend.ID, tt.id)
			}
			if tt.id == "" && slices.Contains([]string{"m1", "m2"}, sp.Backend.ID) {
				t.Errorf("a cold spawn took a member's ID %s", sp.Backend.ID)
			}
			spec := dr.spawned[len(dr.spawned)-1]
			if spec.Warm != (tt.id != "") || spec.Key != tt.req.Key || spec.User != tt.req.User {
				t.Errorf("spec sent: %+v", spec)
			}
			if tt.req.LimitsInput.MaxIdleSeconds != nil && spec.MaxIdleSeconds != *tt.req.LimitsInput.MaxIdleSeconds {
				t.Errorf("spec's idle limit %d, want the request's", spec.MaxIdleSeconds)
			}
			want := "warm"
			if !tt.warm {
				want = string(tt.reason)
			}
			if !slices.Equal(m.claims, []string{want}) {
				t.Errorf("claims counted %v, want [%s]", m.claims, want)
			}
		})
	}
}

func ptr(n int) *int { return &n }

// TestClaimsHandOutEachMemberOnce: members are handed to one spawn each;
// when they run out, spawns go cold; a member whose ID a backend holds
// already (another controller claimed it) is passed over for the next.
func TestClaimsHandOutEachMemberOnce(t *testing.T) {
	ctx := context.Background()
	c, st, dr, _ := newCore(t)
	pooled(t, c, st, dr, map[string][]string{"d1": {"m1", "m2"}})
	st.addBackend(&plane.Backend{ID: "m1", ProjectID: 1, Image: "demo", DroneID: "d1", Status: plane.StatusReady})
	var got []string
	var reasons []plane.ColdReason
	for range 3 {
		sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"})
		if err != nil {
			t.Fatal(err)
		}
		got, reasons = append(got, sp.Backend.ID), append(reasons, sp.ColdReason)
	}
	if got[0] != "m2" || got[1] == "m1" || got[2] == "m1" || got[1] == "m2" || got[2] == "m2" {
		t.Errorf("backends %v: want m2 (m1 was taken), then new ones", got)
	}
	if !slices.Equal(reasons, []plane.ColdReason{"", plane.ColdPoolEmpty, plane.ColdPoolEmpty}) {
		t.Errorf("cold reasons %q", reasons)
	}
}

// TestClaimPrefersDronesWithMembers: the spawn goes to the drone with a
// member even when another drone is less loaded; with none anywhere it
// goes to the least loaded one.
func TestClaimPrefersDronesWithMembers(t *testing.T) {
	ctx := context.Background()
	c, st, dr, _ := newCore(t)
	threeDrones(st) // d1 least loaded
	pooled(t, c, st, dr, map[string][]string{"d3": {"m1"}, "d1": nil})
	sp, err := c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"})
	if err != nil || sp.Backend.DroneID != "d3" || !sp.Warm {
		t.Fatalf("spawn: on %s, warm %v, %v: want d3's member", sp.Backend.DroneID, sp.Warm, err)
	}
	sp, err = c.Spawn(ctx, alice, 1, plane.SpawnRequest{Image: "demo"})
	if err != nil || sp.Backend.DroneID != "d1" || sp.Warm {
		t.Fatalf("spawn: on %s, warm %v, %v: want cold on d1", sp.Backend.DroneID, sp.Warm, err)
	}
}

// TestPoolSpecs: one pool per image with a warm pool; its hash follows
// what members run and not the limits a claim sets.
func TestPoolSpecs(t *testing.T) {
	c, st, _, _ := newCore(t)
	st.images["demo"].ID, st.images["demo"].WarmPool, st.images["demo"].PullPolicy = 5, 3, plane.PullNever
	st.images["none"] = &plane.Image{ID: 6, ProjectID: 1, Name: "none", Ref: "x:1", Port: 80}
	specs, err := c.PoolSpecs(context.Background())
	if err != nil || len(specs) != 1 {
		t.Fatalf("pool specs: %+v, %v", specs, err)
	}
	p := specs[0]
	if p.ID != plane.PoolID(5) || p.Size != 3 || p.Spec.CPUMillis != 500 || p.Spec.MaxIdleSeconds != 0 || p.Spec.Env["A"] != "image" {
		t.Errorf("pool: %+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("pool does not validate: %v", err)
	}
	st.images["demo"].MaxIdleSeconds = 9
	again, _ := c.PoolSpecs(context.Background())
	if again[0].Hash != p.Hash {
		t.Errorf("hash changed with the idle limit, which a claim sets")
	}
	st.images["demo"].Port = 9999
	again, _ = c.PoolSpecs(context.Background())
	if again[0].Hash == p.Hash {
		t.Errorf("hash unchanged by the port")
	}
}
