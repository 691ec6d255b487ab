package proxy

import (
	"io"
	"net"
	"sync"
	"syscall"
)

// tunnelBuf is the buffer a tunnel borrows only while it moves bytes.
const tunnelBuf = 32 << 10

var tunnelBufs = sync.Pool{New: func() any { b := make([]byte, tunnelBuf); return &b }}

// pipe copies src to dst until src ends or either side fails.
//
// A held WebSocket is mostly idle, so the cost that matters is what an idle
// tunnel keeps: waiting through the runtime poller without a buffer (rather
// than io.Copy's buffer, or splice's pipe of two descriptors per direction)
// leaves each direction with a parked goroutine and nothing else.
//
// touch is called after each read, to keep the backend's last activity current.
func pipe(dst, src net.Conn, touch func()) {
	tc, ok := src.(*net.TCPConn)
	var rc syscall.RawConn
	var err error
	if ok {
		rc, err = tc.SyscallConn()
	}
	if !ok || err != nil {
		bp := tunnelBufs.Get().(*[]byte)
		defer tunnelBufs.Put(bp)
		_, _ = io.CopyBuffer(writerOnly{dst}, readerOnly{touching{src, touch}}, *bp)
		return
	}
	for {
		done := false
		err := rc.Read(func(fd uintptr) bool {
			bp := tunnelBufs.Get().(*[]byte)
			defer tunnelBufs.Put(bp)
			for {
				n, err := syscall.Read(int(fd), *bp)
				switch {
				case err == syscall.EINTR:
					continue
				case err == syscall.EAGAIN:
					return false // not readable: park in the poller, holding nothing
				case err != nil || n <= 0:
					done = true
					return true
				}
				touch()
				if _, err := dst.Write((*bp)[:n]); err != nil {
					done = true
				}
				return true
			}
		})
		if err != nil || done {
			return
		}
	}
}

// readerOnly and writerOnly hide ReadFrom/WriteTo so that io.CopyBuffer
// uses the given buffer.
type readerOnly struct{ io.Reader }

type writerOnly struct{ io.Writer }

type touching struct {
	r     io.Reader
	touch func()
}

func (t touching) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.touch()
	}
	return n, err
}
