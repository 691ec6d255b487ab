package api

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// readAllSSE reads every event of stream, one byte per read when
// oneByte (so that every line end falls between reads somewhere).
func readAllSSE(stream string, oneByte bool) ([]sseEvent, time.Duration, error) {
	var rd io.Reader = strings.NewReader(stream)
	if oneByte {
		rd = iotest.OneByteReader(rd)
	}
	r := newSSEReader(rd)
	var out []sseEvent
	for {
		ev, err := r.next()
		if err != nil {
			return out, r.retry, err
		}
		out = append(out, ev)
	}
}

func TestSSEReader(t *testing.T) {
	t.Parallel()
	msg := func(id, data string) sseEvent { return sseEvent{ID: id, Event: "message", Data: data} }
	tests := []struct {
		name   string
		stream string
		want   []sseEvent
		retry  time.Duration
		err    error // besides io.EOF
	}{
		{"one event", "id: 7\nevent: backend.status\ndata: {\"id\":7}\n\n",
			[]sseEvent{{"7", "backend.status", `{"id":7}`}}, 0, nil},
		{"data lines joined with newlines", "data: a\ndata:\ndata: c\n\n", []sseEvent{msg("", "a\n\nc")}, 0, nil},
		{"CRLF line ends", "id: 1\r\ndata: a\r\n\r\nid: 2\r\ndata: b\r\n\r\n", []sseEvent{msg("1", "a"), msg("2", "b")}, 0, nil},
		{"CR line ends", "id: 1\rdata: a\r\rdata: b\r\r", []sseEvent{msg("1", "a"), msg("1", "b")}, 0, nil},
		{"mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", []sseEvent{msg("", "a\nb\nc")}, 0, nil},
		{"a CR inside data ends the line", "data: a\rb: x\n\n", []sseEvent{msg("", "a")}, 0, nil},
		{"comments are skipped", ": keep-alive\n\n:\ndata: a\n: inside\n\n", []sseEvent{msg("", "a")}, 0, nil},
		{"one space after the colon is dropped, no more", "data:a\ndata:  b\ndata: \n\n", []sseEvent{msg("", "a\n b\n")}, 0, nil},
		{"a colon in the value stays", "data: {\"a\":\"b:c\"}\n\n", []sseEvent{msg("", `{"a":"b:c"}`)}, 0, nil},
		{"a field without a colon has an empty value", "data\n\n", []sseEvent{msg("", "")}, 0, nil},
		{"unknown fields and garbage are ignored", "garbage here\nDATA: x\nfoo: bar\ndata: a\n\n", []sseEvent{msg("", "a")}, 0, nil},
		{"the id is kept across events", "id: 5\ndata: a\n\ndata: b\n\n", []sseEvent{msg("5", "a"), msg("5", "b")}, 0, nil},
		{"an empty id clears it", "id: 5\ndata: a\n\nid\ndata: b\n\n", []sseEvent{msg("5", "a"), msg("", "b")}, 0, nil},
		{"an id holding NUL is ignored", "id: 5\n\nid: 6\x007\ndata: a\n\n", []sseEvent{msg("5", "a")}, 0, nil},
		{"an event without data is not dispatched but its id counts", "id: 3\nevent: x\n\ndata: a\n\n", []sseEvent{msg("3", "a")}, 0, nil},
		{"retry in milliseconds", "retry: 2500\ndata: a\n\n", []sseEvent{msg("", "a")}, 2500 * time.Millisecond, nil},
		{"a retry that is not all digits is ignored", "retry: 1s\nretry: -5\nretry: +5\nretry:\ndata: a\n\n", []sseEvent{msg("", "a")}, 0, nil},
		{"a byte order mark at the start is dropped", "\uFEFFdata: a\n\n", []sseEvent{msg("", "a")}, 0, nil},
		{"a byte order mark later is data", "data: a\n\n\uFEFFdata: b\n\n", []sseEvent{msg("", "a")}, 0, nil},
		{"an event cut short by the end is dropped", "data: a\n\ndata: b\n", []sseEvent{msg("", "a")}, 0, nil},
		{"a last line without its end is dropped", "data: a\n\ndata: b", []sseEvent{msg("", "a")}, 0, nil},
		{"empty stream", "", nil, 0, nil},
		{"blank lines only", "\n\n\r\n\r", nil, 0, nil},
		{"a line too long", "data: " + strings.Repeat("x", maxSSELine) + "\n\n", nil, 0, errSSELineTooLong},
		{"data too long", strings.Repeat("data: "+strings.Repeat("x", 1<<19)+"\n", 9) + "\n", nil, 0, errSSEDataTooLong},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			name := tt.name
			if oneByte {
				name += "/one byte per read"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				got, retry, err := readAllSSE(tt.stream, oneByte)
				wantErr := tt.err
				if wantErr == nil {
					wantErr = io.EOF
				}
				if !errors.Is(err, wantErr) {
					t.Errorf("err = %v, want %v", err, wantErr)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("events = %q\nwant %q", got, tt.want)
				}
				if retry != tt.retry {
					t.Errorf("retry = %v, want %v", retry, tt.retry)
				}
			})
		}
	}
}

// FuzzSSEReader: no stream makes the reader panic or return an event
// whose data it did not read.
func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{"id: 1\nevent: x\ndata: y\n\n", "data: a\r\ndata: b\r\r", ": c\n\n", "\uFEFFretry: 10\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stream string) {
		events, _, err := readAllSSE(stream, false)
		if err != io.EOF && !errors.Is(err, errSSELineTooLong) && !errors.Is(err, errSSEDataTooLong) {
			t.Fatalf("err = %v", err)
		}
		for _, ev := range events {
			for _, line := range strings.Split(ev.Data, "\n") {
				if !strings.Contains(stream, line) {
					t.Fatalf("data line %q is not in the stream", line)
				}
			}
		}
		one, _, _ := readAllSSE(stream, true)
		if !reflect.DeepEqual(events, one) {
			t.Fatalf("read at once %q, one byte at a time %q", events, one)
		}
	})
}
