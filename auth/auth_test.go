package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"plane"
	"plane/auth"
)

// fakeTokens is an in-memory plane.TokenService for unit tests of the
// authentication logic. It hands out copies, as a real store does.
type fakeTokens struct {
	mu      sync.Mutex
	tokens  map[string]*plane.Token
	touches []time.Time
	findErr error
}

var _ plane.TokenService = (*fakeTokens)(nil)

func newFakeTokens() *fakeTokens { return &fakeTokens{tokens: map[string]*plane.Token{}} }

func (f *fakeTokens) CreateToken(_ context.Context, t *plane.Token) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := *t
	f.tokens[t.ID] = &c
	return nil
}

func (f *fakeTokens) FindTokenByID(_ context.Context, id string) (*plane.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.findErr != nil {
		return nil, f.findErr
	}
	t, ok := f.tokens[id]
	if !ok {
		return nil, plane.Errorf(plane.ENOTFOUND, "token not found")
	}
	c := *t
	return &c, nil
}

func (f *fakeTokens) FindTokens(_ context.Context, projectID int64) ([]*plane.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*plane.Token
	for _, id := range slices.Sorted(maps.Keys(f.tokens)) {
		if t := f.tokens[id]; t.ProjectID == projectID {
			c := *t
			out = append(out, &c)
		}
	}
	return out, nil
}

func (f *fakeTokens) RevokeToken(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tokens[id]
	if !ok {
		return plane.Errorf(plane.ENOTFOUND, "token not found")
	}
	now := time.Now()
	t.RevokedAt = &now
	return nil
}

func (f *fakeTokens) TouchToken(_ context.Context, id string, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tokens[id]
	if !ok {
		return plane.Errorf(plane.ENOTFOUND, "token not found")
	}
	t.LastUsedAt = &at
	f.touches = append(f.touches, at)
	return nil
}

func (f *fakeTokens) touchCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.touches)
}

func (f *fakeTokens) edit(id string, fn func(*plane.Token)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.tokens[id])
}

// fixture holds a key, a store and an authenticator whose clock the test moves.
type fixture struct {
	key    ed25519.PrivateKey
	issuer *auth.Issuer
	tokens *fakeTokens
	auth   *auth.Authenticator
	now    time.Time
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	f := &fixture{key: key, issuer: &auth.Issuer{Key: key}, tokens: newFakeTokens(), now: t0}
	f.auth = &auth.Authenticator{
		Key:    key.Public().(ed25519.PublicKey),
		Tokens: f.tokens,
		Now:    func() time.Time { return f.now },
	}
	return f
}

// mustToken stores a token record of project 7 and returns it with its signed form.
func (f *fixture) mustToken(tb testing.TB, edit func(*plane.Token)) (*plane.Token, string) {
	tb.Helper()
	t := &plane.Token{
		ID:        auth.NewTokenID(),
		ProjectID: 7,
		Name:      "ci",
		Scopes:    []plane.Scope{plane.ScopeBackendsRead, plane.ScopeBackendsWrite},
		CreatedAt: f.now,
	}
	if edit != nil {
		edit(t)
	}
	if err := f.tokens.CreateToken(context.Background(), t); err != nil {
		tb.Fatal(err)
	}
	s, err := f.issuer.IssueAPIToken(t)
	if err != nil {
		tb.Fatal(err)
	}
	return t, s
}

// signWith signs arbitrary claims with method and key, for forged tokens.
func signWith(tb testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func apiClaimsFor(t *plane.Token) jwt.MapClaims {
	return jwt.MapClaims{"jti": t.ID, "sub": "7", "typ": "api", "iat": t0.Unix(), "scope": "backends:read"}
}

func wantUnauthorized(tb testing.TB, err error, msg string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("err = nil, want %s error %q", plane.EUNAUTHORIZED, msg)
	}
	if code := plane.ErrorCodeOf(err); code != plane.EUNAUTHORIZED {
		tb.Fatalf("code = %q (%v), want %q", code, err, plane.EUNAUTHORIZED)
	}
	if got := plane.ErrorMessageOf(err); got != msg {
		tb.Fatalf("message = %q, want %q", got, msg)
	}
}

func TestAuthenticateValid(t *testing.T) {
	f := newFixture(t)
	rec, signed := f.mustToken(t, nil)

	got, err := f.auth.Authenticate(context.Background(), signed)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != rec.ID || got.ProjectID != 7 || !got.HasScope(plane.ScopeBackendsWrite) || got.HasScope(plane.ScopeImagesWrite) {
		t.Fatalf("got %+v, want the record %+v", got, rec)
	}
	if got.LastUsedAt == nil || !got.LastUsedAt.Equal(t0) {
		t.Fatalf("LastUsedAt = %v, want %v", got.LastUsedAt, t0)
	}

	t.Run("bearer prefix", func(t *testing.T) {
		if _, err := f.auth.Authenticate(context.Background(), "Bearer "+signed); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAuthenticateTouchesAtMostOncePerMinute(t *testing.T) {
	f := newFixture(t)
	_, signed := f.mustToken(t, nil)
	ctx := context.Background()

	for i := range 5 {
		f.now = t0.Add(time.Duration(i) * 10 * time.Second)
		if _, err := f.auth.Authenticate(ctx, signed); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.tokens.touchCount(); n != 1 {
		t.Fatalf("%d touches within 40s, want 1", n)
	}
	f.now = t0.Add(auth.TouchInterval)
	if _, err := f.auth.Authenticate(ctx, signed); err != nil {
		t.Fatal(err)
	}
	if n := f.tokens.touchCount(); n != 2 {
		t.Fatalf("%d touches after a minute, want 2", n)
	}

	// A fresh authenticator (a restart, another controller) trusts the
	// record's recent LastUsedAt instead of writing again.
	other := &auth.Authenticator{Key: f.auth.Key, Tokens: f.tokens, Now: func() time.Time { return f.now.Add(time.Second) }}
	if _, err := other.Authenticate(ctx, signed); err != nil {
		t.Fatal(err)
	}
	if n := f.tokens.touchCount(); n != 2 {
		t.Fatalf("%d touches after a restart, want 2", n)
	}
}

func TestAuthenticateConcurrent(t *testing.T) {
	f := newFixture(t)
	_, signed := f.mustToken(t, nil)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := f.auth.Authenticate(context.Background(), signed); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := f.tokens.touchCount(); n != 1 {
		t.Fatalf("%d touches, want 1", n)
	}
}

func TestAuthenticateRejects(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	rec, signed := f.mustToken(t, nil)
	exp := t0.Add(time.Hour)
	_, expiring := f.mustToken(t, func(t *plane.Token) { t.ExpiresAt = &exp })
	revoked, revokedSigned := f.mustToken(t, nil)
	f.tokens.edit(revoked.ID, func(t *plane.Token) { at := t0; t.RevokedAt = &at })
	recExpired, recExpiredSigned := f.mustToken(t, nil) // the JWT has no exp; the record does
	f.tokens.edit(recExpired.ID, func(t *plane.Token) { at := t0.Add(-time.Second); t.ExpiresAt = &at })
	moved, movedSigned := f.mustToken(t, nil)
	f.tokens.edit(moved.ID, func(t *plane.Token) { t.ProjectID = 8 })
	ghost := &plane.Token{ID: auth.NewTokenID(), ProjectID: 7, CreatedAt: t0}
	ghostSigned, err := f.issuer.IssueAPIToken(ghost) // never stored
	if err != nil {
		t.Fatal(err)
	}

	noneClaims := apiClaimsFor(rec)
	none := signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, noneClaims)
	pub := f.key.Public().(ed25519.PublicKey)
	hsWithPublicKey := signWith(t, jwt.SigningMethodHS256, []byte(pub), apiClaimsFor(rec))
	hsWithSecret := signWith(t, jwt.SigningMethodHS256, []byte("secret"), apiClaimsFor(rec))
	wrongKey := signWith(t, jwt.SigningMethodEdDSA, otherKey, apiClaimsFor(rec))
	connectClaims := apiClaimsFor(rec)
	connectClaims["typ"] = "connect"
	connectType := signWith(t, jwt.SigningMethodEdDSA, f.key, connectClaims)
	noType := apiClaimsFor(rec)
	delete(noType, "typ")
	noTypeSigned := signWith(t, jwt.SigningMethodEdDSA, f.key, noType)
	subClaims := apiClaimsFor(rec)
	subClaims["sub"] = "8"
	wrongSub := signWith(t, jwt.SigningMethodEdDSA, f.key, subClaims)
	badSubClaims := apiClaimsFor(rec)
	badSubClaims["sub"] = "seven"
	badSub := signWith(t, jwt.SigningMethodEdDSA, f.key, badSubClaims)
	noJTIClaims := apiClaimsFor(rec)
	delete(noJTIClaims, "jti")
	noJTI := signWith(t, jwt.SigningMethodEdDSA, f.key, noJTIClaims)
	parts := strings.Split(signed, ".")
	tampered := parts[0] + "." + parts[1] + "x." + parts[2]

	tests := []struct {
		name   string
		bearer string
		after  time.Duration // clock moves this far past t0
		msg    string
	}{
		{"empty", "", 0, "missing API token"},
		{"blank", "   ", 0, "missing API token"},
		{"bearer only", "Bearer ", 0, "missing API token"},
		{"garbage", "not-a-token", 0, "invalid token"},
		{"two parts", "a.b", 0, "invalid token"},
		{"empty parts", "..", 0, "invalid token"},
		{"bad base64", "!!!.@@@.###", 0, "invalid token"},
		{"huge", strings.Repeat("a", 1<<20), 0, "invalid token"},
		{"tampered payload", tampered, 0, "invalid token"},
		{"truncated signature", signed[:len(signed)-4], 0, "invalid token"},
		{"alg none", none, 0, "invalid token"},
		{"HS256 keyed with the public key", hsWithPublicKey, 0, "invalid token"},
		{"HS256 keyed with a secret", hsWithSecret, 0, "invalid token"},
		{"wrong signing key", wrongKey, 0, "invalid token"},
		{"other token type", connectType, 0, "invalid token"},
		{"no token type", noTypeSigned, 0, "invalid token"},
		{"project mismatch in claims", wrongSub, 0, "invalid token"},
		{"project mismatch in record", movedSigned, 0, "invalid token"},
		{"non-numeric subject", badSub, 0, "invalid token"},
		{"no jti", noJTI, 0, "invalid token"},
		{"unknown token", ghostSigned, 0, "invalid token"},
		{"revoked", revokedSigned, 0, "token has been revoked"},
		{"expired per record", recExpiredSigned, 0, "token has expired"},
		{"expired per JWT", expiring, 2 * time.Hour, "token has expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.now = t0.Add(tt.after)
			got, err := f.auth.Authenticate(ctx, tt.bearer)
			if got != nil {
				t.Errorf("got token %+v, want nil", got)
			}
			wantUnauthorized(t, err, tt.msg)
		})
	}

	// Sanity: the valid ones pass when nothing is wrong.
	f.now = t0
	for _, s := range []string{signed, expiring} {
		if _, err := f.auth.Authenticate(ctx, s); err != nil {
			t.Fatalf("valid token rejected: %v", err)
		}
	}
}

func TestAuthenticateStoreFailureIsInternal(t *testing.T) {
	f := newFixture(t)
	_, signed := f.mustToken(t, nil)
	f.tokens.findErr = errors.New("disk I/O error at /var/lib/plane/plane.db")
	_, err := f.auth.Authenticate(context.Background(), signed)
	if code := plane.ErrorCodeOf(err); code != plane.EINTERNAL {
		t.Fatalf("code = %q (%v), want internal", code, err)
	}
	if msg := plane.ErrorMessageOf(err); strings.Contains(msg, "/var/lib") {
		t.Fatalf("message %q leaks internals", msg)
	}
}

func TestAuthenticateWithoutKey(t *testing.T) {
	f := newFixture(t)
	_, signed := f.mustToken(t, nil)
	a := &auth.Authenticator{Tokens: f.tokens}
	if _, err := a.Authenticate(context.Background(), signed); plane.ErrorCodeOf(err) != plane.EINTERNAL {
		t.Fatalf("err = %v, want an internal error", err)
	}
}

func TestIssueAPITokenClaims(t *testing.T) {
	f := newFixture(t)
	exp := t0.Add(24 * time.Hour)
	rec, signed := f.mustToken(t, func(t *plane.Token) { t.ExpiresAt = &exp })

	claims := jwt.MapClaims{}
	_, _, err := jwt.NewParser().ParseUnverified(signed, claims)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"jti":   rec.ID,
		"sub":   "7",
		"typ":   "api",
		"scope": "backends:read backends:write",
		"iat":   float64(t0.Unix()),
		"exp":   float64(exp.Unix()),
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %v (%T), want %v", k, claims[k], claims[k], v)
		}
	}
	tok, _, _ := jwt.NewParser().ParseUnverified(signed, jwt.MapClaims{})
	if alg := tok.Header["alg"]; alg != "EdDSA" {
		t.Errorf("alg = %v, want EdDSA", alg)
	}

	_, noExp := f.mustToken(t, nil)
	claims = jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(noExp, claims); err != nil {
		t.Fatal(err)
	}
	if _, ok := claims["exp"]; ok {
		t.Errorf("token without expiry carries exp %v", claims["exp"])
	}
}

func TestIssueAPITokenRejectsBadInput(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	good := plane.Token{ID: "tok_x", ProjectID: 1, CreatedAt: t0}
	tests := []struct {
		name string
		key  ed25519.PrivateKey
		edit func(*plane.Token)
	}{
		{"no key", nil, nil},
		{"short key", key[:10], nil},
		{"no id", key, func(t *plane.Token) { t.ID = "" }},
		{"long id", key, func(t *plane.Token) { t.ID = strings.Repeat("x", 65) }},
		{"no project", key, func(t *plane.Token) { t.ProjectID = 0 }},
		{"no creation time", key, func(t *plane.Token) { t.CreatedAt = time.Time{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := good
			if tt.edit != nil {
				tt.edit(&tok)
			}
			if s, err := (&auth.Issuer{Key: tt.key}).IssueAPIToken(&tok); err == nil {
				t.Fatalf("issued %q, want an error", s)
			}
		})
	}
}

func TestNewTokenID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := auth.NewTokenID()
		if len(id) != len("tok_")+20 || !strings.HasPrefix(id, "tok_") {
			t.Fatalf("id %q has the wrong shape", id)
		}
		for _, c := range id[4:] {
			if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
				t.Fatalf("id %q holds %q", id, c)
			}
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

func FuzzAuthenticate(f *testing.F) {
	fx := newFixture(f)
	_, signed := fx.mustToken(f, nil)
	parts := strings.Split(signed, ".")
	for _, s := range []string{
		"", "Bearer ", signed, "Bearer " + signed, "a.b.c", "..", "...",
		parts[0] + ".." + parts[2],
		parts[0] + "." + parts[1] + ".",
		"eyJhbGciOiJub25lIn0.eyJ0eXAiOiJhcGkifQ.",
		"eyJhbGciOiJFZERTQSJ9.bnVsbA.AAAA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, bearer string) {
		tok, err := fx.auth.Authenticate(context.Background(), bearer)
		if err == nil {
			if tok == nil || tok.ProjectID != 7 {
				t.Fatalf("accepted %q as %+v", bearer, tok)
			}
			return
		}
		if code := plane.ErrorCodeOf(err); code != plane.EUNAUTHORIZED {
			t.Fatalf("Authenticate(%q): code %q (%v), want unauthorized", bearer, code, err)
		}
	})
}

// A rotation of the signing key: tokens signed by a key the authenticator
// accepts still work; once it no longer accepts the old key, they fail.
func TestAuthenticateRotation(t *testing.T) {
	f := newFixture(t)
	_, old := f.mustToken(t, nil) // signed by the key before the rotation
	_, next, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	oldPub := f.auth.Key
	f.issuer = &auth.Issuer{Key: next}
	_, fresh := f.mustToken(t, nil)

	f.auth.Key, f.auth.Accept = next.Public().(ed25519.PublicKey), []ed25519.PublicKey{oldPub}
	for name, tok := range map[string]string{"old": old, "new": fresh} {
		if _, err := f.auth.Authenticate(context.Background(), tok); err != nil {
			t.Errorf("%s token while the old key is accepted: %v", name, err)
		}
	}
	f.auth.Accept = nil
	if _, err := f.auth.Authenticate(context.Background(), old); plane.ErrorCodeOf(err) != plane.EUNAUTHORIZED {
		t.Errorf("old token once the old key is dropped: %v, want unauthorized", err)
	}
	if _, err := f.auth.Authenticate(context.Background(), fresh); err != nil {
		t.Errorf("new token: %v", err)
	}
}

// LoadPublicKey reads the public half of a signing key, or a public key
// file; LoadKey and CreateKey are the files --signing-key names.
func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "next.key")
	key, err := auth.CreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.CreateKey(path); err == nil {
		t.Error("CreateKey replaced an existing key")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	loaded, err := auth.LoadKey(path)
	if err != nil || !loaded.Equal(key) {
		t.Fatalf("LoadKey: %v", err)
	}
	pub := key.Public().(ed25519.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pubPath := filepath.Join(dir, "next.pub")
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, pubPath} {
		if got, err := auth.LoadPublicKey(p); err != nil || !got.Equal(pub) {
			t.Errorf("LoadPublicKey(%s) = %x, %v; want %x", filepath.Base(p), got, err, pub)
		}
	}
	if _, err := auth.LoadKey(filepath.Join(dir, "missing.key")); err == nil || !strings.Contains(err.Error(), "plane admin key create") {
		t.Errorf("LoadKey of a missing file: %v", err)
	}
	if _, err := auth.LoadPublicKey(filepath.Join(dir, "missing.key")); err == nil {
		t.Error("LoadPublicKey of a missing file succeeded")
	}
	if id := auth.KeyID(pub); len(id) != 12 {
		t.Errorf("KeyID = %q", id)
	}
}
