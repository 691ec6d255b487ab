package server

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/api"
)

// connectTokenParam is the query parameter in which browsers present a
// connect token to the drone proxy (DESIGN §4, "Connecting").
const connectTokenParam = "plane_token"

// maxConnectBodyBytes bounds the connect body: a user name and some JSON.
const maxConnectBodyBytes = 4096

// connectToken signs a token that lets user reach backend id until the
// controller's TTL has passed. ok is false when the controller has no key.
func (s *Server) connectToken(id, user string) (tok string, expires time.Time, ok bool) {
	if s.ConnectKey == nil {
		return "", time.Time{}, false
	}
	// Tokens carry whole seconds; say exactly when this one stops working.
	expires = time.Unix(time.Now().Add(s.ConnectTokenTTL).Unix(), 0).UTC()
	tok = plane.SignConnectToken(s.ConnectKey, plane.ConnectToken{BackendID: id, User: user, ExpiresAt: expires})
	return tok, expires, true
}

// connectURL is the backend's URL with tok in its query.
func (s *Server) connectURL(id, tok string) string {
	base := s.BackendURL(id)
	u, err := url.Parse(base)
	if err != nil {
		return base + "?" + connectTokenParam + "=" + url.QueryEscape(tok)
	}
	q := u.Query()
	q.Set(connectTokenParam, tok)
	u.RawQuery = q.Encode()
	return u.String()
}

// handleConnect issues a fresh connect URL for a live backend:
// POST /api/v1/backends/{id}/connect.
func (s *Server) handleConnect(c echo.Context) error {
	b, err := s.findBackend(c)
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(io.LimitReader(c.Request().Body, maxConnectBodyBytes+1))
	if err != nil {
		return plane.Errorf(plane.EINVALID, "reading request body: %v", err)
	}
	var body api.ConnectRequest
	if len(bytes.TrimSpace(raw)) > 0 { // the body is optional
		if err := plane.DecodeJSON(bytes.NewReader(raw), maxConnectBodyBytes, &body); err != nil {
			return err
		}
	}
	user := b.User
	if body.User != nil {
		user = *body.User
		if err := validateUser(user); err != nil {
			return err
		}
	}
	if !b.Status.Live() {
		return plane.Errorf(plane.ECONFLICT, "backend %q is terminated (%s): spawn a new one to connect", b.ID, b.TerminationReason)
	}
	tok, expires, ok := s.connectToken(b.ID, user)
	if !ok {
		return plane.Errorf(plane.EUNAVAILABLE, "this controller has no connect-token key")
	}
	return c.JSON(http.StatusOK, api.Connect{URL: s.connectURL(b.ID, tok), Token: tok, ExpiresAt: expires})
}

// validateUser applies the rule of a spawn request's user, so that a
// connect token never names a user a spawn would refuse.
func validateUser(user string) error {
	req := plane.SpawnRequest{Image: "x", User: user}
	return req.Validate()
}
