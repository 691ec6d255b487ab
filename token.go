package plane

import (
	"context"
	"slices"
	"time"
)

// Scope is a permission carried by an API token.
type Scope string

const (
	ScopeBackendsRead  Scope = "backends:read"
	ScopeBackendsWrite Scope = "backends:write"
	ScopeImagesRead    Scope = "images:read"
	ScopeImagesWrite   Scope = "images:write"
	// ScopeAdmin reaches the whole instance (drones), not only the token's
	// project: only the controller's machine makes such tokens (plane admin
	// token create --scopes admin), never the dashboard.
	ScopeAdmin Scope = "admin"
)

// AllScopes is what a token gets unless told otherwise, and what a project's
// member may tick in the dashboard.
var AllScopes = []Scope{ScopeBackendsRead, ScopeBackendsWrite, ScopeImagesRead, ScopeImagesWrite}

// AdminScopes are the scopes of the instance's operators, left out of
// AllScopes.
var AdminScopes = []Scope{ScopeAdmin}

// TokenLifetimeDays are the lifetimes a new token may have, in days,
// besides none (a token that does not expire).
var TokenLifetimeDays = []int{1, 7, 30, 90}

// Valid reports whether s is a known scope, of AllScopes or AdminScopes.
func (s Scope) Valid() bool {
	return slices.Contains(AllScopes, s) || slices.Contains(AdminScopes, s)
}

// Token is an API token's record; the signed token itself is shown once at
// creation and never stored.
type Token struct {
	ID         string     `json:"id"`
	ProjectID  int64      `json:"-"`
	Name       string     `json:"name"`
	Scopes     []Scope    `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

// HasScope reports whether t carries s.
func (t *Token) HasScope(s Scope) bool {
	for _, v := range t.Scopes {
		if v == s {
			return true
		}
	}
	return false
}

// Usable reports whether t may be used at now: neither revoked nor expired.
func (t *Token) Usable(now time.Time) bool {
	return t.RevokedAt == nil && (t.ExpiresAt == nil || now.Before(*t.ExpiresAt))
}

// TokenService stores API token records.
type TokenService interface {
	CreateToken(ctx context.Context, t *Token) error
	FindTokenByID(ctx context.Context, id string) (*Token, error)
	FindTokens(ctx context.Context, projectID int64) ([]*Token, error)
	RevokeToken(ctx context.Context, id string) error
	// TouchToken records a use of the token.
	TouchToken(ctx context.Context, id string, at time.Time) error
}
