package controller

import (
	"context"
	"slices"
	"strings"
	"time"

	"plane"
	"plane/auth"
)

// TokenInput is what the dashboard's form asks of a new API token.
type TokenInput struct {
	Name   string
	Scopes []string
	// LifetimeDays is one of plane.TokenLifetimeDays, or 0 for a token that
	// does not expire.
	LifetimeDays int
}

// NewToken is a token just created: its record, and the signed token that
// is shown this once and never stored.
type NewToken struct {
	Token  *plane.Token
	Signed string
}

// CreateToken makes an API token of a project. The controller's key signs
// it: the one key signs API tokens and connect tokens, and the
// Authenticator holds its public half.
func (c *Core) CreateToken(ctx context.Context, actor plane.Actor, projectID int64, in TokenInput) (NewToken, error) {
	acc, err := c.accounts()
	if err != nil {
		return NewToken{}, err
	}
	tok, err := newToken(projectID, in, time.Now())
	if err != nil {
		return NewToken{}, err
	}
	if c.ConnectKey == nil {
		return NewToken{}, plane.Errorf(plane.EUNAVAILABLE, "this controller has no key to sign API tokens with")
	}
	signed, err := (&auth.Issuer{Key: c.ConnectKey}).IssueAPIToken(tok)
	if err != nil {
		return NewToken{}, err
	}
	if err := acc.CreateToken(ctx, tok); err != nil {
		return NewToken{}, err
	}
	c.Record(ctx, actor, projectID, plane.ActionTokenCreate, tok.Name, tokenDetail(tok))
	return NewToken{Token: tok, Signed: signed}, nil
}

// newToken checks in and makes the token's record.
func newToken(projectID int64, in TokenInput, now time.Time) (*plane.Token, error) {
	tok := &plane.Token{ID: auth.NewTokenID(), ProjectID: projectID, Name: strings.TrimSpace(in.Name), CreatedAt: now.UTC()}
	switch {
	case tok.Name == "":
		return nil, plane.FieldErrorf("name", "give the token a name, such as the app that uses it")
	}
	if err := plane.ValidateName("name", tok.Name, maxName); err != nil {
		return nil, err
	}
	for _, v := range in.Scopes {
		sc := plane.Scope(v)
		if !sc.Valid() {
			return nil, plane.FieldErrorf("scopes", "unknown scope %q", v)
		}
		// An admin token reaches every project's drones: the operators make
		// them where they hold the controller's data, not a project member.
		if slices.Contains(plane.AdminScopes, sc) {
			return nil, plane.FieldErrorf("scopes", "scope %q is not for project tokens: make one on the controller's machine with plane admin token create --scopes %s", v, v)
		}
		tok.Scopes = append(tok.Scopes, sc)
	}
	if len(tok.Scopes) == 0 {
		return nil, plane.FieldErrorf("scopes", "tick at least one scope")
	}
	if in.LifetimeDays != 0 {
		if !slices.Contains(plane.TokenLifetimeDays, in.LifetimeDays) {
			return nil, plane.FieldErrorf("expires", "choose one of the offered lifetimes")
		}
		t := tok.CreatedAt.Add(time.Duration(in.LifetimeDays) * 24 * time.Hour)
		tok.ExpiresAt = &t
	}
	return tok, nil
}

// ScopeNames lists scopes the way the dashboard's form and the activity log
// show them: space-separated.
func ScopeNames(scopes []plane.Scope) string {
	names := make([]string, len(scopes))
	for i, sc := range scopes {
		names[i] = string(sc)
	}
	return strings.Join(names, " ")
}

// tokenDetail describes a new token for the activity log.
func tokenDetail(tok *plane.Token) string {
	d := ScopeNames(tok.Scopes)
	if tok.ExpiresAt != nil {
		d += ", expires " + tok.ExpiresAt.UTC().Format("2006-01-02 15:04:05")
	}
	return d
}

// RevokeToken revokes a project's token; another project's is not found.
func (c *Core) RevokeToken(ctx context.Context, actor plane.Actor, projectID int64, id string) (*plane.Token, error) {
	acc, err := c.accounts()
	if err != nil {
		return nil, err
	}
	tok, err := acc.FindTokenByID(ctx, id)
	if err == nil && tok.ProjectID != projectID {
		err = plane.Errorf(plane.ENOTFOUND, "token %q not found", id)
	}
	if err != nil {
		return nil, err
	}
	if err := acc.RevokeToken(ctx, tok.ID); err != nil {
		return nil, err
	}
	c.Record(ctx, actor, projectID, plane.ActionTokenRevoke, tok.Name, "")
	return tok, nil
}
