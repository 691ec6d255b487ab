package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"plane"
)

// BenchmarkForward is the proxy's hot path in-process: keep-alive clients
// sending GETs through the proxy to a backend that answers each with a
// fixed response, as cheaply as it can. Its allocs/op and a CPU profile
// (-cpuprofile) show what one request costs the proxy itself; make bench
// compares the whole drone with nginx.
func BenchmarkForward(b *testing.B) {
	for _, clients := range []int{1, 32} {
		b.Run(strconv.Itoa(clients)+" clients", func(b *testing.B) {
			e := newEnv(b, Config{}, false)
			ln := listenLoopback(b)
			defer ln.Close()
			go serveFixed(ln)
			e.p.SetRoute(Route{BackendID: "b1", Address: ln.Addr().String(), Status: plane.StatusReady, Public: true})

			req := []byte("GET /healthz HTTP/1.1\r\nHost: b1.plane.localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
			conns := make([]net.Conn, clients)
			for i := range conns {
				conns[i] = e.dial().c
			}
			var next sync.Mutex
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, c := range conns {
				wg.Go(func() {
					br := bufio.NewReader(c)
					for {
						next.Lock()
						if n >= b.N {
							next.Unlock()
							return
						}
						n++
						next.Unlock()
						if _, err := c.Write(req); err != nil {
							b.Error(err)
							return
						}
						if err := readFixed(br); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// fixedResponse is the backend's answer to every request.
const fixedResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"

// serveFixed answers every request on every connection of ln with
// fixedResponse, reading heads only (the benchmark sends no bodies).
func serveFixed(ln net.Listener) {
	serveEach(ln, func(c net.Conn, br *bufio.Reader) bool {
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return false
			}
			if len(line) <= 2 {
				break
			}
		}
		_, err := io.WriteString(c, fixedResponse)
		return err == nil
	})
}

// readFixed reads one response to the end of its 3-byte body.
func readFixed(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if !bytes.HasPrefix(line, []byte("HTTP/1.1 200")) && bytes.HasPrefix(line, []byte("HTTP/")) {
			return io.ErrUnexpectedEOF
		}
	}
	_, err := br.Discard(3)
	return err
}
