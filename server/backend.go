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
				d := last.Add(time.Duration(b.MaxIdleSeconds) * time.Second)
				out.IdleDeadline = &d
			}
		}
	}
	return out
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
	var body api.TerminateRequest
	raw, err := io.ReadAll(io.LimitReader(c.Request().Body, 4097))
	if err != nil {
		return plane.Errorf(plane.EINVALID, "reading request body: %v", err)
	}
	if len(bytes.TrimSpace(raw)) > 0 { // the body is optional: none means soft
		if err := plane.DecodeJSON(bytes.NewReader(raw), 4096, &body); err != nil {
			return err
		}
	}
	if err := s.core.Terminate(c.Request().Context(), actorOf(c), b, body.Hard); err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, s.BackendResponse(b, false))
}

// handleBackendEvents streams the backend's status changes as Server-Sent
// Events: the history first (skipping what Last-Event-ID says the client
// has), then each change as it happens, until terminated.
func (s *Server) handleBackendEvents(c echo.Context) error {
	b, err := s.findBackend(c)
	if err != nil {
		return err
	}
	ch, cancel := s.Bus.Subscribe(b.ID)
	defer cancel()
	// Read again after subscribing, so no change falls between the two.
	if b, err = s.Backends.FindBackendByID(c.Request().Context(), b.ID); err != nil {
		return err
	}
	last := 0
	if v := c.Request().Header.Get("Last-Event-ID"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return plane.FieldErrorf("Last-Event-ID", "must be a status number (got %q)", v)
		}
		last = n
	}
	out := openSSE(c)

	send := func(b *plane.Backend) error {
		for _, h := range b.StatusHistory {
			rank := h.Status.Rank()
			if rank <= last {
				continue
			}
			ev := statusEvent{ID: b.ID, Status: h.Status, Time: h.Time}
			if h.Status == plane.StatusTerminated {
				ev.TerminationReason, ev.ExitCode, ev.Error = b.TerminationReason, b.ExitCode, b.Error
			}
			data, _ := json.Marshal(ev)
			if err := out.sendID(strconv.Itoa(rank), "status", string(data)); err != nil {
				return err
			}
			last = rank
		}
		return nil
	}
	if err := send(b); err != nil || b.Status == plane.StatusTerminated {
		return nil
	}
	out.follow(c.Request().Context(), ch, func(e plane.Event) (bool, error) {
		return e.Backend.Status == plane.StatusTerminated, send(e.Backend)
	})
	return nil
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
