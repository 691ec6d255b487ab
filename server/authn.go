package server

import (
	"strings"

	"github.com/labstack/echo/v4"

	"plane"
)

const tokenKey = "plane.token"

// requireScope authenticates the request's bearer token and checks that it
// carries scope.
func (s *Server) requireScope(scope plane.Scope) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Request().Header.Get("Authorization")
			bearer, ok := strings.CutPrefix(h, "Bearer ")
			if !ok || strings.TrimSpace(bearer) == "" {
				return plane.Errorf(plane.EUNAUTHORIZED, "missing API token: send it as 'Authorization: Bearer <token>'")
			}
			tok, err := s.Auth.Authenticate(c.Request().Context(), strings.TrimSpace(bearer))
			if err != nil {
				return err
			}
			if !tok.HasScope(scope) {
				return plane.Errorf(plane.EFORBIDDEN, "token %q lacks the %s scope", tok.Name, scope)
			}
			c.Set(tokenKey, tok)
			return next(c)
		}
	}
}

// token returns the authenticated token of the request.
func token(c echo.Context) *plane.Token {
	t, _ := c.Get(tokenKey).(*plane.Token)
	return t
}
