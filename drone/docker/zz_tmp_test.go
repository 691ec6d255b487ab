package docker

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestTmpDemo(t *testing.T) {
	r := mustRuntime(t)
	c := mustStart(t, r, demoSpec(nil))
	waitHTTP(t, c.Address, "/healthz")
	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, "ws://"+c.Address+"/ws", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://elsewhere.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		typ websocket.MessageType
		p   string
	}{{websocket.MessageText, "ping"}, {websocket.MessageBinary, "\x00\x01bin"}} {
		ws.Write(ctx, m.typ, []byte(m.p))
		typ, p, err := ws.Read(ctx)
		if err != nil || typ != m.typ || string(p) != m.p {
			t.Errorf("echo %v %q %v", typ, p, err)
		}
	}
	ws.Close(websocket.StatusNormalClosure, "")
	// streamed echo
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+c.Address+"/echo", pr)
	go func() { pw.Write([]byte("first\n")) }()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	io.ReadFull(resp.Body, buf)
	t.Logf("streamed first chunk before body end: %q", buf)
	pw.Close()
	resp.Body.Close()
	// sse forever then cancel
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	req, _ = http.NewRequestWithContext(cctx, "GET", "http://"+c.Address+"/sse?n=0&interval_ms=10", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	t.Logf("sse events in 300ms: %d", strings.Count(string(b), "data:"))
	resp, err = http.Post("http://"+c.Address+"/exit?code=7", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, err := r.Wait(ctx, c.ID)
	t.Log("exit", code, err)
	r.Logs(ctx, c.ID, false, func(s, l string) { t.Log(s, l) })
}
