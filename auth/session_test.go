package auth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"plane"
	"plane/auth"
	"plane/auth/authtest"
)

// fakeUsers is an in-memory plane.UserService for unit tests of Sessions. Its
// FindSession returns expired sessions too, so the tests see that Sessions
// checks expiry by its own clock.
type fakeUsers struct {
	mu       sync.Mutex
	users    map[int64]*plane.User
	sessions map[string]*plane.Session
	findErr  error
	authtest.LoginFailures
}

var _ plane.UserService = (*fakeUsers)(nil)

func newFakeUsers() *fakeUsers {
	return &fakeUsers{users: map[int64]*plane.User{}, sessions: map[string]*plane.Session{}}
}

func (f *fakeUsers) CreateUser(_ context.Context, u *plane.User) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	u.ID = int64(len(f.users) + 1)
	u.Admin = u.Admin || u.ID == 1
	c := *u
	f.users[u.ID] = &c
	return nil
}

func (f *fakeUsers) FindUserByID(_ context.Context, id int64) (*plane.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	if !ok {
		return nil, plane.Errorf(plane.ENOTFOUND, "user not found")
	}
	c := *u
	return &c, nil
}

func (f *fakeUsers) FindUserByEmail(_ context.Context, email string) (*plane.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range f.users {
		if strings.EqualFold(u.Email, email) {
			c := *u
			return &c, nil
		}
	}
	return nil, plane.Errorf(plane.ENOTFOUND, "user not found")
}

func (f *fakeUsers) FindUsers(context.Context) ([]*plane.User, error) {
	panic("not used by Sessions")
}

func (f *fakeUsers) CreateSession(_ context.Context, s *plane.Session) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sessions[s.ID]; ok {
		return plane.Errorf(plane.ECONFLICT, "session exists")
	}
	c := *s
	f.sessions[s.ID] = &c
	return nil
}

func (f *fakeUsers) FindSession(_ context.Context, id string) (*plane.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.findErr != nil {
		return nil, f.findErr
	}
	s, ok := f.sessions[id]
	if !ok {
		return nil, plane.Errorf(plane.ENOTFOUND, "session not found")
	}
	c := *s
	return &c, nil
}

func (f *fakeUsers) DeleteSession(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sessions[id]; !ok {
		return plane.Errorf(plane.ENOTFOUND, "session not found")
	}
	delete(f.sessions, id)
	return nil
}

func (f *fakeUsers) sessionCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// sessionFixture holds a store with one user and Sessions on a clock the
// test moves.
type sessionFixture struct {
	users    *fakeUsers
	sessions *auth.Sessions
	user     *plane.User
	now      time.Time
}

func newSessionFixture(tb testing.TB) *sessionFixture {
	tb.Helper()
	f := &sessionFixture{users: newFakeUsers(), now: t0}
	f.sessions = &auth.Sessions{Users: f.users, TTL: time.Hour, Now: func() time.Time { return f.now }}
	f.user = &plane.User{Email: "ada@example.com", CreatedAt: t0}
	if err := f.users.CreateUser(context.Background(), f.user); err != nil {
		tb.Fatal(err)
	}
	return f
}

func (f *sessionFixture) mustCreate(tb testing.TB) string {
	tb.Helper()
	secret, _, err := f.sessions.Create(context.Background(), f.user.ID)
	if err != nil {
		tb.Fatal(err)
	}
	return secret
}

func TestNewSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		secret, hash, err := auth.NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		b, err := base64.RawURLEncoding.DecodeString(secret)
		if err != nil || len(b) != 32 || len(secret) != 43 {
			t.Fatalf("secret %q: %d bytes, %v; want 32 bytes in 43 base64url characters", secret, len(b), err)
		}
		if hash != auth.HashSecret(secret) || len(hash) != 64 {
			t.Fatalf("hash %q, want HashSecret(secret)", hash)
		}
		if seen[secret] {
			t.Fatalf("secret %q handed out twice", secret)
		}
		seen[secret] = true
	}
	// SHA-256 of "abc", hex.
	if got, want := auth.HashSecret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Fatalf("HashSecret(abc) = %s, want %s", got, want)
	}
}

func TestSessionCreateAndLookup(t *testing.T) {
	f := newSessionFixture(t)
	ctx := context.Background()
	secret, s, err := f.sessions.Create(ctx, f.user.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := plane.Session{ID: auth.HashSecret(secret), UserID: f.user.ID, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if *s != want {
		t.Fatalf("session %+v, want %+v", *s, want)
	}

	f.now = t0.Add(time.Hour - time.Second)
	u, got, err := f.sessions.Lookup(ctx, secret)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != f.user.ID || u.Email != "ada@example.com" || *got != want {
		t.Fatalf("Lookup = %+v, %+v; want user %d and %+v", u, got, f.user.ID, want)
	}

	t.Run("default TTL", func(t *testing.T) {
		ss := &auth.Sessions{Users: f.users, Now: func() time.Time { return t0 }}
		_, s, err := ss.Create(ctx, f.user.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !s.ExpiresAt.Equal(t0.Add(plane.SessionTTL)) {
			t.Fatalf("expires %v, want %v", s.ExpiresAt, t0.Add(plane.SessionTTL))
		}
	})
}

// nonCanonical respells secret with the unused low bits of its last
// character set: the same bytes, another string.
func nonCanonical(secret string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, secret[len(secret)-1])
	return secret[:len(secret)-1] + string(alphabet[last|1])
}

func TestSessionLookupRejects(t *testing.T) {
	f := newSessionFixture(t)
	ctx := context.Background()
	secret := f.mustCreate(t)

	gone := &plane.User{Email: "gone@example.com"}
	if err := f.users.CreateUser(ctx, gone); err != nil {
		t.Fatal(err)
	}
	orphan, _, err := f.sessions.Create(ctx, gone.ID)
	if err != nil {
		t.Fatal(err)
	}
	delete(f.users.users, gone.ID)
	unknown, _, _ := auth.NewSecret()
	flipped := []byte(secret)
	flipped[5] ^= 'A' ^ 'B'

	tests := []struct {
		name   string
		secret string
		after  time.Duration
		msg    string
	}{
		{"empty", "", 0, "not signed in"},
		{"garbage", "garbage", 0, "session is invalid or has expired: sign in again"},
		{"unknown", unknown, 0, "session is invalid or has expired: sign in again"},
		{"one character changed", string(flipped), 0, "session is invalid or has expired: sign in again"},
		{"the stored hash", auth.HashSecret(secret), 0, "session is invalid or has expired: sign in again"},
		{"padded", secret + "=", 0, "session is invalid or has expired: sign in again"},
		{"standard alphabet", "+/" + unknown[2:], 0, "session is invalid or has expired: sign in again"},
		{"non-canonical spelling", nonCanonical(secret), 0, "session is invalid or has expired: sign in again"},
		{"surrounding spaces", " " + secret + " ", 0, "session is invalid or has expired: sign in again"},
		{"truncated", secret[:42], 0, "session is invalid or has expired: sign in again"},
		{"huge", strings.Repeat(secret, 1<<14), 0, "session is invalid or has expired: sign in again"},
		{"not UTF-8", "\xff" + secret[1:], 0, "session is invalid or has expired: sign in again"},
		{"user deleted", orphan, 0, "session is invalid or has expired: sign in again"},
		{"expired", secret, time.Hour, "session is invalid or has expired: sign in again"},
		{"long expired", secret, 100 * time.Hour, "session is invalid or has expired: sign in again"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.now = t0.Add(tt.after)
			u, s, err := f.sessions.Lookup(ctx, tt.secret)
			if u != nil || s != nil {
				t.Errorf("got %+v, %+v; want nil", u, s)
			}
			wantUnauthorized(t, err, tt.msg)
		})
	}

	f.now = t0
	if _, _, err := f.sessions.Lookup(ctx, secret); err != nil {
		t.Fatalf("valid session rejected: %v", err)
	}
}

func TestSessionStoreFailure(t *testing.T) {
	f := newSessionFixture(t)
	secret := f.mustCreate(t)
	boom := errors.New("disk I/O error")
	f.users.findErr = boom
	_, _, err := f.sessions.Lookup(context.Background(), secret)
	if !errors.Is(err, boom) || plane.ErrorCodeOf(err) == plane.EUNAUTHORIZED {
		t.Fatalf("err = %v, want the store's error, not unauthorized", err)
	}
}

func TestSessionRotate(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		old  func(testing.TB, *sessionFixture) string
	}{
		{"signed in before", func(tb testing.TB, f *sessionFixture) string { return f.mustCreate(tb) }},
		{"planted secret the store never saw", func(testing.TB, *sessionFixture) string { s, _, _ := auth.NewSecret(); return s }},
		{"no cookie", func(testing.TB, *sessionFixture) string { return "" }},
		{"garbage cookie", func(testing.TB, *sessionFixture) string { return "garbage" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newSessionFixture(t)
			old := tt.old(t, f)
			secret, s, err := f.sessions.Rotate(ctx, old, f.user.ID)
			if err != nil {
				t.Fatal(err)
			}
			if secret == old || s.ID != auth.HashSecret(secret) {
				t.Fatalf("new secret %q for old %q, session %q", secret, old, s.ID)
			}
			if _, _, err := f.sessions.Lookup(ctx, old); plane.ErrorCodeOf(err) != plane.EUNAUTHORIZED {
				t.Fatalf("old secret still signs in: %v", err)
			}
			if _, _, err := f.sessions.Lookup(ctx, secret); err != nil {
				t.Fatal(err)
			}
			if n := f.users.sessionCount(); n != 1 {
				t.Fatalf("%d sessions stored, want 1", n)
			}
		})
	}
}

func TestSessionDelete(t *testing.T) {
	f := newSessionFixture(t)
	ctx := context.Background()
	secret := f.mustCreate(t)
	keep := f.mustCreate(t)
	for _, s := range []string{secret, secret, "", "garbage", auth.HashSecret(keep)} {
		if err := f.sessions.Delete(ctx, s); err != nil {
			t.Fatalf("Delete(%q): %v", s, err)
		}
	}
	if _, _, err := f.sessions.Lookup(ctx, secret); plane.ErrorCodeOf(err) != plane.EUNAUTHORIZED {
		t.Fatalf("deleted session still signs in: %v", err)
	}
	if _, _, err := f.sessions.Lookup(ctx, keep); err != nil {
		t.Fatalf("other session ended: %v", err)
	}
}

func FuzzSessionSecret(f *testing.F) {
	fx := newSessionFixture(f)
	valid := fx.mustCreate(f)
	for _, s := range []string{
		"", valid, valid[:42], valid + "=", nonCanonical(valid), auth.HashSecret(valid),
		strings.Repeat("A", 43), strings.Repeat("/", 43), "\x00", "\xff\xfe", "é" + valid[2:],
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, secret string) {
		u, s, err := fx.sessions.Lookup(context.Background(), secret)
		if secret == valid {
			if err != nil || u == nil || s == nil {
				t.Fatalf("valid secret rejected: %v", err)
			}
			return
		}
		if u != nil || s != nil || plane.ErrorCodeOf(err) != plane.EUNAUTHORIZED {
			t.Fatalf("Lookup(%q) = %v, %v, %v; want unauthorized", secret, u, s, err)
		}
	})
}
