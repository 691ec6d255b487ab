package auth_test

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"plane"
	"plane/auth"
)

// fastBcrypt lowers the hashing cost for the rest of the test.
func fastBcrypt(tb testing.TB) {
	tb.Helper()
	old := auth.BcryptCost
	auth.BcryptCost = bcrypt.MinCost
	tb.Cleanup(func() { auth.BcryptCost = old })
}

func mustHash(tb testing.TB, pw string) string {
	tb.Helper()
	h, err := auth.HashPassword(pw)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func TestHashPassword(t *testing.T) {
	fastBcrypt(t)
	h := mustHash(t, "correct horse")
	if cost, err := bcrypt.Cost([]byte(h)); err != nil || cost != bcrypt.MinCost {
		t.Fatalf("cost = %d, %v; want %d (BcryptCost)", cost, err, bcrypt.MinCost)
	}
	if strings.Contains(h, "correct horse") {
		t.Fatalf("hash %q contains the password", h)
	}
	if h2 := mustHash(t, "correct horse"); h2 == h {
		t.Fatal("two hashes of one password are equal: no salt")
	}

	long := strings.Repeat("x", plane.MaxPasswordLength+1)
	if _, err := auth.HashPassword(long); plane.ErrorCodeOf(err) != plane.EINVALID {
		t.Fatalf("HashPassword(73 bytes) err = %v, want an invalid-field error", err)
	}
}

func TestCheckPassword(t *testing.T) {
	fastBcrypt(t)
	h := mustHash(t, "correct horse")
	max := strings.Repeat("x", plane.MaxPasswordLength)
	hMax := mustHash(t, max)

	tests := []struct {
		name string
		hash string
		pw   string
		want bool
	}{
		{"right password", h, "correct horse", true},
		{"wrong password", h, "correct horsE", false},
		{"prefix", h, "correct", false},
		{"empty password", h, "", false},
		{"longest password", hMax, max, true},
		{"past bcrypt's 72 bytes", hMax, max + "y", false},
		{"no user", "", "correct horse", false},
		{"no user, empty password", "", "", false},
		{"malformed hash", "not-a-hash", "correct horse", false},
		{"password as hash", "correct horse", "correct horse", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := auth.CheckPassword(tt.hash, tt.pw); got != tt.want {
				t.Fatalf("CheckPassword = %v, want %v", got, tt.want)
			}
		})
	}
}
