package proxytest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// Target is a proxy in front of a recorder.
type Target struct {
	Addr      string // where the proxy listens
	Host      string // the backend's Host value
	BackendID string // what X-Plane-Backend must say
	User      string // what X-Plane-User must say
	Key       string // what X-Plane-Key must say (the route's key)
	Token     string // a connect token for the backend
	// Recorded returns what the recorder read since it was last called,
	// and forgets it.
	Recorded func() ([]Request, error)
}

// Outcome is what became of a vector's bytes.
type Outcome struct {
	Statuses []int
	Location string // of the first answer
	Closed   bool   // the proxy closed the connection
	Requests []Request
}

// quiet is how long a connection must stay silent, after its last answer,
// to count as left open.
const quiet = 300 * time.Millisecond

// Send writes the vector's bytes to the target, reads every answer until
// the connection closes or stays quiet, and collects what the backend read.
func Send(tg Target, v Vector) (Outcome, error) {
	var o Outcome
	c, err := net.Dial("tcp", tg.Addr)
	if err != nil {
		return o, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, Expand(v.Send, tg.Host, tg.Token)); err != nil {
		return o, fmt.Errorf("send: %w", err)
	}
	br := bufio.NewReader(c)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_ = c.SetReadDeadline(time.Now().Add(quiet))
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			o.Closed = true // EOF or reset
			break
		}
		_ = c.SetReadDeadline(deadline)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return o, fmt.Errorf("answer %d: %w", len(o.Statuses)+1, err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return o, fmt.Errorf("answer %d body: %w", len(o.Statuses)+1, err)
		}
		if len(o.Statuses) == 0 {
			o.Location = resp.Header.Get("Location")
		}
		o.Statuses = append(o.Statuses, resp.StatusCode)
		if resp.Close {
			o.Closed = true
			break
		}
	}
	c.Close()
	o.Requests, err = tg.Recorded()
	return o, err
}

// Check compares an outcome with what the vector expects and returns every
// difference; checks that hold for every request the proxy forwards are
// made too: X-Plane-* and X-Forwarded-* are the proxy's alone, no header
// name holds '_', no trailer arrives, each request reads whole.
func (v Vector) Check(tg Target, o Outcome) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if !slices.Equal(o.Statuses, v.Statuses) {
		fail("answers %v, want %v", o.Statuses, v.Statuses)
	}
	if o.Closed != v.Closed {
		fail("connection closed: %v, want %v", o.Closed, v.Closed)
	}
	if v.Location != "" && o.Location != v.Location {
		fail("Location %q, want %q", o.Location, v.Location)
	}
	reqs := o.Requests
	if v.Partial && len(reqs) == len(v.Forwarded)+1 && strings.HasPrefix(reqs[len(reqs)-1].Err, "body:") {
		reqs = reqs[:len(reqs)-1]
	}
	var got []string
	for _, r := range reqs {
		got = append(got, r.String())
	}
	if !slices.Equal(got, v.Forwarded) {
		fail("backend read %q, want %q", got, v.Forwarded)
	}
	for _, r := range reqs {
		errs = append(errs, tg.CheckRequest(r)...)
		for name, want := range v.Header {
			if got := strings.Join(r.Header[name], ", "); got != want {
				errs = append(errs, fmt.Sprintf("%s: %s = %q, want %q", r, name, got, want))
			}
		}
	}
	return errs
}

// CheckRequest returns what is wrong with a request the backend read: the
// checks that hold for every request the proxy forwards.
func (tg Target) CheckRequest(r Request) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, r.String()+": "+fmt.Sprintf(format, args...)) }
	if r.Err != "" {
		fail("backend could not read it")
	}
	own := map[string]string{"X-Plane-Backend": tg.BackendID, "X-Plane-User": tg.User, "X-Plane-Key": tg.Key}
	for name, vals := range r.Header {
		_, ours := own[name]
		switch {
		case strings.ContainsRune(name, '_'):
			fail("header %q reached the backend", name)
		case ours:
			if len(vals) != 1 || vals[0] != own[name] {
				fail("%s = %q, want exactly %q", name, vals, own[name])
			}
		case strings.HasPrefix(name, "X-Plane-"):
			fail("client header %s: %q reached the backend", name, vals)
		}
	}
	for name := range own {
		if len(r.Header[name]) != 1 {
			fail("%s %q: want exactly one", name, r.Header[name])
		}
	}
	if len(r.Trailer) > 0 {
		fail("trailers %v reached the backend", r.Trailer)
	}
	if len(r.TransferEncoding) > 0 && !slices.Equal(r.TransferEncoding, []string{"chunked"}) {
		fail("Transfer-Encoding %q", r.TransferEncoding)
	}
	return errs
}

// Refused reports whether the target answered the first request with an
// error of its own.
func (o Outcome) Refused() bool { return len(o.Statuses) > 0 && o.Statuses[0] >= 400 }

// Forwarded reports whether the backend read a whole request.
func (o Outcome) Forwarded() bool {
	for _, r := range o.Requests {
		if r.Err == "" {
			return true
		}
	}
	return false
}
