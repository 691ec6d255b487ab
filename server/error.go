package server

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/api"
)

// statusOf maps error codes to HTTP statuses: the one table of DESIGN §8.
var statusOf = map[plane.ErrorCode]int{
	plane.EINVALID:      http.StatusBadRequest,
	plane.EUNAUTHORIZED: http.StatusUnauthorized,
	plane.EFORBIDDEN:    http.StatusForbidden,
	plane.ENOTFOUND:     http.StatusNotFound,
	plane.ECONFLICT:     http.StatusConflict,
	plane.EUNAVAILABLE:  http.StatusServiceUnavailable,
	plane.EINTERNAL:     http.StatusInternalServerError,
}

// codeOf maps the statuses Echo itself produces (unknown route, wrong
// method) back to codes.
func codeOf(status int) plane.ErrorCode {
	for code, st := range statusOf {
		if st == status {
			return code
		}
	}
	if status == http.StatusMethodNotAllowed {
		return plane.ENOTFOUND
	}
	if status >= 500 {
		return plane.EINTERNAL
	}
	return plane.EINVALID
}

// handleError writes every error as {"error":{"code","message"}}; internal
// errors are logged here, once, and reach the client only as "internal error".
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var body api.ErrorResponse
	status := http.StatusInternalServerError
	var he *echo.HTTPError
	var pe *plane.Error
	switch {
	case errors.As(err, &pe):
		status = statusOf[pe.Code]
		body.Error = api.ErrorDetail{Code: pe.Code, Message: pe.Message, Field: pe.Field}
	case errors.As(err, &he):
		status = he.Code
		msg, _ := he.Message.(string)
		if msg == "" {
			msg = http.StatusText(status)
		}
		body.Error = api.ErrorDetail{Code: codeOf(status), Message: msg}
	default:
		body.Error = api.ErrorDetail{Code: plane.EINTERNAL, Message: "internal error"}
	}
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if body.Error.Code == plane.EINTERNAL {
		s.Logger.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	if wantsPage(c) {
		s.renderErrorPage(c, status, body.Error.Message)
		return
	}
	_ = c.JSON(status, body)
}
