package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

var errBadChunk = errors.New("malformed chunked body")

// copyN copies n bytes from src to dst. Before it would block on src it
// flushes dst, so that whatever has arrived reaches the other side at once
// (streamed responses, Server-Sent Events) while a burst still goes out in
// one write.
func copyN(dst *bufio.Writer, src *bufio.Reader, n int64) error {
	for n > 0 {
		if err := fill(dst, src); err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		k := src.Buffered()
		if int64(k) > n {
			k = int(n)
		}
		b, _ := src.Peek(k)
		if _, err := dst.Write(b); err != nil {
			return err
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
			if err == io.EOF {
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

// fill makes sure src has buffered bytes, flushing dst before it waits.
func fill(dst *bufio.Writer, src *bufio.Reader) error {
	if src.Buffered() > 0 {
		return nil
	}
	if err := dst.Flush(); err != nil {
		return err
	}
	_, err := src.Peek(1)
	return err
}

// maxChunkLine bounds a chunk-size line (size and extensions).
const maxChunkLine = 4096

// copyChunked copies a chunked body as it is, chunk by chunk, checking its
// framing so that the end of the message is found and a malformed body is
// not passed on.
func copyChunked(dst *bufio.Writer, src *bufio.Reader) error {
	var line []byte
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
		if _, err := dst.Write(line); err != nil {
			return err
		}
		if size == 0 {
			return copyTrailers(dst, src, line[:0])
		}
		if err := copyN(dst, src, size); err != nil {
			return err
		}
		if err := fill(dst, src); err != nil {
			return unexpected(err)
		}
		crlf, err := src.Peek(2)
		if err != nil || crlf[0] != '\r' || crlf[1] != '\n' {
			return errBadChunk
		}
		if _, err := dst.Write(crlf); err != nil {
			return err
		}
		_, _ = src.Discard(2)
	}
}

// copyTrailers copies trailer lines up to and including the final CRLF.
func copyTrailers(dst *bufio.Writer, src *bufio.Reader, line []byte) error {
	for n := 0; ; n++ {
		if n > maxHeaders {
			return errBadChunk
		}
		var err error
		if line, err = readChunkLine(src, line[:0]); err != nil {
			return err
		}
		if _, err := dst.Write(line); err != nil {
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
			return nil, unexpected(err)
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

// chunkSize parses "1a2b[;ext]\r\n".
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
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return 0, errBadChunk
		}
	}
	n, err := strconv.ParseInt(string(s), 16, 64)
	if err != nil || n < 0 {
		return 0, errBadChunk
	}
	return n, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
