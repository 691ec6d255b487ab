package server

import (
	"bytes"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/api"
)

// maxConnectBodyBytes bounds the connect body: a user name and some JSON.
const maxConnectBodyBytes = 4096

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
	conn, err := s.core.Connect(b, user)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, api.Connect{URL: conn.URL, Token: conn.Token, ExpiresAt: conn.ExpiresAt})
}

// validateUser applies the rule of a spawn request's user, so that a
// connect token never names a user a spawn would refuse.
func validateUser(user string) error {
	req := plane.SpawnRequest{Image: "x", User: user}
	return req.Validate()
}
