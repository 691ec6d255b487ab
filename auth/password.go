package auth

import (
	"fmt"

	"golang.org/x/crypto/bcrypt"

	"plane"
)

// BcryptCost is the work factor of new password hashes. A variable so that
// tests can lower it to bcrypt.MinCost; CheckPassword reads the cost from
// each hash, so raising it later keeps old hashes working.
var BcryptCost = bcrypt.DefaultCost

// dummyHash is a bcrypt hash (at bcrypt.DefaultCost) of a random password
// nobody knows. CheckPassword compares against it when there is no user, so
// that a login for an unknown email costs as long as one with a wrong
// password and the response time does not tell which addresses exist.
const dummyHash = "$2a$10$NbCKsjc5gPOIzyb2W1zA0uSA6xaAC9olmysSFhfboZhnUQhrCX47W"

// HashPassword returns the bcrypt hash of pw to store as
// plane.User.PasswordHash. It refuses passwords longer than bcrypt reads
// rather than silently ignoring their tail.
func HashPassword(pw string) (string, error) {
	if len(pw) > plane.MaxPasswordLength {
		return "", plane.FieldErrorf("password", "use at most %d bytes", plane.MaxPasswordLength)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), BcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether pw matches hash. Pass the empty hash when no
// user has the email given: it then spends the time of a real comparison and
// reports false.
func CheckPassword(hash, pw string) bool {
	if len(pw) > plane.MaxPasswordLength {
		// No stored hash can match (HashPassword refuses these), and
		// bcrypt would compare only the first 72 bytes.
		return false
	}
	if hash == "" {
		_ = bcrypt.CompareHashAndPassword([]byte(dummyHash), []byte(pw))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}
