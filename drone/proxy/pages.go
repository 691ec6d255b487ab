package proxy

import (
	"bytes"
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
)

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Status}} {{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}
@media(prefers-color-scheme:dark){body{background:#111;color:#ddd}}code{font-size:.9em}</style></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p>
{{if .Backend}}<p>Backend <code>{{.Backend}}</code>{{if .BackendStatus}}, status <code>{{.BackendStatus}}</code>{{end}}.</p>{{end}}
<p><small>Plane drone proxy · {{.Status}}</small></p></body></html>
`))

type pageData struct {
	Status        int    `json:"status"`
	Title         string `json:"error"`
	Message       string `json:"message"`
	Backend       string `json:"backend,omitempty"`
	BackendStatus string `json:"backend_status,omitempty"`
}

// page answers with a small error page: HTML for browsers, JSON for
// clients that ask for it.
func (cn *conn) page(status int, backend, backendStatus, msg string, closeConn bool) {
	d := pageData{Status: status, Title: http.StatusText(status), Message: msg, Backend: backend, BackendStatus: backendStatus}
	var body bytes.Buffer
	ctype := "text/html; charset=utf-8"
	if cn.wantsJSON() {
		ctype = "application/json"
		_ = json.NewEncoder(&body).Encode(d)
	} else {
		_ = pageTmpl.Execute(&body, d)
	}
	cn.noteUnread(closeConn)
	bw := cn.bw
	bw.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	bw.WriteString("Content-Type: " + ctype + "\r\nCache-Control: no-store\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(body.Len()))
	if closeConn {
		bw.WriteString("\r\nConnection: close")
	}
	if status == 503 {
		bw.WriteString("\r\nRetry-After: 1")
	}
	bw.WriteString("\r\n\r\n")
	if cn.h == nil || !cn.h.isMethod("HEAD") {
		bw.Write(body.Bytes())
	}
	_ = bw.Flush()
}

// noteUnread marks a connection closed after an answer given without
// reading the request body: it gets a lingering close, so the client reads
// the answer rather than a reset.
func (cn *conn) noteUnread(closeConn bool) {
	if closeConn && cn.h != nil && (cn.h.chunked || cn.h.contentLength > 0) {
		cn.unread = true
	}
}

func (cn *conn) wantsJSON() bool {
	h := cn.h
	if h == nil || len(h.buf) == 0 {
		return false
	}
	i := h.headerIndex("accept")
	return i >= 0 && bytes.Contains(h.value(i), []byte("application/json"))
}
