package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"plane"
)

// TokenTypeAPI is the `typ` claim of API tokens. Other kinds of tokens signed
// with the same key (connect tokens) carry another type, so that one kind is
// never accepted where the other is expected.
const TokenTypeAPI = "api"

// TokenIDPrefix starts every token ID, which makes IDs recognisable in logs.
const TokenIDPrefix = "tok_"

// tokenIDChars is the number of random base32 characters after the prefix (100 bits).
const tokenIDChars = 20

// maxTokenIDLen bounds the token IDs accepted from a JWT before any store lookup.
const maxTokenIDLen = 64

var tokenIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTokenID returns a random, URL-safe token ID: "tok_" and 20 lowercase
// base32 characters.
func NewTokenID() string {
	b := make([]byte, (tokenIDChars*5+7)/8)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	return TokenIDPrefix + strings.ToLower(tokenIDEncoding.EncodeToString(b))[:tokenIDChars]
}

// apiClaims are the claims of an API token. The record in the store stays the
// authority on scopes, expiry and revocation; the claims let a reader of the
// token see what it is for.
type apiClaims struct {
	Type  string `json:"typ"`
	Scope string `json:"scope,omitempty"`
	jwt.RegisteredClaims
}

// Issuer signs API tokens.
type Issuer struct {
	Key ed25519.PrivateKey
}

// IssueAPIToken returns the signed token for the record t, which must carry
// its ID, project and creation time. The result is shown to the user once and
// never stored.
func (i *Issuer) IssueAPIToken(t *plane.Token) (string, error) {
	if len(i.Key) != ed25519.PrivateKeySize {
		return "", errors.New("issue token: no valid signing key")
	}
	if t.ID == "" || len(t.ID) > maxTokenIDLen {
		return "", fmt.Errorf("issue token: invalid token id %q", t.ID)
	}
	if t.ProjectID <= 0 {
		return "", fmt.Errorf("issue token: invalid project id %d", t.ProjectID)
	}
	if t.CreatedAt.IsZero() {
		return "", errors.New("issue token: creation time is required")
	}
	scopes := make([]string, len(t.Scopes))
	for n, s := range t.Scopes {
		scopes[n] = string(s)
	}
	claims := apiClaims{
		Type:  TokenTypeAPI,
		Scope: strings.Join(scopes, " "),
		RegisteredClaims: jwt.RegisteredClaims{
			ID:       t.ID,
			Subject:  strconv.FormatInt(t.ProjectID, 10),
			IssuedAt: jwt.NewNumericDate(t.CreatedAt),
		},
	}
	if t.ExpiresAt != nil {
		claims.ExpiresAt = jwt.NewNumericDate(*t.ExpiresAt)
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(i.Key)
	if err != nil {
		return "", fmt.Errorf("issue token: sign: %w", err)
	}
	return signed, nil
}
