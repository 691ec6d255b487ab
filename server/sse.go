package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"plane"
)

// sse is an open Server-Sent Events response. Every event of server/ is
// written by its sendID, so that no text from outside (a backend's log
// line, say) can start a field of its own.
type sse struct {
	mu sync.Mutex // a stream may be fed by several goroutines
	w  *echo.Response
}

func openSSE(c echo.Context) *sse { return &sse{w: startStream(c, "text/event-stream")} }

// startStream sends the head of a streamed answer: no caching, and no
// buffering in proxies that honour X-Accel-Buffering.
func startStream(c echo.Context, contentType string) *echo.Response {
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, contentType)
	w.Header().Set(echo.HeaderCacheControl, "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Flush()
	return w
}

// send writes one event without an id.
func (s *sse) send(event, data string) error { return s.sendID("", event, data) }

// sendID writes one event and flushes it.
func (s *sse) sendID(id, event, data string) error {
	ev, err := formatSSE(id, event, data)
	if err != nil {
		return err
	}
	return s.write(ev)
}

func (s *sse) keepAlive() error { return s.write(": keep-alive\n\n") }

func (s *sse) write(text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write([]byte(text)); err != nil {
		return err
	}
	s.w.Flush()
	return nil
}

// follow is the loop of every event stream: it hands each change on the
// bus to handle until the client leaves, the bus closes, or handle says
// the stream is over (done) or fails to send; a quiet stream gets a
// keep-alive comment every sseKeepAlive.
func (s *sse) follow(ctx context.Context, ch <-chan plane.Event, handle func(plane.Event) (done bool, err error)) {
	keepAlive := time.NewTicker(sseKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-ch:
			if !ok {
				return
			}
			if done, err := handle(e); done || err != nil {
				return
			}
		case <-keepAlive.C:
			if s.keepAlive() != nil {
				return
			}
		}
	}
}

// sseKeepAlive is how often an idle stream sends a comment, so proxies keep it.
const sseKeepAlive = 15 * time.Second

// formatSSE is one event in the SSE format. A line of that format ends at
// "\r\n", "\r" or "\n", so the data is cut at each of the three and every
// piece gets its own data: field (the client joins them with "\n"): a raw
// "\r" in the data ends a data line, never starts a field. The id and the
// event name are ours, never text from outside: a line break in them is a
// bug, refused.
func formatSSE(id, event, data string) (string, error) {
	if strings.ContainsAny(id, "\r\n\x00") || strings.ContainsAny(event, "\r\n") {
		return "", fmt.Errorf("sse: line break in id %q or event %q", id, event)
	}
	var b strings.Builder
	if id != "" {
		b.WriteString("id: " + id + "\n")
	}
	if event != "" {
		b.WriteString("event: " + event + "\n")
	}
	for _, line := range sseLines(data) {
		b.WriteString("data: " + line + "\n")
	}
	b.WriteByte('\n')
	return b.String(), nil
}

// sseLines splits s at every "\r\n", "\r" and "\n".
func sseLines(s string) []string {
	var lines []string
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			return append(lines, s)
		}
		lines = append(lines, s[:i])
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
	}
}
