// Package proxytest holds what the proxy's adversarial tests share: a
// backend that records exactly the requests it reads, parsed by a strict
// parser independent of the proxy's (net/http's), and the corpus of attack
// vectors with what the proxy must do with each.
//
// The demo image serves the recorder in DEMO_MODE=record, so the same
// vectors run against a real container behind a real drone; the proxy's
// fuzz test runs it in-process.
package proxytest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
)

// Paths the recorder answers itself, without recording the request.
const (
	PathRecorded = "/__recorded" // GET: the requests read so far, as JSON; ?clear=1 forgets them
	PathHang     = "/__hang"     // never answers (the connection stays open)
	PathDrop     = "/__drop"     // reads the request and closes the connection unanswered
)

// Request is one request as the recorder read it.
type Request struct {
	Conn             int                 `json:"conn"` // which connection (1, 2…) it came on
	Method           string              `json:"method"`
	Target           string              `json:"target"`
	Proto            string              `json:"proto"`
	Header           map[string][]string `json:"header"`
	Trailer          map[string][]string `json:"trailer,omitempty"`
	TransferEncoding []string            `json:"transfer_encoding,omitempty"`
	ContentLength    int64               `json:"content_length"`
	Body             string              `json:"body"`
	// Err: the head or the body could not be read; the connection was
	// closed after it.
	Err string `json:"err,omitempty"`
}

// String is the request in short: method, target and body.
func (r Request) String() string {
	s := r.Method + " " + r.Target
	if r.Body != "" {
		s += fmt.Sprintf(" body=%q", r.Body)
	}
	if r.Err != "" {
		s += " err=" + r.Err
	}
	return s
}

// Recorder is a backend that records every request it reads and answers
// each with 200 and the body "answer to <method> <target>", so that a
// client can tell which request a response belongs to.
type Recorder struct {
	mu    sync.Mutex
	reqs  []Request
	conns int
	open  map[net.Conn]struct{}
}

// NewRecorder returns a recorder with nothing recorded.
func NewRecorder() *Recorder { return &Recorder{open: map[net.Conn]struct{}{}} }

// Serve accepts connections on ln until it is closed.
func (r *Recorder) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.conns++
		n := r.conns
		r.open[c] = struct{}{}
		r.mu.Unlock()
		go r.serveConn(c, n)
	}
}

// Close closes every connection the recorder has open.
func (r *Recorder) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.open {
		c.Close()
	}
}

// Requests returns what was recorded so far.
func (r *Recorder) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// Clear forgets what was recorded.
func (r *Recorder) Clear() {
	r.mu.Lock()
	r.reqs = nil
	r.mu.Unlock()
}

// OpenConns is the number of connections open to the recorder now.
func (r *Recorder) OpenConns() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.open)
}

func (r *Recorder) add(q Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, q)
	r.mu.Unlock()
}

func (r *Recorder) serveConn(c net.Conn, n int) {
	defer func() {
		r.mu.Lock()
		delete(r.open, c)
		r.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if err != io.EOF {
				r.add(Request{Conn: n, Err: "head: " + err.Error()})
			}
			return
		}
		body, err := io.ReadAll(req.Body)
		path, _, _ := strings.Cut(req.RequestURI, "?")
		switch {
		case err == nil && path == PathRecorded:
			data, _ := json.Marshal(r.Requests())
			if req.URL.Query().Get("clear") != "" {
				r.Clear()
			}
			if !answer(c, "application/json", data) {
				return
			}
			continue
		case err == nil && path == PathHang:
			_, _ = io.Copy(io.Discard, br) // until the proxy closes
			return
		}
		q := Request{
			Conn: n, Method: req.Method, Target: req.RequestURI, Proto: req.Proto,
			Header: req.Header, Trailer: req.Trailer, TransferEncoding: req.TransferEncoding,
			ContentLength: req.ContentLength, Body: string(body),
		}
		if err != nil {
			q.Err = "body: " + err.Error()
		}
		r.add(q)
		if err != nil || path == PathDrop {
			return
		}
		if !answer(c, "text/plain; charset=utf-8", []byte("answer to "+req.Method+" "+req.RequestURI)) {
			return
		}
	}
}

func answer(c net.Conn, ctype string, body []byte) bool {
	_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s", ctype, len(body), body)
	return err == nil
}
