package controller

import (
	"net/url"
	"time"

	"plane"
)

// ConnectTokenParam is the query parameter in which browsers present a
// connect token to the drone proxy (DESIGN §4, "Connecting").
const ConnectTokenParam = "plane_token"

// Connection is a way into a backend: its URL with a connect token, and
// when the token stops working.
type Connection struct {
	URL       string
	Token     string
	ExpiresAt time.Time
}

// Connect signs a connect token that lets user reach the live backend b,
// and returns its URL. Without a signing key (ConnectKey) it is
// unavailable; a terminated backend is a conflict.
func (c *Core) Connect(b *plane.Backend, user string) (Connection, error) {
	if !b.Status.Live() {
		return Connection{}, plane.Errorf(plane.ECONFLICT, "backend %s is terminated (%s): spawn a new one to connect", b.ID, b.TerminationReason)
	}
	if c.ConnectKey == nil {
		return Connection{}, plane.Errorf(plane.EUNAVAILABLE, "this controller has no connect-token key")
	}
	// Tokens carry whole seconds; say exactly when this one stops working.
	expires := time.Unix(time.Now().Add(c.connectTokenTTL()).Unix(), 0).UTC()
	tok := plane.SignConnectToken(c.ConnectKey, plane.ConnectToken{BackendID: b.ID, User: user, ExpiresAt: expires})
	return Connection{URL: c.connectURL(b.ID, tok), Token: tok, ExpiresAt: expires}, nil
}

// BackendURL is where backend id is reached, without a token.
func (c *Core) BackendURL(id string) string {
	if c.URLPattern == nil {
		return ""
	}
	return c.URLPattern(id)
}

// connectURL is the backend's URL with tok in its query.
func (c *Core) connectURL(id, tok string) string {
	base := c.BackendURL(id)
	u, err := url.Parse(base)
	if err != nil {
		return base + "?" + ConnectTokenParam + "=" + url.QueryEscape(tok)
	}
	q := u.Query()
	q.Set(ConnectTokenParam, tok)
	u.RawQuery = q.Encode()
	return u.String()
}

func (c *Core) connectTokenTTL() time.Duration {
	if c.ConnectTokenTTL <= 0 {
		return plane.DefaultConnectTokenTTL
	}
	return c.ConnectTokenTTL
}
