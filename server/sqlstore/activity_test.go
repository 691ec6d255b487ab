package sqlstore_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"plane"
)

func TestRecordActivity(t *testing.T) { eachStore(t, testRecordActivity) }

func testRecordActivity(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "logged")
	t0 := ms(1_700_000_000_000)

	tests := []struct {
		name  string
		entry plane.Activity
		code  plane.ErrorCode
		field string
	}{
		{name: "by a user", entry: plane.Activity{ProjectID: p.ID, Time: t0, Actor: plane.Actor{UserID: 7, Name: "Ada"},
			Action: plane.ActionBackendSpawn, Target: "abc", Detail: "image demo"}},
		{name: "by a token", entry: plane.Activity{ProjectID: p.ID, Actor: plane.Actor{TokenID: "tok", Name: "ci"}, Action: plane.ActionImageCreate}},
		{name: "no action", entry: plane.Activity{ProjectID: p.ID, Actor: plane.Actor{Name: "Ada"}}, code: plane.EINVALID, field: "action"},
		{name: "no actor", entry: plane.Activity{ProjectID: p.ID, Action: plane.ActionImageCreate}, code: plane.EINVALID, field: "actor"},
		{name: "unknown project", entry: plane.Activity{ProjectID: 999, Actor: plane.Actor{Name: "Ada"}, Action: plane.ActionImageCreate}, code: plane.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.entry
			err := db.RecordActivity(ctx, &a)
			wantCode(t, err, tt.code)
			if tt.field != "" {
				wantField(t, err, tt.field)
			}
			if err != nil {
				return
			}
			if a.ID == 0 || a.Time.IsZero() {
				t.Fatalf("recorded %+v: want ID and Time", a)
			}
			got, err := db.FindActivity(ctx, p.ID, 1)
			if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], &a) {
				t.Fatalf("newest entry %+v (%v), want %+v", got, err, a)
			}
		})
	}
}

func TestFindActivity(t *testing.T) { eachStore(t, testFindActivity) }

func testFindActivity(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "logged")
	other := MustCreateProject(t, db, "other")
	t0 := ms(1_700_000_000_000)

	if got, err := db.FindActivity(ctx, p.ID, 10); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no entries: %v, %v; want an empty list", got, err)
	}
	// Recorded out of order; "tie" shares old's millisecond but came later.
	for _, e := range []struct {
		project *plane.Project
		target  string
		at      time.Time
	}{
		{p, "old", t0},
		{p, "new", t0.Add(time.Minute)},
		{other, "elsewhere", t0.Add(time.Hour)},
		{p, "mid", t0.Add(time.Second)},
		{p, "tie", t0},
	} {
		a := &plane.Activity{ProjectID: e.project.ID, Time: e.at, Actor: plane.Actor{Name: "Ada"}, Action: plane.ActionTokenCreate, Target: e.target}
		if err := db.RecordActivity(ctx, a); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name  string
		limit int
		want  []string
	}{
		{"newest first", 10, []string{"new", "mid", "tie", "old"}},
		{"limit", 2, []string{"new", "mid"}},
		{"zero limit is the default", 0, []string{"new", "mid", "tie", "old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.FindActivity(ctx, p.ID, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			var targets []string
			for _, a := range got {
				targets = append(targets, a.Target)
			}
			if !reflect.DeepEqual(targets, tt.want) {
				t.Fatalf("got %v, want %v", targets, tt.want)
			}
		})
	}
}
