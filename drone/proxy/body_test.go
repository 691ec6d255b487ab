package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// copyResult runs copy from a reader over in and returns what reached the
// destination and what is left unread.
func copyResult(in string, size int, copy func(*bufio.Writer, *bufio.Reader) error) (out, rest string, err error) {
	var dst bytes.Buffer
	bw := bufio.NewWriterSize(&dst, 16)
	br := bufio.NewReaderSize(strings.NewReader(in), size)
	err = copy(bw, br)
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	left, _ := io.ReadAll(br)
	return dst.String(), string(left), err
}

func TestCopyN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in  string
		n         int64
		out, rest string
		wantErr   error
	}{
		{name: "exact", in: "hello", n: 5, out: "hello"},
		{name: "stops at n", in: "helloGET / HTTP/1.1", n: 5, out: "hello", rest: "GET / HTTP/1.1"},
		{name: "zero", in: "abc", n: 0, rest: "abc"},
		{name: "larger than the buffer", in: strings.Repeat("0123456789", 100) + "next", n: 1000, out: strings.Repeat("0123456789", 100), rest: "next"},
		{name: "short", in: "hel", n: 5, out: "hel", wantErr: io.ErrUnexpectedEOF},
		{name: "empty", in: "", n: 1, wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, rest, err := copyResult(tt.in, 16, func(bw *bufio.Writer, br *bufio.Reader) error { return copyN(bw, br, tt.n, nil) })
			if !errors.Is(err, tt.wantErr) || err != nil && tt.wantErr == nil {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if out != tt.out || rest != tt.rest {
				t.Fatalf("copied %q leaving %q, want %q leaving %q", out, rest, tt.out, tt.rest)
			}
		})
	}
}

func TestCopyUntilEOF(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "x", strings.Repeat("abcdefg", 1000)} {
		out, rest, err := copyResult(in, 16, copyUntilEOF)
		if err != nil || out != in || rest != "" {
			t.Errorf("copyUntilEOF(%d bytes) = %d bytes, rest %q, err %v", len(in), len(out), rest, err)
		}
	}
}

func TestCopyChunked(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     string // the copy, framed anew; "": in without rest
		rest     string // after the message, on success
		wantErr  error
	}{
		{name: "one chunk", in: "5\r\nhello\r\n0\r\n\r\n"},
		{name: "several chunks", in: "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"},
		{name: "no chunks", in: "0\r\n\r\n"},
		{name: "uppercase hex", in: "A\r\n0123456789\r\n0\r\n\r\n", want: "a\r\n0123456789\r\n0\r\n\r\n"},
		{name: "leading zeros", in: "0005\r\nhello\r\n000\r\n\r\n", want: "5\r\nhello\r\n0\r\n\r\n"},
		// Extensions and trailers are dropped (framing.go).
		{name: "extensions", in: "5;name=value;flag\r\nhello\r\n0;last=\"yes\"\r\n\r\n", want: "5\r\nhello\r\n0\r\n\r\n"},
		{name: "space before extension", in: "5 ;x=y\r\nhello\r\n0\t\r\n\r\n", want: "5\r\nhello\r\n0\r\n\r\n"},
		{name: "trailers", in: "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Plane-User: admin\r\n\r\n", want: "5\r\nhello\r\n0\r\n\r\n"},
		{name: "data holding CRLF", in: "4\r\n\r\n\r\n\r\n0\r\n\r\n"},
		{name: "big chunk", in: "1000\r\n" + strings.Repeat("z", 4096) + "\r\n0\r\n\r\n"},
		{name: "stops at the message end", in: "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n", rest: "GET / HTTP/1.1\r\n\r\n"},
		{name: "max size digits", in: "00000000000003\r\nabc\r\n0\r\n\r\n", want: "3\r\nabc\r\n0\r\n\r\n"},

		{name: "bad CRLF after data", in: "5\r\nhelloXX0\r\n\r\n", wantErr: errBadChunk},
		{name: "LF only after data", in: "5\r\nhello\n0\r\n\r\n", wantErr: errBadChunk},
		{name: "data longer than size", in: "3\r\nhello\r\n0\r\n\r\n", wantErr: errBadChunk},
		{name: "bare LF after size", in: "5\nhello\r\n0\r\n\r\n", wantErr: errBadChunk},
		{name: "bare LF after last chunk", in: "5\r\nhello\r\n0\n\r\n", wantErr: errBadChunk},
		{name: "bare LF ending trailers", in: "0\r\n\n", wantErr: errBadChunk},
		{name: "not hex", in: "g\r\nhello\r\n0\r\n\r\n", wantErr: errBadChunk},
		{name: "empty size", in: "\r\nhello\r\n0\r\n\r\n", wantErr: errBadChunk},
		{name: "only an extension", in: ";x\r\n0\r\n\r\n", wantErr: errBadChunk},
		{name: "leading space", in: " 5\r\nhello\r\n0\r\n\r\n", wantErr: errBadChunk},
		{name: "0x prefix", in: "0x5\r\nhello\r\n0\r\n\r\n", wantErr: errBadChunk},
		{name: "too many digits", in: "0000000000000005\r\nhello\r\n0\r\n\r\n", wantErr: errBadChunk},
		{name: "oversize chunk line", in: "5;" + strings.Repeat("x", maxChunkLine) + "\r\nhello\r\n0\r\n\r\n", wantErr: errBadChunk},
		{name: "oversize trailer line", in: "0\r\nX: " + strings.Repeat("x", maxChunkLine) + "\r\n\r\n", wantErr: errBadChunk},
		{name: "too many trailers", in: "0\r\n" + strings.Repeat("X: 1\r\n", maxHeaders+2) + "\r\n", wantErr: errBadChunk},
		// The proxy passes chunk-size lines on as they are: one the backend
		// may read differently (a sign is no HEXDIG, RFC 9112 §7.1) must be
		// refused like any other malformed size.
		{name: "plus sign", in: "+5\r\nhello\r\n0\r\n\r\n", wantErr: errBadChunk},
		{name: "minus zero", in: "-0\r\n\r\n", wantErr: errBadChunk},
		{name: "underscore", in: "1_0\r\n" + strings.Repeat("x", 16) + "\r\n0\r\n\r\n", wantErr: errBadChunk},
		// A bare CR is no line end to the proxy but is one to some parsers
		// (RFC 9112 §2.2 lets a recipient take it for SP or reject it).
		{name: "bare CR in extension", in: "0;a\rb\r\n\r\n", wantErr: errBadChunk},
		{name: "bare CR after size", in: "5\r;x\r\nhello\r\n0\r\n\r\n", wantErr: errBadChunk},
		{name: "NUL in extension", in: "5;\x00\r\nhello\r\n0\r\n\r\n", wantErr: errBadChunk},

		{name: "truncated: nothing", in: "", wantErr: io.ErrUnexpectedEOF},
		{name: "truncated: in size line", in: "5", wantErr: io.ErrUnexpectedEOF},
		{name: "truncated: in data", in: "5\r\nhel", wantErr: io.ErrUnexpectedEOF},
		{name: "truncated: before CRLF", in: "5\r\nhello", wantErr: io.ErrUnexpectedEOF},
		{name: "truncated: half CRLF", in: "5\r\nhello\r"},
		{name: "truncated: before last chunk", in: "5\r\nhello\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "truncated: after last chunk", in: "0\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "truncated: in trailers", in: "0\r\nX: 1\r\n", wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		for _, size := range []int{16, 4096} {
			t.Run(tt.name, func(t *testing.T) {
				out, rest, err := copyResult(tt.in, size, reframe)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("buffer %d: err = %v, want %v", size, err, tt.wantErr)
					}
					return
				}
				if strings.HasPrefix(tt.name, "truncated") {
					if err == nil {
						t.Fatalf("buffer %d: truncated input accepted", size)
					}
					return
				}
				if err != nil {
					t.Fatalf("buffer %d: %v", size, err)
				}
				want := tt.want
				if want == "" {
					want = strings.TrimSuffix(tt.in, tt.rest)
				}
				if out != want || rest != tt.rest {
					t.Fatalf("buffer %d: copied %q leaving %q, want %q leaving %q", size, out, rest, want, tt.rest)
				}
			})
		}
	}
}

// reframe is copyChunked as the proxy uses it between client and backend.
func reframe(dst *bufio.Writer, src *bufio.Reader) error { return copyChunked(dst, src, false, nil) }

// TestCopyChunkedDechunk: for an HTTP/1.0 client only the data goes out.
func TestCopyChunkedDechunk(t *testing.T) {
	t.Parallel()
	out, rest, err := copyResult("5;x\r\nhello\r\n1\r\n,\r\n0\r\nT: 1\r\n\r\nnext", 16, func(dst *bufio.Writer, src *bufio.Reader) error {
		return copyChunked(dst, src, true, nil)
	})
	if err != nil || out != "hello," || rest != "next" {
		t.Fatalf("dechunked %q leaving %q, err %v", out, rest, err)
	}
}

// notifyWriter reports every write on a channel.
type notifyWriter struct{ ch chan string }

func (w notifyWriter) Write(b []byte) (int, error) {
	w.ch <- string(b)
	return len(b), nil
}

// TestCopyFlushesBeforeBlocking feeds each copy function through a pipe and
// checks that what was written so far reaches the destination before the
// source has produced the rest: a stream is not held back in the buffer.
func TestCopyFlushesBeforeBlocking(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		copy   func(*bufio.Writer, *bufio.Reader) error
		pieces []string // each must reach the destination before the next is written
		end    string   // written last; then the copy must return
	}{
		{name: "copyN", copy: func(bw *bufio.Writer, br *bufio.Reader) error { return copyN(bw, br, 15, nil) },
			pieces: []string{"hello", "world"}, end: "!!!!!"},
		{name: "copyUntilEOF", copy: copyUntilEOF, pieces: []string{"data: 1\n\n", "data: 2\n\n"}},
		{name: "copyChunked", copy: reframe,
			pieces: []string{"9\r\ndata: 1\n\n", "\r\n9\r\ndata: 2\n\n"}, end: "\r\n0\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			got := make(chan string, 100)
			bw := bufio.NewWriterSize(notifyWriter{got}, 4096)
			done := make(chan error, 1)
			go func() {
				err := tt.copy(bw, bufio.NewReaderSize(pr, 4096))
				if ferr := bw.Flush(); err == nil {
					err = ferr
				}
				done <- err
			}()
			var all string
			for _, piece := range tt.pieces {
				if _, err := pw.Write([]byte(piece)); err != nil {
					t.Fatal(err)
				}
				// Everything written so far must arrive without another byte
				// from the source.
				var arrived string
				timeout := time.After(5 * time.Second)
				for arrived != piece {
					select {
					case s := <-got:
						arrived += s
						if !strings.HasPrefix(piece, arrived) {
							t.Fatalf("destination got %q, want %q", arrived, piece)
						}
					case err := <-done:
						t.Fatalf("copy returned early: %v", err)
					case <-timeout:
						t.Fatalf("after %q only %q reached the destination: the copy waits for more input without flushing", piece, arrived)
					}
				}
				all += arrived
			}
			if tt.end != "" {
				if _, err := pw.Write([]byte(tt.end)); err != nil {
					t.Fatal(err)
				}
			} else {
				pw.Close()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("copy did not return at the end of the message")
			}
			close(got)
			for s := range got {
				all += s
			}
			if want := strings.Join(tt.pieces, "") + tt.end; all != want {
				t.Fatalf("destination got %q, want %q", all, want)
			}
		})
	}
}

// chunkedMessage encodes body as net/http's chunked writer does, cutting it
// into chunks of the given sizes, with optional trailers.
func chunkedMessage(body []byte, sizes []byte, trailers string) []byte {
	var b bytes.Buffer
	cw := httputil.NewChunkedWriter(&b)
	for i := 0; len(body) > 0; i++ {
		n := len(body)
		if len(sizes) > 0 {
			n = min(n, 1+int(sizes[i%len(sizes)]))
		}
		cw.Write(body[:n])
		body = body[n:]
	}
	cw.Close() // writes the last chunk, "0\r\n"
	b.WriteString(trailers)
	b.WriteString("\r\n")
	return b.Bytes()
}

// chunkLine is RFC 9112 §7.1's chunk-size [ chunk-ext ], with the
// extensions only kept free of control characters.
var chunkLine = regexp.MustCompile(`^[0-9A-Fa-f]{1,15}[ \t]*(;[^\x00-\x08\x0a-\x1f\x7f]*)?$`)

// strictChunked checks msg, one whole chunked body, against the grammar.
func strictChunked(msg []byte) error {
	for {
		line, rest, ok := bytes.Cut(msg, []byte("\r\n"))
		if !ok {
			return errors.New("chunk line without CRLF")
		}
		if !chunkLine.Match(line) {
			return fmt.Errorf("chunk line %q is not chunk-size [ chunk-ext ]", line)
		}
		hex := line
		if i := bytes.IndexFunc(line, func(r rune) bool { return !strings.ContainsRune("0123456789abcdefABCDEF", r) }); i >= 0 {
			hex = line[:i]
		}
		size, err := strconv.ParseUint(string(hex), 16, 64)
		if err != nil {
			return err
		}
		msg = rest
		if size == 0 {
			for {
				line, rest, ok := bytes.Cut(msg, []byte("\r\n"))
				if !ok {
					return errors.New("trailers do not end")
				}
				msg = rest
				if len(line) == 0 {
					if len(msg) > 0 {
						return fmt.Errorf("%q after the end", msg)
					}
					return nil
				}
			}
		}
		if uint64(len(msg)) < size+2 || string(msg[size:size+2]) != "\r\n" {
			return errors.New("chunk data not followed by CRLF")
		}
		msg = msg[size+2:]
	}
}

func FuzzCopyChunked(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), []byte("hello, world"), []byte{3, 0, 200}, uint16(0), false)
	f.Add([]byte("5;ext\r\nhello\r\n0\r\nT: 1\r\n\r\nrest"), []byte{}, []byte{}, uint16(4000), true)
	f.Add([]byte("ffffffffffffff\r\n"), bytes.Repeat([]byte("x"), 5000), []byte{255}, uint16(1), true)
	f.Add([]byte("+5\r\nhello\r\n-0\r\n\r\n"), []byte("\r\n0\r\n\r\n"), []byte{1}, uint16(7), false)
	f.Add([]byte("0;\r\r000000\r00\r\n\r\n"), []byte{}, []byte{}, uint16(0), false)
	f.Fuzz(func(t *testing.T, raw, body, sizes []byte, bufSize uint16, trailers bool) {
		size := 16 + int(bufSize)%8192

		// Any input: no panic; a message accepted is one that a strict
		// reader accepts too, with the same data, and the copy is in
		// canonical form (no extensions, no trailers) with that data.
		{
			var dst, data bytes.Buffer
			bw := bufio.NewWriterSize(&dst, 16)
			br := bufio.NewReaderSize(bytes.NewReader(raw), size)
			err := copyChunked(bw, br, false, &data)
			bw.Flush()
			left, _ := io.ReadAll(br)
			if err == nil {
				consumed := raw[:len(raw)-len(left)]
				if err := strictChunked(consumed); err != nil {
					t.Fatalf("accepted message %q: %v", consumed, err)
				}
				if err := strictChunked(dst.Bytes()); err != nil {
					t.Fatalf("copy %q of %q: %v", dst.Bytes(), consumed, err)
				}
				ref, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(consumed)))
				if err != nil || !bytes.Equal(ref, data.Bytes()) {
					t.Fatalf("message %q: proxy read %q, net/http %q (%v)", consumed, data.Bytes(), ref, err)
				}
				if want := chunkedMessage(nil, nil, ""); data.Len() == 0 && !bytes.Equal(dst.Bytes(), want) {
					t.Fatalf("empty body copied as %q, want %q", dst.Bytes(), want)
				}
			}
		}

		// A message from a valid encoder: copied byte for byte without its
		// trailers, up to its end and no further.
		tr := ""
		if trailers {
			tr = "X-Sum: 1\r\nX-Other: two\r\n"
		}
		msg := chunkedMessage(body, sizes, tr)
		in := append(append([]byte(nil), msg...), "GET / HTTP/1.1\r\n"...)
		var dst bytes.Buffer
		bw := bufio.NewWriterSize(&dst, 4096)
		br := bufio.NewReaderSize(bytes.NewReader(in), size)
		if err := copyChunked(bw, br, false, nil); err != nil {
			t.Fatalf("valid message %q: %v", msg, err)
		}
		bw.Flush()
		if want := chunkedMessage(body, sizes, ""); !bytes.Equal(dst.Bytes(), want) {
			t.Fatalf("copy differs:\n sent %q\ncopied %q\n want %q", msg, dst.Bytes(), want)
		}
		left, _ := io.ReadAll(br)
		if string(left) != "GET / HTTP/1.1\r\n" {
			t.Fatalf("copy did not end at the message end: left %q", left)
		}
	})
}
