package sqlstore_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"plane"
	"plane/server/sqlstore"
)

// mustCreateImage stores an image with defaults and the given name.
func mustCreateImage(tb testing.TB, db *sqlstore.DB, projectID int64, name string) *plane.Image {
	tb.Helper()
	img, err := plane.NewImage(projectID, plane.ImageInput{Name: &name, Ref: ptr(name + ":latest")})
	if err != nil {
		tb.Fatal(err)
	}
	if err := db.CreateImage(context.Background(), img); err != nil {
		tb.Fatalf("create image %q: %v", name, err)
	}
	return img
}

func TestCreateImage(t *testing.T) { eachStore(t, testCreateImage) }

func testCreateImage(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "images")
	other := MustCreateProject(t, db, "other")
	mustCreateImage(t, db, p.ID, "taken")

	full := plane.Image{
		ProjectID: p.ID, Name: "full", Ref: "registry.example.com:5000/team/app:v1", Port: 3000,
		PullPolicy: plane.PullAlways, Public: true, AllowBearer: true, Env: map[string]string{"A": "1", "B": "two"},
		Limits:    plane.Limits{MaxIdleSeconds: 60, LifetimeSeconds: 3600, CPUMillis: 500, MemoryMB: 256, SuspendSeconds: 900},
		WarmPool:  3,
		CreatedAt: ms(1_700_000_000_001),
	}
	tests := []struct {
		name  string
		image plane.Image
		code  plane.ErrorCode
		field string
	}{
		{name: "every field", image: full},
		{name: "nil env", image: plane.Image{ProjectID: p.ID, Name: "bare", Ref: "bare", Port: 80, PullPolicy: plane.PullNever}},
		{name: "taken name in another project", image: plane.Image{ProjectID: other.ID, Name: "taken", Ref: "x", Port: 80, PullPolicy: plane.PullNever}},
		{name: "taken name", image: plane.Image{ProjectID: p.ID, Name: "taken", Ref: "x", Port: 80, PullPolicy: plane.PullNever}, code: plane.ECONFLICT, field: "name"},
		{name: "invalid port", image: plane.Image{ProjectID: p.ID, Name: "bad", Ref: "x", PullPolicy: plane.PullNever}, code: plane.EINVALID, field: "port"},
		{name: "invalid ref", image: plane.Image{ProjectID: p.ID, Name: "bad", Ref: "UPPER", Port: 80, PullPolicy: plane.PullNever}, code: plane.EINVALID, field: "ref"},
		{name: "warm pool too large", image: plane.Image{ProjectID: p.ID, Name: "bad", Ref: "x", Port: 80, PullPolicy: plane.PullNever, WarmPool: plane.MaxWarmPool + 1}, code: plane.EINVALID, field: "warm_pool"},
		{name: "unknown project", image: plane.Image{ProjectID: 999, Name: "lost", Ref: "x", Port: 80, PullPolicy: plane.PullNever}, code: plane.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := tt.image
			err := db.CreateImage(ctx, &img)
			wantCode(t, err, tt.code)
			if tt.field != "" {
				wantField(t, err, tt.field)
			}
			if err != nil {
				return
			}
			if img.ID == 0 || img.CreatedAt.IsZero() || !img.UpdatedAt.Equal(img.CreatedAt) {
				t.Fatalf("created %+v: ID and timestamps must be set", img)
			}
			got, err := db.FindImage(ctx, img.ProjectID, img.Name)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, &img) {
				t.Fatalf("stored\n%+v\nwant\n%+v", got, img)
			}
		})
	}
}

func TestFindImages(t *testing.T) { eachStore(t, testFindImages) }

func testFindImages(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "images")
	other := MustCreateProject(t, db, "other")

	if got, err := db.FindImages(ctx, p.ID); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no images: %v, %v; want an empty list", got, err)
	}
	b := mustCreateImage(t, db, p.ID, "bravo")
	a := mustCreateImage(t, db, p.ID, "alpha")
	mustCreateImage(t, db, other.ID, "elsewhere")

	got, err := db.FindImages(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []*plane.Image{a, b}) {
		t.Fatalf("got %+v, want alpha then bravo of the project only", got)
	}
	_, err = db.FindImage(ctx, p.ID, "elsewhere")
	wantCode(t, err, plane.ENOTFOUND)
}

func TestFindWarmPoolImages(t *testing.T) { eachStore(t, testFindWarmPoolImages) }

func testFindWarmPoolImages(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "images")
	other := MustCreateProject(t, db, "other")

	if got, err := db.FindWarmPoolImages(ctx); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no images: %v, %v; want an empty list", got, err)
	}
	pooled := func(projectID int64, name string, size int) *plane.Image {
		t.Helper()
		img := mustCreateImage(t, db, projectID, name)
		if size == 0 {
			return img
		}
		img, err := db.UpdateImage(ctx, projectID, name, plane.ImageInput{WarmPool: ptr(size)})
		if err != nil {
			t.Fatalf("set the warm pool of %q: %v", name, err)
		}
		return img
	}
	// Created out of name order: the list is by ID, across projects.
	zulu := pooled(p.ID, "zulu", 2)
	pooled(p.ID, "cold", 0)
	elsewhere := pooled(other.ID, "elsewhere", 1)
	alpha := pooled(p.ID, "alpha", plane.MaxWarmPool)
	emptied := pooled(p.ID, "emptied", 5)
	if _, err := db.UpdateImage(ctx, p.ID, emptied.Name, plane.ImageInput{WarmPool: ptr(0)}); err != nil {
		t.Fatal(err)
	}

	got, err := db.FindWarmPoolImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []*plane.Image{zulu, elsewhere, alpha}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %s, want %s", imageNames(got), imageNames(want))
	}
	// A deleted image's pool goes with it.
	if err := db.DeleteImage(ctx, p.ID, zulu.Name); err != nil {
		t.Fatal(err)
	}
	if got, err := db.FindWarmPoolImages(ctx); err != nil || !reflect.DeepEqual(got, []*plane.Image{elsewhere, alpha}) {
		t.Fatalf("after deleting zulu: %s, %v", imageNames(got), err)
	}
}

// imageNames lists images as name=pool, for failure messages.
func imageNames(images []*plane.Image) []string {
	names := make([]string, len(images))
	for i, img := range images {
		names[i] = fmt.Sprintf("%d:%s=%d", img.ProjectID, img.Name, img.WarmPool)
	}
	return names
}

func TestUpdateImage(t *testing.T) { eachStore(t, testUpdateImage) }

func testUpdateImage(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "images")
	mustCreateImage(t, db, p.ID, "taken")

	tests := []struct {
		name  string
		image string // "" for one created by the test
		in    plane.ImageInput
		check func(t *testing.T, before, after *plane.Image)
		code  plane.ErrorCode
		field string
	}{
		{
			name: "some fields",
			in:   plane.ImageInput{Port: ptr(9000), Env: &map[string]string{"X": "y"}, Public: ptr(true), AllowBearer: ptr(true)},
			check: func(t *testing.T, before, after *plane.Image) {
				want := *before
				want.Port, want.Env, want.Public, want.AllowBearer, want.UpdatedAt = 9000, map[string]string{"X": "y"}, true, true, after.UpdatedAt
				if !reflect.DeepEqual(after, &want) {
					t.Fatalf("got %+v, want %+v", after, want)
				}
			},
		},
		{
			name: "every limit",
			in:   plane.ImageInput{LimitsInput: plane.LimitsInput{MaxIdleSeconds: ptr(30), LifetimeSeconds: ptr(600), CPUMillis: ptr(250), MemoryMB: ptr(64), SuspendSeconds: ptr(120)}},
			check: func(t *testing.T, before, after *plane.Image) {
				if want := (plane.Limits{MaxIdleSeconds: 30, LifetimeSeconds: 600, CPUMillis: 250, MemoryMB: 64, SuspendSeconds: 120}); after.Limits != want {
					t.Fatalf("limits %+v, want %+v", after.Limits, want)
				}
				// And back to none: zero is stored, not skipped.
				again, err := db.UpdateImage(ctx, p.ID, after.Name, plane.ImageInput{LimitsInput: plane.LimitsInput{SuspendSeconds: ptr(0)}})
				if err != nil || again.SuspendSeconds != 0 || again.MaxIdleSeconds != 30 {
					t.Fatalf("suspend_seconds back to 0: %+v, %v", again, err)
				}
				if stored, err := db.FindImage(ctx, p.ID, after.Name); err != nil || !reflect.DeepEqual(stored, again) {
					t.Fatalf("stored %+v, %v; returned %+v", stored, err, again)
				}
			},
		},
		{
			name: "warm pool",
			in:   plane.ImageInput{WarmPool: ptr(4)},
			check: func(t *testing.T, before, after *plane.Image) {
				if after.WarmPool != 4 {
					t.Fatalf("warm pool %d, want 4", after.WarmPool)
				}
				// An update without warm_pool keeps it.
				kept, err := db.UpdateImage(ctx, p.ID, after.Name, plane.ImageInput{Port: ptr(8081)})
				if err != nil || kept.WarmPool != 4 || kept.Port != 8081 {
					t.Fatalf("update without warm_pool: %+v, %v; want the pool kept", kept, err)
				}
				// And back to none: zero is stored, not skipped.
				none, err := db.UpdateImage(ctx, p.ID, after.Name, plane.ImageInput{WarmPool: ptr(0)})
				if err != nil || none.WarmPool != 0 {
					t.Fatalf("warm_pool back to 0: %+v, %v", none, err)
				}
				if stored, err := db.FindImage(ctx, p.ID, after.Name); err != nil || !reflect.DeepEqual(stored, none) {
					t.Fatalf("stored %+v, %v; returned %+v", stored, err, none)
				}
			},
		},
		{
			name: "rename",
			in:   plane.ImageInput{Name: ptr("renamed")},
			check: func(t *testing.T, before, after *plane.Image) {
				if after.Name != "renamed" || after.ID != before.ID {
					t.Fatalf("got %+v", after)
				}
				if _, err := db.FindImage(ctx, p.ID, before.Name); plane.ErrorCodeOf(err) != plane.ENOTFOUND {
					t.Fatalf("old name still found: %v", err)
				}
			},
		},
		{name: "rename onto a taken name", in: plane.ImageInput{Name: ptr("taken")}, code: plane.ECONFLICT, field: "name"},
		{name: "invalid input", in: plane.ImageInput{Port: ptr(0)}, code: plane.EINVALID, field: "port"},
		{name: "negative warm pool", in: plane.ImageInput{WarmPool: ptr(-1)}, code: plane.EINVALID, field: "warm_pool"},
		{name: "unknown image", image: "missing", in: plane.ImageInput{Port: ptr(1)}, code: plane.ENOTFOUND},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := tt.image
			var before *plane.Image
			if name == "" {
				before = mustCreateImage(t, db, p.ID, "image"+string(rune('a'+i)))
				name = before.Name
			}
			after, err := db.UpdateImage(ctx, p.ID, name, tt.in)
			wantCode(t, err, tt.code)
			if tt.field != "" {
				wantField(t, err, tt.field)
			}
			if err != nil {
				if before != nil {
					// A refused update changes nothing.
					got, err := db.FindImage(ctx, p.ID, name)
					if err != nil || !reflect.DeepEqual(got, before) {
						t.Fatalf("after a refused update: %+v, %v; want %+v", got, err, before)
					}
				}
				return
			}
			if after.UpdatedAt.Before(before.UpdatedAt) {
				t.Fatalf("updated at %v moved back from %v", after.UpdatedAt, before.UpdatedAt)
			}
			stored, err := db.FindImage(ctx, p.ID, after.Name)
			if err != nil || !reflect.DeepEqual(stored, after) {
				t.Fatalf("stored %+v, %v; returned %+v", stored, err, after)
			}
			tt.check(t, before, after)
		})
	}
}

func TestDeleteImage(t *testing.T) { eachStore(t, testDeleteImage) }

func testDeleteImage(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "images")
	other := MustCreateProject(t, db, "other")
	mustCreateImage(t, db, p.ID, "gone")
	mustCreateImage(t, db, other.ID, "gone")

	if err := db.DeleteImage(ctx, p.ID, "gone"); err != nil {
		t.Fatal(err)
	}
	_, err := db.FindImage(ctx, p.ID, "gone")
	wantCode(t, err, plane.ENOTFOUND)
	wantCode(t, db.DeleteImage(ctx, p.ID, "gone"), plane.ENOTFOUND)
	if _, err := db.FindImage(ctx, other.ID, "gone"); err != nil {
		t.Fatalf("other project's image: %v", err)
	}
}
