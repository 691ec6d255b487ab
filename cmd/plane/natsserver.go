package main

import (
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startNATS starts an embedded nats-server with JetStream, its store under
// storeDir, listening on listen (port 0 picks a free one).
func startNATS(listen, storeDir string) (*natsserver.Server, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("--nats-listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("--nats-listen %q: bad port", listen)
	}
	if port == 0 {
		port = natsserver.RANDOM_PORT
	}
	ns, err := natsserver.NewServer(&natsserver.Options{
		ServerName: "plane",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not start on %s (is the port taken?)", listen)
	}
	return ns, nil
}

// connectNATS connects to url (with an optional credentials file), and keeps
// reconnecting forever: drones and controllers outlive NATS restarts.
func connectNATS(url, creds, name string) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		// A connection cut off by the network (no FIN, no RST) is noticed
		// within 15 s and replaced. With the client's default of one ping
		// per 2 minutes, a drone back from a partition kept its old
		// connection, whose server-to-drone side waited out TCP's
		// backed-off retransmission timer: requests to the drone timed out
		// for up to a minute after the heal while its heartbeats got through.
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
	}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		// A URL that does not parse comes back whole in the error.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			ue.URL = redactURL(ue.URL)
		}
		return nil, fmt.Errorf("connect to NATS at %s: %w", redactURL(url), err)
	}
	return nc, nil
}

// redactURL hides the credentials in s, a URL or a comma-separated list of
// them (as nats.Connect takes), for logs and error messages. A password
// becomes "xxxxx" as in url.URL.Redacted; so does a user name that comes
// alone, since NATS reads that as a token ("nats://s3cret@host").
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactOneURL(p)
	}
	return strings.Join(parts, ",")
}

func redactOneURL(s string) string {
	u, err := neturl.Parse(strings.TrimSpace(s))
	if err == nil {
		// libpq (and pgx) also read a password from the query.
		if q := u.Query(); q.Has("password") || q.Has("sslpassword") {
			for _, k := range []string{"password", "sslpassword"} {
				if q.Has(k) {
					q.Set(k, "xxxxx")
				}
			}
			u.RawQuery = q.Encode()
			if u.User == nil {
				return u.String()
			}
		}
	}
	if err == nil && u.User != nil {
		if _, ok := u.User.Password(); !ok {
			u.User = neturl.User("xxxxx")
		}
		return u.Redacted()
	}
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	// Not a URL url.Parse reads, or one without a scheme ("tok@host", which
	// NATS reads as nats://tok@host): hide everything that may be user
	// information, from the scheme (if any) to the last "@".
	start := 0
	if i := strings.Index(s, "://"); i >= 0 && i < at {
		start = i + len("://")
	}
	return s[:start] + "xxxxx" + s[at:]
}
