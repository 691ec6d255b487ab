package dns

import (
	"errors"
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

const (
	acme1 = "wildcard-challenge-value-0123456789abcdefghi" // for *.<zone>
	acme2 = "apex-challenge-value-0123456789abcdefghijklm" // for <zone>, at the same time
)

// TestServeDNS sends real queries over real sockets and compares the answers
// with golden files. Every case starts from the fake's default state: liveID
// and v6ID live, no challenge.
func TestServeDNS(t *testing.T) {
	const zone = "plane.example.com."
	tests := []struct {
		name    string // golden file
		net     string // "udp" (default) or "tcp"
		req     *mdns.Msg
		setup   func(f *fakeSource)
		rcode   int
		aa      bool // authoritative
		answers int  // records in the answer section
		tc      bool
		calls   []string // Source calls, when checked
	}{
		// Backends.
		{name: "a-live", req: query(liveID+"."+zone, mdns.TypeA), aa: true, answers: 1, calls: []string{liveID}},
		{name: "a-live-tcp", net: "tcp", req: query(liveID+"."+zone, mdns.TypeA), aa: true, answers: 1},
		{name: "a-unknown-nxdomain", req: query(deadID+"."+zone, mdns.TypeA), rcode: mdns.RcodeNameError, aa: true},
		{name: "a-not-a-backend-id", req: query("not-a-backend."+zone, mdns.TypeA), rcode: mdns.RcodeNameError, aa: true, calls: []string{}},
		{name: "aaaa-live-nodata", req: query(liveID+"."+zone, mdns.TypeAAAA), aa: true},
		{name: "txt-live-nodata", req: query(liveID+"."+zone, mdns.TypeTXT), aa: true},
		{name: "aaaa-v6-live", req: query(v6ID+"."+zone, mdns.TypeAAAA), aa: true, answers: 1},
		{name: "a-v6-live-nodata", req: query(v6ID+"."+zone, mdns.TypeA), aa: true},
		{name: "deep-under-backend-nxdomain", req: query("www."+liveID+"."+zone, mdns.TypeA), rcode: mdns.RcodeNameError, aa: true, calls: []string{}},
		{name: "deep-nxdomain", req: query("a.b."+zone, mdns.TypeA), rcode: mdns.RcodeNameError, aa: true},
		{name: "source-error-servfail", req: query(liveID+"."+zone, mdns.TypeA), rcode: mdns.RcodeServerFailure,
			setup: func(f *fakeSource) { f.err = errors.New("store is down") }},

		// ACME challenges.
		{name: "txt-challenge-two", req: query("_acme-challenge."+zone, mdns.TypeTXT), aa: true, answers: 2,
			setup: func(f *fakeSource) { f.challenges = []string{acme1, acme2, acme1} }, calls: []string{"challenges"}},
		{name: "txt-challenge-none-nodata", req: query("_acme-challenge."+zone, mdns.TypeTXT), aa: true},
		{name: "a-challenge-nodata", req: query("_acme-challenge."+zone, mdns.TypeA), aa: true, calls: []string{},
			setup: func(f *fakeSource) { f.challenges = []string{acme1} }},
		{name: "txt-challenge-servfail", req: query("_acme-challenge."+zone, mdns.TypeTXT), rcode: mdns.RcodeServerFailure,
			setup: func(f *fakeSource) { f.err = errors.New("lease store is down") }},

		// The apex and the name servers.
		{name: "apex-soa", req: query(zone, mdns.TypeSOA), aa: true, answers: 1},
		{name: "apex-ns", req: query(zone, mdns.TypeNS), aa: true, answers: 2},
		{name: "apex-a", req: query(zone, mdns.TypeA), aa: true, answers: 1},
		{name: "apex-aaaa", req: query(zone, mdns.TypeAAAA), aa: true, answers: 1},
		{name: "apex-mx-nodata", req: query(zone, mdns.TypeMX), aa: true},
		{name: "ns-host-a", req: query("ns1."+zone, mdns.TypeA), aa: true, answers: 1, calls: []string{}},
		{name: "ns-host-aaaa", req: query("ns1."+zone, mdns.TypeAAAA), aa: true, answers: 1},

		// Names are case-insensitive; answers keep the query's spelling.
		{name: "mixed-case-backend", req: query("LiveBackend001.PLANE.Example.cOm.", mdns.TypeA), aa: true, answers: 1, calls: []string{liveID}},
		{name: "mixed-case-nxdomain", req: query("DeadBackend001.pLaNe.EXAMPLE.com.", mdns.TypeA), rcode: mdns.RcodeNameError, aa: true},
		{name: "mixed-case-challenge", req: query("_ACME-Challenge.Plane.Example.Com.", mdns.TypeTXT), aa: true, answers: 2,
			setup: func(f *fakeSource) { f.challenges = []string{acme2, acme1} }},
		{name: "mixed-case-apex-ns", req: query("PLANE.EXAMPLE.COM.", mdns.TypeNS), aa: true, answers: 2},

		// Outside the zone, or not a question it answers.
		{name: "refused-out-of-zone", req: query("example.org.", mdns.TypeA), rcode: mdns.RcodeRefused, calls: []string{}},
		{name: "refused-parent-zone", req: query("example.com.", mdns.TypeSOA), rcode: mdns.RcodeRefused},
		{name: "refused-lookalike", req: query("evilplane.example.com.", mdns.TypeA), rcode: mdns.RcodeRefused},
		{name: "refused-escaped-dot", req: query(`x\.plane.example.com.`, mdns.TypeA), rcode: mdns.RcodeRefused},
		{name: "refused-root", req: query(".", mdns.TypeNS), rcode: mdns.RcodeRefused},
		{name: "refused-chaos", req: func() *mdns.Msg {
			m := query(zone, mdns.TypeTXT)
			m.Question[0].Qclass = mdns.ClassCHAOS
			return m
		}(), rcode: mdns.RcodeRefused},
		{name: "refused-axfr", net: "tcp", req: query(zone, mdns.TypeAXFR), rcode: mdns.RcodeRefused},
		{name: "any-apex-rfc8482", req: query(zone, mdns.TypeANY), aa: true, answers: 1},
		{name: "any-live-rfc8482", req: query(liveID+"."+zone, mdns.TypeANY), aa: true, answers: 1},
		{name: "any-unknown-nxdomain", req: query(deadID+"."+zone, mdns.TypeANY), rcode: mdns.RcodeNameError, aa: true},

		// Malformed queries.
		{name: "formerr-no-question", req: func() *mdns.Msg {
			m := query(zone, mdns.TypeA)
			m.Question = nil
			return m
		}(), rcode: mdns.RcodeFormatError},
		{name: "formerr-two-questions", req: func() *mdns.Msg {
			m := query(zone, mdns.TypeA)
			m.Question = append(m.Question, mdns.Question{Name: liveID + "." + zone, Qtype: mdns.TypeA, Qclass: mdns.ClassINET})
			return m
		}(), rcode: mdns.RcodeFormatError, calls: []string{}},
		{name: "formerr-two-opts", req: withEDNS(withEDNS(query(zone, mdns.TypeA), 1232, false), 4096, false), rcode: mdns.RcodeFormatError},
		{name: "notimp-update", req: func() *mdns.Msg {
			m := query(zone, mdns.TypeSOA)
			m.Opcode = mdns.OpcodeUpdate
			return m
		}(), rcode: mdns.RcodeNotImplemented},
		{name: "notimp-status", req: func() *mdns.Msg {
			m := query(zone, mdns.TypeSOA)
			m.Opcode = mdns.OpcodeStatus
			return m
		}(), rcode: mdns.RcodeNotImplemented},

		// EDNS0.
		{name: "edns-echoed", req: withEDNS(query(liveID+"."+zone, mdns.TypeA), 4096, false), aa: true, answers: 1},
		{name: "edns-do-echoed", req: withEDNS(query(zone, mdns.TypeSOA), 1232, true), aa: true, answers: 1},
		// miekg prints rcode 16 as BADSIG: BADVERS and BADSIG share the number.
		{name: "edns-badvers", req: func() *mdns.Msg {
			m := withEDNS(query(zone, mdns.TypeSOA), 1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}(), rcode: mdns.RcodeBadVers},
		{name: "edns-nxdomain", req: withEDNS(query(deadID+"."+zone, mdns.TypeA), 1232, false), rcode: mdns.RcodeNameError, aa: true},

		// Truncation: 40 challenge values need about 2.4 kB.
		{name: "udp-edns-truncated", req: withEDNS(query("_acme-challenge."+zone, mdns.TypeTXT), 1232, false), aa: true, answers: 20, tc: true,
			setup: func(f *fakeSource) { f.challenges = manyChallenges(40) }},
		{name: "udp-edns4096-truncated", req: withEDNS(query("_acme-challenge."+zone, mdns.TypeTXT), 4096, false), aa: true, answers: 20, tc: true,
			setup: func(f *fakeSource) { f.challenges = manyChallenges(40) }},
		{name: "udp-noedns-truncated", req: query("_acme-challenge."+zone, mdns.TypeTXT), aa: true, answers: 8, tc: true,
			setup: func(f *fakeSource) { f.challenges = manyChallenges(40) }},
		{name: "tcp-full", net: "tcp", req: withEDNS(query("_acme-challenge."+zone, mdns.TypeTXT), 1232, false), aa: true, answers: 40,
			setup: func(f *fakeSource) { f.challenges = manyChallenges(40) }},
	}

	src := newFakeSource()
	s := startServer(t, src, discardLogger())
	seen := map[string]bool{}
	for _, tt := range tests {
		if seen[tt.name] {
			t.Fatalf("two cases named %q", tt.name)
		}
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			src.set(func(f *fakeSource) {
				f.backends, f.challenges, f.err, f.calls = newFakeSource().backends, nil, nil, nil
				if tt.setup != nil {
					tt.setup(f)
				}
			})
			network := tt.net
			if network == "" {
				network = "udp"
			}
			r := exchange(t, network, s.Addr(), tt.req.Copy())

			if r.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tt.rcode])
			}
			if r.Authoritative != tt.aa {
				t.Errorf("aa = %v, want %v", r.Authoritative, tt.aa)
			}
			if len(r.Answer) != tt.answers {
				t.Errorf("%d answers, want %d", len(r.Answer), tt.answers)
			}
			if r.Truncated != tt.tc {
				t.Errorf("tc = %v, want %v", r.Truncated, tt.tc)
			}
			if !r.Response || r.Id != tt.req.Id {
				t.Errorf("qr = %v, id %d for query id %d", r.Response, r.Id, tt.req.Id)
			}
			if len(tt.req.Question) == 1 && (len(r.Question) != 1 || r.Question[0] != tt.req.Question[0]) {
				t.Errorf("question %v, want the query's %v echoed", r.Question, tt.req.Question)
			}
			// NXDOMAIN and NODATA carry the SOA (RFC 2308).
			if r.Rcode == mdns.RcodeNameError || r.Rcode == mdns.RcodeSuccess && len(r.Answer) == 0 && !r.Truncated {
				if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != mdns.TypeSOA {
					t.Errorf("negative answer without the SOA in authority: %v", r.Ns)
				}
			}
			// The OPT is echoed when the query had one, and only then.
			if reqOPT, respOPT := tt.req.IsEdns0(), r.IsEdns0(); (reqOPT != nil) != (respOPT != nil) {
				t.Errorf("query OPT %v, answer OPT %v", reqOPT, respOPT)
			} else if respOPT != nil && (respOPT.UDPSize() != maxUDPSize || respOPT.Do() != reqOPT.Do()) {
				t.Errorf("answer OPT %v, want udp %d and the query's DO bit", respOPT, maxUDPSize)
			}
			if network == "udp" {
				r := r.Copy()
				r.Compress = true // as the server sends it
				packed, err := r.Pack()
				if err != nil {
					t.Fatal(err)
				}
				limit := mdns.MinMsgSize
				if tt.req.IsEdns0() != nil {
					limit = maxUDPSize
				}
				if len(packed) > limit {
					t.Errorf("UDP answer of %d bytes, over %d", len(packed), limit)
				}
			}
			if calls := src.takeCalls(); tt.calls != nil && !slices.Equal(calls, tt.calls) {
				t.Errorf("source calls %q, want %q", calls, tt.calls)
			}
			checkGolden(t, tt.name, goldenText(r))
		})
	}
}

// TestBackendTerminates shows a backend's name resolving while it is live and
// NXDOMAIN once it has terminated, over both transports.
func TestBackendTerminates(t *testing.T) {
	src := newFakeSource()
	s := startServer(t, src, discardLogger())
	name := liveID + ".plane.example.com."
	for _, network := range []string{"udp", "tcp"} {
		r := exchange(t, network, s.Addr(), query(name, mdns.TypeA))
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != liveIP.String() {
			t.Fatalf("live backend over %s: %v", network, r)
		}
		if ttl := r.Answer[0].Header().Ttl; ttl != DefaultBackendTTL {
			t.Errorf("backend TTL %d, want %d", ttl, DefaultBackendTTL)
		}
		checkGolden(t, "lifecycle-live", goldenText(r))
	}

	src.set(func(f *fakeSource) { delete(f.backends, liveID) })
	for _, network := range []string{"udp", "tcp"} {
		r := exchange(t, network, s.Addr(), query(name, mdns.TypeA))
		if r.Rcode != mdns.RcodeNameError || len(r.Answer) != 0 {
			t.Fatalf("terminated backend over %s: %v", network, r)
		}
		checkGolden(t, "lifecycle-terminated", goldenText(r))
	}
}

// TestSourceErrorLoggedOnce checks that a failing Source gives SERVFAIL,
// one log line per failed query, and no detail to the client.
func TestSourceErrorLoggedOnce(t *testing.T) {
	src := newFakeSource()
	src.err = errors.New("database is locked")
	var logs logBuffer
	s := newTestServer(t, src, slogText(&logs))

	for i, name := range []string{liveID + ".plane.example.com.", "_acme-challenge.plane.example.com."} {
		qtype := []uint16{mdns.TypeA, mdns.TypeTXT}[i]
		w := &recorder{}
		s.ServeDNS(w, query(name, qtype))
		if len(w.msgs) != 1 || w.msgs[0].Rcode != mdns.RcodeServerFailure {
			t.Fatalf("%s: answers %v, want one SERVFAIL", name, w.msgs)
		}
		if strings.Contains(w.msgs[0].String(), "locked") {
			t.Errorf("the answer leaks the error: %v", w.msgs[0])
		}
		if n := strings.Count(logs.String(), "database is locked"); n != i+1 {
			t.Errorf("after %d failed queries the error was logged %d times:\n%s", i+1, n, logs.String())
		}
	}
}

// TestServeDNSIgnoresResponses checks that the handler never answers a
// response, so that two servers cannot bounce packets between them.
func TestServeDNSIgnoresResponses(t *testing.T) {
	s := newTestServer(t, newFakeSource(), discardLogger())
	m := query("plane.example.com.", mdns.TypeSOA)
	m.Response = true
	w := &recorder{}
	s.ServeDNS(w, m)
	s.ServeDNS(w, nil)
	if len(w.msgs) != 0 || w.raw != 0 {
		t.Errorf("answered a response: %v", w.msgs)
	}
}

// TestServeDNSDirect checks the handler without sockets: a writer whose
// transport is unknown gets UDP's limits, and a name that is not fully
// qualified (only possible when called directly) is a FORMERR.
func TestServeDNSDirect(t *testing.T) {
	src := newFakeSource()
	src.challenges = manyChallenges(40)
	s := newTestServer(t, src, discardLogger())

	w := &recorder{}
	s.ServeDNS(w, query("_acme-challenge.plane.example.com.", mdns.TypeTXT))
	s.ServeDNS(w, query("plane.example.com", mdns.TypeSOA))
	if len(w.msgs) != 2 {
		t.Fatalf("%d answers, want 2", len(w.msgs))
	}
	if !w.msgs[0].Truncated {
		t.Errorf("the answer was not truncated to UDP's 512 bytes")
	}
	if w.msgs[1].Rcode != mdns.RcodeFormatError {
		t.Errorf("rcode %s for a relative name, want FORMERR", mdns.RcodeToString[w.msgs[1].Rcode])
	}

	w = &recorder{tcp: true}
	s.ServeDNS(w, query("_acme-challenge.plane.example.com.", mdns.TypeTXT))
	if len(w.msgs) != 1 || w.msgs[0].Truncated || len(w.msgs[0].Answer) != 40 {
		t.Errorf("over TCP: %d answers, truncated %v; want 40, not truncated", len(w.msgs[0].Answer), w.msgs[0].Truncated)
	}
}

func TestTxtStrings(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		in   string
		want []string
	}{
		{"", []string{""}},
		{"abc", []string{"abc"}},
		{`a\b`, []string{`a\\b`}},
		{long, []string{long[:255], long[255:]}},
	}
	for _, tt := range tests {
		got := txtStrings(tt.in)
		if !slices.Equal(got, tt.want) {
			t.Errorf("txtStrings(%.20q…) = %q, want %q", tt.in, got, tt.want)
		}
		// What the client receives is the value itself.
		rr := &mdns.TXT{Hdr: header("x.", mdns.TypeTXT, 5), Txt: got}
		buf := make([]byte, 1024)
		n, err := mdns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		back, _, err := mdns.UnpackRR(buf[:n], 0)
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		for _, s := range back.(*mdns.TXT).Txt {
			sb.WriteString(strings.ReplaceAll(s, `\\`, `\`))
		}
		if sb.String() != tt.in {
			t.Errorf("round trip of %.20q… gave %.20q…", tt.in, sb.String())
		}
	}
}
