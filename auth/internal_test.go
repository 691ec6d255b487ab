package auth

import (
	"errors"
	"strconv"
	"testing"
	"time"

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

func TestLimiterMemoryIsBounded(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	t.Run("failures per key", func(t *testing.T) {
		l := NewLimiter(3, time.Minute)
		for i := range 100 {
			l.Fail("k", t0.Add(time.Duration(i)*time.Millisecond))
		}
		if n := len(l.fails["k"]); n != 3 {
			t.Fatalf("%d failure times kept, want 3", n)
		}
	})

	t.Run("expired keys are swept", func(t *testing.T) {
		l := NewLimiter(3, time.Minute)
		for i := range 1000 {
			l.Fail(strconv.Itoa(i), t0)
		}
		l.Allow("other", t0.Add(time.Minute))
		if n := len(l.fails); n != 0 {
			t.Fatalf("%d keys left a window later, want 0", n)
		}
	})

	t.Run("a full table evicts the stalest key", func(t *testing.T) {
		l := NewLimiter(3, time.Minute)
		l.maxKeys = 3
		for i, k := range []string{"a", "b", "c", "d"} {
			l.Fail(k, t0.Add(time.Duration(i)*time.Second))
		}
		if _, ok := l.fails["a"]; ok || len(l.fails) != 3 {
			t.Fatalf("keys %v, want b, c, d", l.fails)
		}
		// Expired keys go first, before any live one is evicted.
		l.Fail("e", t0.Add(time.Minute+time.Second+time.Millisecond))
		if _, ok := l.fails["c"]; !ok || len(l.fails) != 3 {
			t.Fatalf("keys %v, want c, d, e", l.fails)
		}
	})
}
