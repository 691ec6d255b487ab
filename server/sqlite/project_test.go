package sqlite_test

import (
	"context"
	"reflect"
	"testing"

	"plane"
)

func TestCreateProject(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	first := MustCreateProject(t, db, "first")
	if first.ID == 0 || first.TeamID == 0 || first.CreatedAt.IsZero() {
		t.Fatalf("created project %+v: ID, TeamID and CreatedAt must be set", first)
	}

	tests := []struct {
		name    string
		project plane.Project
		code    plane.ErrorCode
		field   string
	}{
		{name: "own team", project: plane.Project{Name: "second"}},
		{name: "existing team", project: plane.Project{Name: "third", TeamID: first.TeamID}},
		{name: "given time", project: plane.Project{Name: "dated", CreatedAt: ms(1_700_000_000_123)}},
		{name: "taken name", project: plane.Project{Name: "first"}, code: plane.ECONFLICT, field: "name"},
		{name: "taken name with team", project: plane.Project{Name: "first", TeamID: first.TeamID}, code: plane.ECONFLICT, field: "name"},
		{name: "invalid name", project: plane.Project{Name: "Not Valid"}, code: plane.EINVALID, field: "name"},
		{name: "empty name", project: plane.Project{}, code: plane.EINVALID, field: "name"},
		{name: "unknown team", project: plane.Project{Name: "orphan", TeamID: 999}, code: plane.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.project
			err := db.CreateProject(ctx, &p)
			wantCode(t, err, tt.code)
			if tt.field != "" {
				wantField(t, err, tt.field)
			}
			if err != nil {
				if p.ID != 0 {
					t.Fatalf("failed create set ID %d", p.ID)
				}
				return
			}
			if tt.project.TeamID != 0 && p.TeamID != tt.project.TeamID {
				t.Fatalf("team %d, want %d", p.TeamID, tt.project.TeamID)
			}
			if tt.project.TeamID == 0 && (p.TeamID == 0 || p.TeamID == first.TeamID) {
				t.Fatalf("team %d, want a new team", p.TeamID)
			}
			if !tt.project.CreatedAt.IsZero() && !p.CreatedAt.Equal(tt.project.CreatedAt) {
				t.Fatalf("created at %v, want %v", p.CreatedAt, tt.project.CreatedAt)
			}
			got, err := db.FindProjectByID(ctx, p.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, &p) {
				t.Fatalf("stored %+v, want %+v", got, p)
			}
		})
	}
}

func TestFindProjects(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)

	if got, err := db.FindProjects(ctx); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty store: %v, %v; want an empty list", got, err)
	}
	b := MustCreateProject(t, db, "bravo")
	a := MustCreateProject(t, db, "alpha")

	t.Run("by name", func(t *testing.T) {
		got, err := db.FindProjects(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, []*plane.Project{a, b}) {
			t.Fatalf("got %+v, want alpha then bravo", got)
		}
	})
	t.Run("find by id and name", func(t *testing.T) {
		got, err := db.FindProjectByID(ctx, a.ID)
		if err != nil || !reflect.DeepEqual(got, a) {
			t.Fatalf("by id: %+v, %v", got, err)
		}
		got, err = db.FindProjectByName(ctx, "bravo")
		if err != nil || !reflect.DeepEqual(got, b) {
			t.Fatalf("by name: %+v, %v", got, err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		_, err := db.FindProjectByID(ctx, 999)
		wantCode(t, err, plane.ENOTFOUND)
		_, err = db.FindProjectByName(ctx, "charlie")
		wantCode(t, err, plane.ENOTFOUND)
	})
}
