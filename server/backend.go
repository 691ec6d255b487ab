package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"plane"
	"plane/api"
)

// BackendResponse is the API's view of b; spawned says whether a spawn
// started it.
func (s *Server) BackendResponse(b *plane.Backend, spawned bool) api.Backend {
	hist := b.StatusHistory
	if hist == nil {
		hist = []plane.StatusChange{}
	}
	out := api.Backend{
		ID: b.ID, Key: b.Key, Image: b.Image, Status: b.Status, Spawned: spawned,
		URL: s.core.BackendURL(b.ID), Drone: b.DroneID, User: b.User, StatusHistory: hist,
		TerminationReason: b.TerminationReason, ExitCode: b.ExitCode, Error: b.Error,
		Limits: b.Limits, Suspended: b.Suspended(), SuspendedAt: b.SuspendedAt, ResumedAt: b.ResumedAt, CreatedAt: b.CreatedAt,
		KeepAliveUntil: b.KeepAliveUntil, KeepAliveBy: b.KeepAliveBy,
	}
	if b.Status.Live() {
		out.DroneUnreachable = s.core.DroneUnreachable(context.Background(), b.DroneID)
	}
	if out.Suspended && b.SuspendSeconds > 0 {
		// Suspended, it stops once suspended that long unless resumed.
		d := b.SuspendedAt.Add(time.Duration(b.SuspendSeconds) * time.Second)
		out.IdleDeadline = &d
	}
	if st, ok := s.core.Stats(b.ID); ok && b.Status.Live() {
		out.Connections, out.CPUPercent, out.MemoryBytes = st.Connections, st.CPUPercent, st.MemoryBytes
		if !st.LastActivity.IsZero() {
			last := st.LastActivity
			out.LastActivity = &last
			// Awake and idle, it stops (or, with suspend_seconds, is
			// suspended) when idle that long.
			if st.Connections == 0 && b.MaxIdleSeconds > 0 && !out.Suspended {
				// A keep-alive starts the idle clock at its end.
				if k := b.KeepAliveUntil; k != nil && k.After(last) {
					last = *k
				}
				d := last.Add(time.Duration(b.MaxIdleSeconds) * time.Second)
				out.IdleDeadline = &d
			}
		}
		out.UpBecause = upBecause(b, st, out.IdleDeadline, time.Now())
	} else if b.Status == plane.StatusReady {
		out.UpBecause = upBecause(b, plane.BackendStats{}, out.IdleDeadline, time.Now())
	}
	return out
}

// upBecause says why a ready backend is still up at now: its users, a
// keep-alive, or how long it has before its idle stop; "" for a backend
// that is not ready.
func upBecause(b *plane.Backend, st plane.BackendStats, idleDeadline *time.Time, now time.Time) string {
	if b.Status != plane.StatusReady {
		return ""
	}
	plural := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.Itoa(n) + " " + many
	}
	switch {
	case len(st.Users) > 0:
		return plural(len(st.Users), "user connected", "users connected")
	case st.Connections > 0:
		return plural(st.Connections, "connection open", "connections open")
	case b.KeepAliveUntil != nil && b.KeepAliveUntil.After(now):
		by := b.KeepAliveBy
		if by == "" {
			by = "a keep-alive"
		}
		return "kept alive by " + by + " until " + b.KeepAliveUntil.UTC().Format("15:04:05Z")
	case b.Suspended() && idleDeadline != nil:
		return "suspended, stops in " + plural(max(0, int(idleDeadline.Sub(now).Seconds())), "s", "s") + " unless a request resumes it"
	case b.MaxIdleSeconds == 0:
		return "no idle limit"
	case idleDeadline != nil:
		return "idle, stops in " + plural(max(0, int(idleDeadline.Sub(now).Seconds())), "s", "s")
	}
	return "idle, stops after " + plural(b.MaxIdleSeconds, "s", "s") + " without a connection"
}

// handleDisconnect closes a user's connections to a backend (everyone's
// when the body names no user) and refuses their older connect tokens.
func (s *Server) handleDisconnect(c echo.Context) error {
	b, err := s.findBackend(c)
	if err != nil {
		return err
	}
	var body struct {
		User *string `json:"user"`
	}
	if err := decodeOptionalBody(c, &body); err != nil {
		return err
	}
	user, all := "", body.User == nil
	if !all {
		user = *body.User
	}
	if err := s.core.Disconnect(c.Request().Context(), actorOf(c), b, user, all); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// handleKeepAlive holds off a backend's idle stop for the body's seconds.
func (s *Server) handleKeepAlive(c echo.Context) error {
	b, err := s.findBackend(c)
	if err != nil {
		return err
	}
	var body struct {
		Seconds *int `json:"seconds"`
	}
	if err := plane.DecodeJSON(c.Request().Body, 4096, &body); err != nil {
		return err
	}
	if body.Seconds == nil {
		return plane.FieldErrorf("seconds", "is required")
	}
	kept, err := s.core.KeepAlive(c.Request().Context(), actorOf(c), b, *body.Seconds)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.BackendResponse(kept, false))
}

// decodeOptionalBody decodes a JSON body into v, or leaves v as it is when
// the request has none.
func decodeOptionalBody(c echo.Context, v any) error {
	raw, err := io.ReadAll(io.LimitReader(c.Request().Body, 4097))
	if err != nil {
		return plane.Errorf(plane.EINVALID, "reading request body: %v", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	return plane.DecodeJSON(bytes.NewReader(raw), 4096, v)
}

// findBackend loads a backend of the token's project; another project's
// backend is not found, not forbidden, so that IDs leak nothing.
func (s *Server) findBackend(c echo.Context) (*plane.Backend, error) {
	id := c.Param("id")
	if err := plane.ValidateBackendID(id); err != nil {
		return nil, plane.Errorf(plane.ENOTFOUND, "backend %q not found", id)
	}
	b, err := s.Backends.FindBackendByID(c.Request().Context(), id)
	if err != nil {
		return nil, err
	}
	if b.ProjectID != token(c).ProjectID {
		return nil, plane.Errorf(plane.ENOTFOUND, "backend %q not found", id)
	}
	return b, nil
}

func (s *Server) handleSpawn(c echo.Context) error {
	ctx := c.Request().Context()
	req, err := plane.DecodeSpawnRequest(c.Request().Body)
	if err != nil {
		return err
	}
	spawn := s.core.Spawn
	if req.Wait {
		spawn = s.core.SpawnAndWait
	}
	sp, err := spawn(ctx, actorOf(c), token(c).ProjectID, req)
	if err != nil {
		return err
	}
	b, spawned, public := sp.Backend, sp.New, sp.Public
	status := http.StatusOK
	if spawned {
		status = http.StatusCreated
	}
	out := s.BackendResponse(b, spawned)
	if spawned {
		warm := sp.Warm
		out.Warm, out.ColdReason = &warm, sp.ColdReason
	}
	// A backend found by its key may predate a change of its image's
	// public flag, so it always gets a token: one is harmless where none
	// is needed, a missing one locks the user out.
	if !(spawned && public) && b.Status.Live() {
		if conn, err := s.core.Connect(b, req.User); err == nil {
			out.URL = conn.URL
		}
	}
	return c.JSON(status, out)
}

func (s *Server) handleListBackends(c echo.Context) error {
	pid := token(c).ProjectID
	f := plane.BackendFilter{ProjectID: &pid, Limit: 100}
	switch st := c.QueryParam("status"); st {
	case "", "live":
		live := true
		f.Live = &live
	case "terminated":
		live := false
		f.Live = &live
	case "all":
	default:
		return plane.FieldErrorf("status", "must be live, terminated or all (got %q)", st)
	}
	if c.QueryParams().Has("key") {
		key := c.QueryParam("key")
		f.Key = &key
	}
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return plane.FieldErrorf("limit", "must be a number from 1 to 1000 (got %q)", l)
		}
		f.Limit = n
	}
	bs, err := s.Backends.FindBackends(c.Request().Context(), f)
	if err != nil {
		return err
	}
	out := api.Backends{Backends: make([]api.Backend, 0, len(bs))}
	for _, b := range bs {
		out.Backends = append(out.Backends, s.BackendResponse(b, false))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) handleGetBackend(c echo.Context) error {
	b, err := s.findBackend(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.BackendResponse(b, false))
}

func (s *Server) handleTerminate(c echo.Context) error {
	b, err := s.findBackend(c)
	if err != nil {
		return err
	}
	var body api.TerminateRequest // the body is optional: none means soft
	if err := decodeOptionalBody(c, &body); err != nil {
		return err
	}
	if err := s.core.Terminate(c.Request().Context(), actorOf(c), b, body.Hard); err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, s.BackendResponse(b, false))
}

// handleBackendEvents streams the backend's status changes and its users'
// joins and leaves as Server-Sent Events (streamBackendEvents, sse.go).
func (s *Server) handleBackendEvents(c echo.Context) error {
	b, err := s.findBackend(c)
	if err != nil {
		return err
	}
	return s.streamBackendEvents(c, b)
}

type statusEvent struct {
	ID                string                  `json:"id"`
	Status            plane.BackendStatus     `json:"status"`
	Time              time.Time               `json:"time"`
	TerminationReason plane.TerminationReason `json:"termination_reason,omitempty"`
	ExitCode          *int                    `json:"exit_code,omitempty"`
	Error             string                  `json:"error,omitempty"`
}

// handleBackendLogs streams the backend's log lines as JSON lines. With
// follow=true it keeps streaming until the backend has terminated and its
// last lines are out.
func (s *Server) handleBackendLogs(c echo.Context) error {
	b, err := s.findBackend(c)
	if err != nil {
		return err
	}
	follow := false
	if v := c.QueryParam("follow"); v != "" {
		if follow, err = strconv.ParseBool(v); err != nil {
			return plane.FieldErrorf("follow", "must be true or false (got %q)", v)
		}
	}
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	if follow {
		ch, unsub := s.Bus.Subscribe(b.ID)
		defer unsub()
		if cur, err := s.Backends.FindBackendByID(ctx, b.ID); err == nil && !cur.Status.Live() {
			follow = false
		} else {
			go func() {
				for e := range ch {
					if !e.Backend.Status.Live() {
						// Give the drone a moment to forward its last lines.
						time.AfterFunc(logsTail, cancel)
						return
					}
				}
			}()
		}
	}
	w := startStream(c, "application/x-ndjson")
	enc := json.NewEncoder(w)
	err = s.core.Logs(ctx, b.ID, follow, func(l plane.LogLine) error {
		if err := enc.Encode(l); err != nil {
			return err
		}
		w.Flush()
		return nil
	})
	if err != nil && ctx.Err() == nil {
		s.Logger.Warn("stream logs", "backend", b.ID, "err", err)
	}
	return nil
}

// logsTail is how long a followed log stream stays open after its backend
// terminated.
const logsTail = 2 * time.Second
