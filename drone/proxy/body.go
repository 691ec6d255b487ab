package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

var errBadChunk = errors.New("malformed chunked body")

// afterLastChunk is a failure in the trailer section of a chunked body,
// when the whole body has been copied.
type afterLastChunk struct{ err error }

func (e afterLastChunk) Error() string { return "in trailers: " + e.err.Error() }
func (e afterLastChunk) Unwrap() error { return e.err }

// readError is a failure to read the source of a copy (not to write its
// destination): for a request body, the client's side.
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

// copyN copies n bytes from src to dst, and to tee when it is not nil.
// Before it would block on src it flushes dst, so that whatever has arrived
// reaches the other side at once (streamed responses, Server-Sent Events)
// while a burst still goes out in one write.
func copyN(dst *bufio.Writer, src *bufio.Reader, n int64, tee *bytes.Buffer) error {
	for n > 0 {
		if err := fill(dst, src); err != nil {
			return unexpected(err)
		}
		k := src.Buffered()
		if int64(k) > n {
			k = int(n)
		}
		b, _ := src.Peek(k)
		if _, err := dst.Write(b); err != nil {
			return err
		}
		if tee != nil {
			tee.Write(b)
		}
		_, _ = src.Discard(k)
		n -= int64(k)
	}
	return nil
}

// copyUntilEOF copies everything src has until it ends.
func copyUntilEOF(dst *bufio.Writer, src *bufio.Reader) error {
	for {
		if err := fill(dst, src); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		b, _ := src.Peek(src.Buffered())
		if _, err := dst.Write(b); err != nil {
			return err
		}
		_, _ = src.Discard(len(b))
	}
}

// fill makes sure src has buffered bytes, flushing dst before it waits. A
// failure to read comes back as a readError.
func fill(dst *bufio.Writer, src *bufio.Reader) error {
	if src.Buffered() > 0 {
		return nil
	}
	if err := dst.Flush(); err != nil {
		return err
	}
	if _, err := src.Peek(1); err != nil {
		return readError{err}
	}
	return nil
}

// maxChunkLine bounds a chunk-size line (size and extensions) and a
// trailer line.
const maxChunkLine = 4096

// copyChunked copies a chunked body from src to dst, framed anew by the
// proxy (framing.go): each chunk's size line is written from the size it
// read, extensions dropped; the trailer section is read and dropped. The
// last chunk goes out before the trailers are read, so that a sender that
// never ends its trailer section stalls only itself. With dechunk, only the
// data is written (for an HTTP/1.0 client, whose response ends at close);
// tee, when not nil, gets the data too.
func copyChunked(dst *bufio.Writer, src *bufio.Reader, dechunk bool, tee *bytes.Buffer) error {
	var scratch [64]byte
	line := scratch[:0]
	for {
		if err := fill(dst, src); err != nil {
			return unexpected(err)
		}
		var err error
		if line, err = readChunkLine(src, line[:0]); err != nil {
			return err
		}
		size, err := chunkSize(line)
		if err != nil {
			return err
		}
		if size == 0 {
			if !dechunk {
				dst.WriteString("0\r\n\r\n")
				if err := dst.Flush(); err != nil {
					return err
				}
			}
			if err := skipTrailers(dst, src, line[:0]); err != nil {
				return afterLastChunk{err}
			}
			return nil
		}
		if !dechunk {
			var n [16]byte
			dst.Write(strconv.AppendInt(n[:0], size, 16))
			dst.WriteString("\r\n")
		}
		if err := copyN(dst, src, size, tee); err != nil {
			return err
		}
		if err := fill(dst, src); err != nil {
			return unexpected(err)
		}
		crlf, err := src.Peek(2)
		if err != nil || crlf[0] != '\r' || crlf[1] != '\n' {
			if err != nil && !errors.Is(err, io.EOF) {
				return readError{err}
			}
			return errBadChunk
		}
		if !dechunk {
			if _, err := dst.WriteString("\r\n"); err != nil {
				return err
			}
		}
		_, _ = src.Discard(2)
	}
}

// skipTrailers reads the trailer section up to and including its final
// CRLF, flushing dst first: the last chunk is already there.
func skipTrailers(dst *bufio.Writer, src *bufio.Reader, line []byte) error {
	for n := 0; ; n++ {
		if n > maxHeaders {
			return errBadChunk
		}
		if err := fill(dst, src); err != nil {
			return unexpected(err)
		}
		var err error
		if line, err = readChunkLine(src, line[:0]); err != nil {
			return err
		}
		if len(line) == 2 { // the empty line
			return nil
		}
	}
}

// readChunkLine reads a CRLF-terminated line, with its CRLF, into buf.
func readChunkLine(src *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		frag, err := src.ReadSlice('\n')
		if len(buf)+len(frag) > maxChunkLine {
			return nil, errBadChunk
		}
		buf = append(buf, frag...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return nil, unexpected(readError{err})
		}
	}
	if len(buf) < 2 || buf[len(buf)-2] != '\r' {
		return nil, errBadChunk
	}
	for _, c := range buf[:len(buf)-2] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, errBadChunk // a bare CR or NUL would be read differently downstream
		}
	}
	return buf, nil
}

// chunkSize parses "1a2b[;ext]\r\n": hex digits only, no sign, no 0x, no
// space before the size (RFC 9112 §7.1).
func chunkSize(line []byte) (int64, error) {
	s := line[:len(line)-2]
	if i := bytes.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	s = bytes.TrimRight(s, " \t")
	if len(s) == 0 || len(s) > 15 {
		return 0, errBadChunk
	}
	for _, c := range s {
		if !isHex(c) {
			return 0, errBadChunk
		}
	}
	n, err := strconv.ParseInt(string(s), 16, 64)
	if err != nil || n < 0 {
		return 0, errBadChunk
	}
	return n, nil
}

// unexpected turns the end of the source in mid-message into
// io.ErrUnexpectedEOF, keeping it a readError.
func unexpected(err error) error {
	var re readError
	if errors.As(err, &re) && re.err == io.EOF {
		return readError{io.ErrUnexpectedEOF}
	}
	if err == io.EOF {
		return readError{io.ErrUnexpectedEOF}
	}
	return err
}
