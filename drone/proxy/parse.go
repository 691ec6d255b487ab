package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
)

// The proxy parses HTTP/1.1 heads itself: net/http's server and transport
// allocate per request and buffer more than a proxy needs, and the hot path
// here is what sets Plane's requests per second.

// maxHeadBytes bounds a request or response head; maxHeaders its lines.
const (
	maxHeadBytes = 64 << 10
	maxHeaders   = 128
)

var (
	errHeadTooLarge = errors.New("request head too large")
	errMalformed    = errors.New("malformed HTTP head")
)

// header is one header line, as offsets into head.buf; drop marks one the
// proxy does not forward as it came (framing.go).
type header struct {
	name, value span
	drop        bool
}

type span struct{ start, end int }

// head is a parsed request or response head. buf holds its raw bytes; the
// fields point into it.
type head struct {
	buf     []byte
	headers []header

	// Request line, or status line for responses.
	method, target, proto span // request
	status                int  // response
	statusLine            span // response: the line after "HTTP/1.x "
	minor                 int  // HTTP/1.minor

	// What the proxy needs to know, found while parsing.
	contentLength int64 // -1: none
	chunked       bool
	connClose     bool // Connection: close (or HTTP/1.0 without keep-alive)
	upgrade       bool // Connection: upgrade with an Upgrade header
	expectCont    bool // Expect: 100-continue
	connNamed     bool // Connection names other headers (hop-by-hop)
	host          span
	te            span // the Transfer-Encoding value, when there is one
	upgradeTo     span // the Upgrade value
}

func (h *head) str(s span) string      { return string(h.buf[s.start:s.end]) }
func (h *head) bytes(s span) []byte    { return h.buf[s.start:s.end] }
func (h *head) name(i int) []byte      { return h.bytes(h.headers[i].name) }
func (h *head) value(i int) []byte     { return h.bytes(h.headers[i].value) }
func (h *head) statusText() []byte     { return h.bytes(h.statusLine) }
func (h *head) reset()                 { *h = head{buf: h.buf[:0], headers: h.headers[:0]} }
func (h *head) isMethod(m string) bool { return string(h.bytes(h.method)) == m }

// readLine appends the next line (without CRLF) to h.buf and returns its span.
func (h *head) readLine(br *bufio.Reader) (span, error) {
	start := len(h.buf)
	for {
		frag, err := br.ReadSlice('\n')
		if len(h.buf)+len(frag) > maxHeadBytes {
			return span{}, errHeadTooLarge
		}
		h.buf = append(h.buf, frag...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return span{}, err
		}
	}
	end := len(h.buf) - 1 // drop '\n'
	if end > start && h.buf[end-1] == '\r' {
		end--
	}
	return span{start, end}, nil
}

// readRequest reads a request head. io.EOF before any byte means the client
// closed an idle connection.
func (h *head) readRequest(br *bufio.Reader) error {
	h.reset()
	line, err := h.readLine(br)
	// Tolerate one empty line before a request (RFC 9112 §2.2).
	if err == nil && line.start == line.end {
		line, err = h.readLine(br)
	}
	if err != nil {
		return err
	}
	l := h.bytes(line)
	sp1 := bytes.IndexByte(l, ' ')
	if sp1 <= 0 {
		return errMalformed
	}
	rest := l[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return errMalformed
	}
	h.method = span{line.start, line.start + sp1}
	h.target = span{line.start + sp1 + 1, line.start + sp1 + 1 + sp2}
	h.proto = span{h.target.end + 1, line.end}
	if !validToken(h.bytes(h.method)) || !validTarget(h.bytes(h.target)) {
		return errMalformed
	}
	if h.minor, err = parseProto(h.bytes(h.proto)); err != nil {
		return err
	}
	return h.readHeaders(br, true)
}

// readResponse reads a response head.
func (h *head) readResponse(br *bufio.Reader) error {
	h.reset()
	line, err := h.readLine(br)
	if err != nil {
		return err
	}
	l := h.bytes(line)
	// "HTTP/1.1 200 OK": the reason phrase may be empty or missing.
	if len(l) < 12 || l[8] != ' ' {
		return errMalformed
	}
	if h.minor, err = parseProto(l[:8]); err != nil {
		return err
	}
	code, err := strconv.Atoi(string(l[9:12]))
	if err != nil || code < 100 || code > 999 || len(l) > 12 && l[12] != ' ' {
		return errMalformed
	}
	h.status = code
	h.statusLine = span{line.start + 9, line.end}
	return h.readHeaders(br, false)
}

func parseProto(p []byte) (int, error) {
	switch string(p) {
	case "HTTP/1.1":
		return 1, nil
	case "HTTP/1.0":
		return 0, nil
	}
	return 0, errMalformed
}

// readHeaders reads header lines up to the empty line and interprets the
// ones that decide framing and connection handling.
func (h *head) readHeaders(br *bufio.Reader, request bool) error {
	h.contentLength = -1
	keepAlive := false
	var connUpgrade, hasUpgrade bool
	for {
		line, err := h.readLine(br)
		if err != nil {
			if err == errHeadTooLarge {
				return err
			}
			return errMalformed
		}
		if line.start == line.end {
			break
		}
		if len(h.headers) == maxHeaders {
			return errHeadTooLarge
		}
		l := h.bytes(line)
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 || !validToken(l[:colon]) { // also rejects obsolete line folding
			return errMalformed
		}
		v := span{line.start + colon + 1, line.end}
		for v.start < v.end && (h.buf[v.start] == ' ' || h.buf[v.start] == '\t') {
			v.start++
		}
		for v.end > v.start && (h.buf[v.end-1] == ' ' || h.buf[v.end-1] == '\t') {
			v.end--
		}
		hd := header{name: span{line.start, line.start + colon}, value: v}
		name, val := h.bytes(hd.name), h.bytes(v)
		if !validValue(val) {
			return errMalformed
		}
		hd.drop = dropHeader(name, request)
		h.headers = append(h.headers, hd)
		switch {
		case equalFold(name, "content-length"):
			n, err := strconv.ParseInt(string(val), 10, 64)
			if err != nil || !allDigits(val) || h.contentLength >= 0 && h.contentLength != n {
				return errMalformed // a smuggling attempt or garbage
			}
			h.contentLength = n
		case equalFold(name, "transfer-encoding"):
			if h.te.end > 0 {
				return errMalformed // one Transfer-Encoding header, or none
			}
			h.te = v
		case equalFold(name, "connection"):
			ka, up, err := h.connection(val)
			if err != nil {
				return err
			}
			keepAlive, connUpgrade = keepAlive || ka, connUpgrade || up
		case equalFold(name, "upgrade"):
			hasUpgrade = len(val) > 0
			h.upgradeTo = v
		case request && equalFold(name, "host"):
			if h.host.end > 0 {
				return errMalformed // two Host headers
			}
			h.host = v
		case request && equalFold(name, "expect"):
			h.expectCont = equalFold(val, "100-continue")
			hd.drop = h.expectCont // the proxy answers it (or, to HTTP/1.0, ignores it)
			h.headers[len(h.headers)-1] = hd
		}
	}
	if err := h.checkFraming(request); err != nil {
		return err
	}
	if h.minor == 0 && !keepAlive {
		h.connClose = true
	}
	h.upgrade = connUpgrade && hasUpgrade && (!request || tunnelable(h.bytes(h.upgradeTo)))
	return nil
}

// connection reads a Connection header's options: close sets connClose,
// a header name sets connNamed (it is hop-by-hop, never forwarded), and one
// that names a framing header is refused (framing.go).
func (h *head) connection(val []byte) (keepAlive, upgrade bool, err error) {
	forEachToken(val, func(tok []byte) {
		switch {
		case equalFold(tok, "close"):
			h.connClose = true
		case equalFold(tok, "keep-alive"):
			keepAlive = true
		case equalFold(tok, "upgrade"):
			upgrade = true
		case framingOption(tok):
			err = errMalformed
		case len(tok) > 0:
			h.connNamed = true
		}
	})
	return keepAlive, upgrade, err
}

// headerIndex returns the index of the first header named name, or -1.
func (h *head) headerIndex(name string) int {
	for i := range h.headers {
		if equalFold(h.name(i), name) {
			return i
		}
	}
	return -1
}

// connectionNames reports whether a Connection header lists name.
func (h *head) connectionNames(name []byte) bool {
	found := false
	for i := range h.headers {
		if equalFold(h.name(i), "connection") {
			forEachToken(h.value(i), func(tok []byte) {
				found = found || bytes.EqualFold(tok, name)
			})
		}
	}
	return found
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func forEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		tok := v
		if i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		fn(trimOWS(tok))
	}
}

// trimOWS trims optional whitespace, which is spaces and tabs only (RFC
// 9110 §5.6.3): "chunked\v" is not "chunked".
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// validValue reports whether b is a field value the proxy passes on: no
// control character but HTAB (RFC 9110 §5.5). NUL, CR and LF would break
// the head it writes, and a backend may refuse the others (net/http does)
// or read them otherwise.
func validValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validToken reports whether b is an RFC 9110 token (method, header name).
func validToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-32] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// validTarget accepts origin-form targets ("/path?query") and "*", with
// no space or control character and only well-formed percent escapes.
func validTarget(b []byte) bool {
	if len(b) == 1 && b[0] == '*' {
		return true
	}
	if len(b) == 0 || b[0] != '/' {
		return false
	}
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c <= ' ' || c == 0x7f:
			return false
		case c == '%':
			// A percent sign starts an escape of two hex digits (RFC 3986
			// §2.1); a backend's URL parser refuses anything else.
			if i+2 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
				return false
			}
		}
	}
	return true
}
