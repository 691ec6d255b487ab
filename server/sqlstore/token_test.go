package sqlstore_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"plane"
)

func TestCreateToken(t *testing.T) { eachStore(t, testCreateToken) }

func testCreateToken(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "tokens")
	t0 := ms(1_700_000_000_000)
	if err := db.CreateToken(ctx, &plane.Token{ID: "taken", ProjectID: p.ID, Name: "first"}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		token plane.Token
		code  plane.ErrorCode
		field string
	}{
		{
			name: "every field",
			token: plane.Token{
				ID: "tok1", ProjectID: p.ID, Name: "ci", Scopes: []plane.Scope{plane.ScopeBackendsRead, plane.ScopeImagesWrite},
				CreatedAt: t0, ExpiresAt: ptr(t0.Add(time.Hour)), LastUsedAt: ptr(t0.Add(time.Minute)), RevokedAt: ptr(t0.Add(2 * time.Minute)),
			},
		},
		{name: "defaults", token: plane.Token{ID: "tok2", ProjectID: p.ID, Name: "bare"}},
		{name: "no id", token: plane.Token{ProjectID: p.ID, Name: "x"}, code: plane.EINVALID, field: "id"},
		{name: "taken id", token: plane.Token{ID: "taken", ProjectID: p.ID, Name: "x"}, code: plane.ECONFLICT, field: "id"},
		{name: "unknown scope", token: plane.Token{ID: "tok3", ProjectID: p.ID, Scopes: []plane.Scope{"root"}}, code: plane.EINVALID, field: "scopes"},
		{name: "unknown project", token: plane.Token{ID: "tok4", ProjectID: 999}, code: plane.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token
			err := db.CreateToken(ctx, &tok)
			wantCode(t, err, tt.code)
			if tt.field != "" {
				wantField(t, err, tt.field)
			}
			if err != nil {
				return
			}
			if tok.CreatedAt.IsZero() || tok.Scopes == nil {
				t.Fatalf("created %+v: CreatedAt and Scopes must be set", tok)
			}
			got, err := db.FindTokenByID(ctx, tok.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, &tok) {
				t.Fatalf("stored\n%+v\nwant\n%+v", got, tok)
			}
		})
	}
	_, err := db.FindTokenByID(ctx, "nosuch")
	wantCode(t, err, plane.ENOTFOUND)
}

func TestFindTokens(t *testing.T) { eachStore(t, testFindTokens) }

func testFindTokens(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "tokens")
	other := MustCreateProject(t, db, "other")
	t0 := ms(1_700_000_000_000)

	if got, err := db.FindTokens(ctx, p.ID); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no tokens: %v, %v; want an empty list", got, err)
	}
	for i, tok := range []plane.Token{
		{ID: "old", ProjectID: p.ID, CreatedAt: t0},
		{ID: "new", ProjectID: p.ID, CreatedAt: t0.Add(time.Second)},
		{ID: "mid", ProjectID: p.ID, CreatedAt: t0.Add(time.Millisecond)},
		{ID: "elsewhere", ProjectID: other.ID, CreatedAt: t0},
	} {
		if err := db.CreateToken(ctx, &tok); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
	}
	got, err := db.FindTokens(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tok := range got {
		ids = append(ids, tok.ID)
	}
	if want := []string{"new", "mid", "old"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("got %v, want %v", ids, want)
	}
}

func TestRevokeToken(t *testing.T) { eachStore(t, testRevokeToken) }

func testRevokeToken(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "tokens")
	if err := db.CreateToken(ctx, &plane.Token{ID: "tok", ProjectID: p.ID}); err != nil {
		t.Fatal(err)
	}

	before := time.Now().Truncate(time.Millisecond)
	if err := db.RevokeToken(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	got, err := db.FindTokenByID(ctx, "tok")
	if err != nil || got.RevokedAt == nil || got.RevokedAt.Before(before) || got.Usable(time.Now()) {
		t.Fatalf("revoked token %+v, %v", got, err)
	}
	first := *got.RevokedAt

	time.Sleep(2 * time.Millisecond)
	if err := db.RevokeToken(ctx, "tok"); err != nil {
		t.Fatalf("revoke again: %v", err)
	}
	if got, err := db.FindTokenByID(ctx, "tok"); err != nil || !got.RevokedAt.Equal(first) {
		t.Fatalf("revoked again at %v (%v), want the first time %v", got.RevokedAt, err, first)
	}
	wantCode(t, db.RevokeToken(ctx, "nosuch"), plane.ENOTFOUND)
}

func TestTouchToken(t *testing.T) { eachStore(t, testTouchToken) }

func testTouchToken(t *testing.T, s store) {
	ctx := context.Background()
	db := s.MustOpen(t)
	p := MustCreateProject(t, db, "tokens")
	if err := db.CreateToken(ctx, &plane.Token{ID: "tok", ProjectID: p.ID}); err != nil {
		t.Fatal(err)
	}
	t0 := ms(1_700_000_000_000)

	tests := []struct {
		name string
		at   time.Time
		want time.Time
	}{
		{"first use", t0, t0},
		{"later use", t0.Add(time.Minute), t0.Add(time.Minute)},
		{"earlier use recorded late", t0.Add(time.Second), t0.Add(time.Minute)},
		{"sub-millisecond precision is dropped", t0.Add(2*time.Minute + 999*time.Microsecond), t0.Add(2 * time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := db.TouchToken(ctx, "tok", tt.at); err != nil {
				t.Fatal(err)
			}
			got, err := db.FindTokenByID(ctx, "tok")
			if err != nil {
				t.Fatal(err)
			}
			if got.LastUsedAt == nil || !reflect.DeepEqual(*got.LastUsedAt, tt.want) {
				t.Fatalf("last used %v, want %v", got.LastUsedAt, tt.want)
			}
		})
	}
	wantCode(t, db.TouchToken(ctx, "nosuch", t0), plane.ENOTFOUND)
}
