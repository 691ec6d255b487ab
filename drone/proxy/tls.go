package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"strconv"
)

// SetCertificate installs the certificate served over HTTPS. New handshakes
// use it at once; connections already open keep theirs, so a renewal drops
// nothing.
func (p *Proxy) SetCertificate(c *tls.Certificate) { p.cert.Store(c) }

// SetHTTPSPort makes plain HTTP redirect to HTTPS on port once a
// certificate exists (0: never).
func (p *Proxy) SetHTTPSPort(port int) { p.httpsPort.Store(int64(port)) }

// Certificate returns the certificate served over HTTPS, nil until one exists.
func (p *Proxy) Certificate() *tls.Certificate { return p.cert.Load() }

var errNoCertificate = errors.New("no certificate yet")

// ServeTLS serves HTTPS on ln with the certificate of SetCertificate.
func (p *Proxy) ServeTLS(ln net.Listener) error {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := p.cert.Load(); c != nil {
				return c, nil
			}
			return nil, errNoCertificate
		},
	}
	return p.Serve(tls.NewListener(ln, cfg), true)
}

// redirectToHTTPS answers a plain-HTTP request with a redirect to the same
// URL over HTTPS, once there is a certificate to serve it with.
func (cn *conn) redirectToHTTPS() bool {
	p := cn.p
	port := int(p.httpsPort.Load())
	if cn.secure || port == 0 || p.cert.Load() == nil {
		return false
	}
	h := cn.h
	host := h.bytes(h.host)
	if i := lastColon(host); i >= 0 {
		host = host[:i]
	}
	loc := "https://" + string(host)
	if port != 443 {
		loc += ":" + strconv.Itoa(port)
	}
	loc += h.str(h.target)
	closeConn := !cn.cleanRequest()
	cn.noteUnread(closeConn)
	bw := cn.bw
	bw.WriteString("HTTP/1.1 308 Permanent Redirect\r\nLocation: ")
	bw.WriteString(loc)
	bw.WriteString("\r\nContent-Length: 0\r\n")
	if closeConn {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	_ = bw.Flush()
	return true
}
