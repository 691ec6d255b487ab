package auth

import (
	"errors"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// The dummy compare costs what a real one does only if the dummy hash is a
// well-formed hash at the production cost.
func TestDummyHash(t *testing.T) {
	if cost, err := bcrypt.Cost([]byte(dummyHash)); err != nil || cost != bcrypt.DefaultCost {
		t.Fatalf("dummy hash cost = %d, %v; want %d", cost, err, bcrypt.DefaultCost)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(dummyHash), []byte("guess")); !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		t.Fatalf("compare with the dummy hash: %v, want a mismatch", err)
	}
}
