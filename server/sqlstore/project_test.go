package sqlstore_test

import (
	"context"
	"reflect"
	"testing"

	"plane"
)

func TestCreateProject(t *testing.T) { eachStore(t, testCreateProject) }

func testCreateProject(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
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

func TestFindProjects(t *testing.T) { eachStore(t, testFindProjects) }

func testFindProjects(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)

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

func TestFindProjectsOfTeam(t *testing.T) { eachStore(t, testFindProjectsOfTeam) }

func testFindProjectsOfTeam(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	ada := mustCreateUser(t, db, "ada@example.com")
	team := mustCreateTeam(t, db, "crew", ada.ID)
	var want []*plane.Project
	for _, name := range []string{"bravo", "alpha"} {
		p := &plane.Project{Name: name, TeamID: team.ID}
		if err := db.CreateProject(ctx, p); err != nil {
			t.Fatal(err)
		}
		want = append([]*plane.Project{p}, want...)
	}
	MustCreateProject(t, db, "elsewhere")

	if got, err := db.FindProjectsOfTeam(ctx, team.ID); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v; want alpha then bravo", got, err)
	}
	if got, err := db.FindProjectsOfTeam(ctx, 999); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("unknown team: %v, %v; want an empty list", got, err)
	}
}

func TestDeleteProject(t *testing.T) { eachStore(t, testDeleteProject) }

func testDeleteProject(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "doomed")
	kept := MustCreateProject(t, db, "kept")
	mustCreateImage(t, db, p.ID, "app")
	if err := db.CreateToken(ctx, &plane.Token{ID: "tok", ProjectID: p.ID}); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordActivity(ctx, &plane.Activity{ProjectID: p.ID, Actor: plane.Actor{Name: "Ada"}, Action: plane.ActionProjectCreate}); err != nil {
		t.Fatal(err)
	}
	done := mustCreateBackend(t, db, p.ID, "")
	mustApply(t, db, plane.BackendEvent{BackendID: done.ID, Status: plane.StatusTerminated})
	live := mustCreateBackend(t, db, p.ID, "")
	other := mustCreateBackend(t, db, kept.ID, "")

	t.Run("refused while a backend lives", func(t *testing.T) {
		err := db.DeleteProject(ctx, p.ID)
		wantCode(t, err, plane.ECONFLICT)
		if want := `project "doomed" has 1 live backends: terminate them first`; plane.ErrorMessageOf(err) != want {
			t.Fatalf("message %q, want %q", plane.ErrorMessageOf(err), want)
		}
		if _, err := db.FindProjectByID(ctx, p.ID); err != nil {
			t.Fatalf("project after refusal: %v", err)
		}
	})
	t.Run("deleted with everything in it", func(t *testing.T) {
		mustApply(t, db, plane.BackendEvent{BackendID: live.ID, Status: plane.StatusTerminated})
		if err := db.DeleteProject(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		_, err := db.FindProjectByID(ctx, p.ID)
		wantCode(t, err, plane.ENOTFOUND)
		_, err = db.FindImage(ctx, p.ID, "app")
		wantCode(t, err, plane.ENOTFOUND)
		_, err = db.FindTokenByID(ctx, "tok")
		wantCode(t, err, plane.ENOTFOUND)
		_, err = db.FindBackendByID(ctx, done.ID)
		wantCode(t, err, plane.ENOTFOUND)
		if got, err := db.FindActivity(ctx, p.ID, 0); err != nil || len(got) != 0 {
			t.Fatalf("activity left: %v, %v", got, err)
		}
		if _, err := db.FindBackendByID(ctx, other.ID); err != nil {
			t.Fatalf("other project's backend: %v", err)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		wantCode(t, db.DeleteProject(ctx, p.ID), plane.ENOTFOUND)
	})
}
