package docker

import (
	"bytes"
	"context"
	"fmt"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// maxLineBytes cuts lines that never end, so that one chatty backend cannot
// grow a drone's memory without bound.
const maxLineBytes = 64 << 10

// Logs reads the container's output from its start and calls fn for each
// line, with stream "stdout" or "stderr" and without the line ending. With
// follow it keeps reading until the container's output ends, that is until
// it stops; without, until the output so far is read. It returns ctx's error
// when ctx ends first. fn is called from one goroutine at a time.
func (r *Runtime) Logs(ctx context.Context, id string, follow bool, fn func(stream, line string)) error {
	rc, err := r.client.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: follow})
	if err != nil {
		return fmt.Errorf("logs of container %s: %w", id, err)
	}
	defer rc.Close()
	stdout := &lineWriter{stream: "stdout", fn: fn}
	stderr := &lineWriter{stream: "stderr", fn: fn}
	_, err = stdcopy.StdCopy(stdout, stderr, rc)
	stdout.flush()
	stderr.flush()
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("logs of container %s: %w", id, err)
	}
	return nil
}

// lineWriter splits what is written to it into lines.
type lineWriter struct {
	stream string
	fn     func(stream, line string)
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) >= maxLineBytes {
				w.emit(w.buf[:maxLineBytes])
				w.buf = append(w.buf[:0], w.buf[maxLineBytes:]...)
			}
			break
		}
		if len(w.buf) > 0 {
			w.buf = append(w.buf, p[:i]...)
			w.emit(w.buf)
			w.buf = w.buf[:0]
		} else {
			w.emit(p[:i])
		}
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) emit(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	w.fn(w.stream, string(line))
}

// flush emits a last line that had no line ending.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = w.buf[:0]
	}
}
