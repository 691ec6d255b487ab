package sqlstore_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"plane"
)

func TestUpsertDrone(t *testing.T) { eachStore(t, testUpsertDrone) }

func testUpsertDrone(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	t0 := ms(1_700_000_000_000)

	first := &plane.Drone{
		ID: "d1", Address: "127.0.0.1", ProxyAddress: "127.0.0.1:9090", Version: "v1", ProtocolVersion: 1,
		Status: plane.DroneReady, Capacity: 10, Backends: 2, CPUPercent: 12.5, MemoryBytes: 1 << 40,
		Images: []string{"app:1", "db:2"}, LastHeartbeat: t0,
	}
	if err := db.UpsertDrone(ctx, first); err != nil {
		t.Fatal(err)
	}
	if first.CreatedAt.IsZero() {
		t.Fatal("CreatedAt not set")
	}
	created := first.CreatedAt

	tests := []struct {
		name  string
		drone plane.Drone
		want  func(d *plane.Drone) // adjusts the expected drone; nil when an error is expected
		code  plane.ErrorCode
		field string
	}{
		{
			name:  "heartbeat updates every field but created at",
			drone: plane.Drone{ID: "d1", Address: "127.0.0.2", Version: "v2", ProtocolVersion: 2, Status: plane.DroneDraining, Draining: true, LastHeartbeat: t0.Add(2 * time.Second)},
			want: func(d *plane.Drone) {
				d.Images = []string{}
				d.CreatedAt = created
			},
		},
		{
			name:  "status follows draining when empty",
			drone: plane.Drone{ID: "d2", Draining: true, LastHeartbeat: t0},
			want:  func(d *plane.Drone) { d.Status, d.Images = plane.DroneDraining, []string{} },
		},
		{
			name:  "ready when not draining",
			drone: plane.Drone{ID: "d3", LastHeartbeat: t0, Images: []string{"x"}},
			want:  func(d *plane.Drone) { d.Status = plane.DroneReady },
		},
		{
			name: "health: certificate and proxy",
			drone: plane.Drone{ID: "d5", LastHeartbeat: t0, CertNotAfter: &t0, CertError: "acme: rate limited",
				ProxyError: "proxy cannot accept connections: too many open files"},
			want: func(d *plane.Drone) { d.Status, d.Images = plane.DroneReady, []string{} },
		},
		{name: "no id", drone: plane.Drone{LastHeartbeat: t0}, code: plane.EINVALID, field: "id"},
		{name: "unknown status", drone: plane.Drone{ID: "d4", Status: "sleepy"}, code: plane.EINVALID, field: "status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.drone
			err := db.UpsertDrone(ctx, &d)
			wantCode(t, err, tt.code)
			if tt.field != "" {
				wantField(t, err, tt.field)
			}
			if err != nil {
				return
			}
			got, err := db.FindDroneByID(ctx, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.drone
			want.CreatedAt = got.CreatedAt
			tt.want(&want)
			if !reflect.DeepEqual(got, &want) {
				t.Fatalf("stored\n%+v\nwant\n%+v", got, want)
			}
			if !d.CreatedAt.Equal(got.CreatedAt) || !d.LastHeartbeat.Equal(got.LastHeartbeat) {
				t.Fatalf("returned times %v %v, stored %v %v", d.CreatedAt, d.LastHeartbeat, got.CreatedAt, got.LastHeartbeat)
			}
		})
	}

	t.Run("zero heartbeat is now", func(t *testing.T) {
		d := &plane.Drone{ID: "d5"}
		before := time.Now().Truncate(time.Millisecond)
		if err := db.UpsertDrone(ctx, d); err != nil {
			t.Fatal(err)
		}
		if d.LastHeartbeat.Before(before) || d.LastHeartbeat.After(time.Now()) {
			t.Fatalf("last heartbeat %v, want now", d.LastHeartbeat)
		}
	})
}

func TestFindDrones(t *testing.T) { eachStore(t, testFindDrones) }

func testFindDrones(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)

	if got, err := db.FindDrones(ctx); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty store: %v, %v; want an empty list", got, err)
	}
	for _, id := range []string{"zulu", "alpha", "mike"} {
		if err := db.UpsertDrone(ctx, &plane.Drone{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.FindDrones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range got {
		ids = append(ids, d.ID)
	}
	if want := []string{"alpha", "mike", "zulu"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("got %v, want %v", ids, want)
	}
	_, err = db.FindDroneByID(ctx, "nosuch")
	wantCode(t, err, plane.ENOTFOUND)
}

func TestSetDroneStatus(t *testing.T) { eachStore(t, testSetDroneStatus) }

func testSetDroneStatus(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	if err := db.UpsertDrone(ctx, &plane.Drone{ID: "d1"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		id     string
		status plane.DroneStatus
		code   plane.ErrorCode
	}{
		{"lost", "d1", plane.DroneLost, ""},
		{"stopped", "d1", plane.DroneStopped, ""},
		{"unknown drone", "nosuch", plane.DroneLost, plane.ENOTFOUND},
		{"unknown status", "d1", "gone fishing", plane.EINVALID},
		{"empty status", "d1", "", plane.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := db.FindDroneByID(ctx, "d1")
			err := db.SetDroneStatus(ctx, tt.id, tt.status)
			wantCode(t, err, tt.code)
			got, err2 := db.FindDroneByID(ctx, "d1")
			if err2 != nil {
				t.Fatal(err2)
			}
			want := *before
			if err == nil {
				want.Status = tt.status
			}
			if !reflect.DeepEqual(got, &want) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}

	t.Run("a heartbeat brings a lost drone back", func(t *testing.T) {
		if err := db.SetDroneStatus(ctx, "d1", plane.DroneLost); err != nil {
			t.Fatal(err)
		}
		if err := db.UpsertDrone(ctx, &plane.Drone{ID: "d1"}); err != nil {
			t.Fatal(err)
		}
		if got, err := db.FindDroneByID(ctx, "d1"); err != nil || got.Status != plane.DroneReady {
			t.Fatalf("got %+v, %v; want ready", got, err)
		}
	})
}

func TestSetDroneDraining(t *testing.T) { eachStore(t, testSetDroneDraining) }

func testSetDroneDraining(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	for _, d := range []*plane.Drone{{ID: "ready"}, {ID: "lost"}} {
		if err := db.UpsertDrone(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.SetDroneStatus(ctx, "lost", plane.DroneLost); err != nil {
		t.Fatal(err)
	}

	// Steps run in order on the same drones.
	tests := []struct {
		name       string
		id         string
		draining   bool
		code       plane.ErrorCode
		wantStatus plane.DroneStatus
	}{
		{"drain a ready drone", "ready", true, "", plane.DroneDraining},
		{"drain again", "ready", true, "", plane.DroneDraining},
		{"undrain", "ready", false, "", plane.DroneReady},
		{"a lost drone stays lost", "lost", true, "", plane.DroneLost},
		{"and lost when undrained", "lost", false, "", plane.DroneLost},
		{"unknown drone", "nosuch", true, plane.ENOTFOUND, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := db.FindDroneByID(ctx, tt.id)
			err := db.SetDroneDraining(ctx, tt.id, tt.draining)
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			got, err := db.FindDroneByID(ctx, tt.id)
			if err != nil {
				t.Fatal(err)
			}
			want := *before
			want.Draining, want.Status = tt.draining, tt.wantStatus
			if !reflect.DeepEqual(got, &want) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
}
