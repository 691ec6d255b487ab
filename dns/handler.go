package dns

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"

	"plane"
)

// maxUDPSize is the largest answer sent over UDP and the buffer size the
// server advertises: the EDNS0 size of DNS Flag Day 2020, which keeps
// answers clear of IP fragmentation. Larger answers are truncated (TC set)
// and the client retries over TCP.
const maxUDPSize = 1232

// acmeLabel is the label under which ACME DNS-01 challenges live. A wildcard
// certificate *.<zone> and one for <zone> are both validated at
// _acme-challenge.<zone>, so the name may hold several values at once.
const acmeLabel = "_acme-challenge"

// anyCPU is the HINFO CPU string of RFC 8482's answer to ANY queries.
const anyCPU = "RFC8482"

// ServeDNS answers one query. It never answers a response (QR set).
//
// What it answers:
//   - <zone>: SOA, NS (with the addresses of in-zone name servers as
//     additional records), A and AAAA from Config.Apex.
//   - <backend>.<zone>: A (or AAAA, by the address family of the drone's IP)
//     for a live backend; NODATA for other types; NXDOMAIN when the backend
//     is not live or the label is not a backend ID.
//   - _acme-challenge.<zone>: TXT, one record per current challenge value.
//   - in-zone name servers: A and AAAA from Config.NSAddrs.
//   - any other name in the zone: NXDOMAIN. Names outside it: REFUSED.
//
// ANY queries get RFC 8482's minimal answer, one HINFO record "RFC8482" at
// names that exist: it tells the client the name exists without building
// large answers for amplification. Zone transfers are REFUSED.
// Negative answers carry the SOA in the authority section (RFC 2308).
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	if w == nil || r == nil || r.Response {
		return
	}
	m := s.reply(r, isTCP(w))
	if err := w.WriteMsg(m); err != nil {
		// The client went away or sent from a spoofed address; nothing to
		// do about it.
		s.logger.Debug("dns write failed", "err", err)
	}
}

// reply builds the answer to r, sized for the transport.
func (s *Server) reply(r *mdns.Msg, tcp bool) *mdns.Msg {
	m := new(mdns.Msg)
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	if r.Opcode == mdns.OpcodeQuery {
		m.RecursionDesired = r.RecursionDesired
		m.CheckingDisabled = r.CheckingDisabled
	}
	if len(r.Question) == 1 {
		m.Question = []mdns.Question{r.Question[0]}
	}

	opt, opts := requestOPT(r)
	size := mdns.MinMsgSize // RFC 1035's limit for UDP without EDNS0
	if opt != nil {
		size = min(max(int(opt.UDPSize()), mdns.MinMsgSize), maxUDPSize)
	}
	if tcp {
		size = mdns.MaxMsgSize
	}

	switch {
	case opts > 1:
		m.Rcode = mdns.RcodeFormatError // RFC 6891 §6.1.1
	case opt != nil && opt.Version() != 0:
		m.Rcode = mdns.RcodeBadVers // RFC 6891 §6.1.3
	case r.Opcode != mdns.OpcodeQuery:
		m.Rcode = mdns.RcodeNotImplemented
	case len(r.Question) != 1:
		m.Rcode = mdns.RcodeFormatError
	default:
		s.resolve(m, r.Question[0])
	}

	if opt != nil {
		// RFC 3225 §3: the DO bit is copied, though no record is signed.
		m.SetEdns0(maxUDPSize, opt.Do())
	}
	m.Truncate(size)
	return m
}

// requestOPT returns the request's OPT record and how many it holds.
func requestOPT(r *mdns.Msg) (opt *mdns.OPT, n int) {
	for _, rr := range r.Extra {
		if o, ok := rr.(*mdns.OPT); ok {
			opt = o
			n++
		}
	}
	return opt, n
}

// isTCP reports whether w answers over TCP. Unknown writers count as UDP,
// whose size limits are the safe side.
func isTCP(w mdns.ResponseWriter) bool {
	switch a := w.RemoteAddr().(type) {
	case *net.TCPAddr:
		return true
	case *net.UDPAddr, nil:
		return false
	default:
		return strings.HasPrefix(a.Network(), "tcp")
	}
}

// resolve fills m with the answer to q.
func (s *Server) resolve(m *mdns.Msg, q mdns.Question) {
	name := q.Name
	if _, ok := mdns.IsDomainName(name); !ok || !mdns.IsFqdn(name) {
		m.Rcode = mdns.RcodeFormatError
		return
	}
	switch q.Qtype {
	case mdns.TypeOPT, mdns.TypeTSIG, mdns.TypeTKEY:
		m.Rcode = mdns.RcodeFormatError // meta types that never appear as questions
		return
	case mdns.TypeAXFR, mdns.TypeIXFR:
		m.Rcode = mdns.RcodeRefused // no zone transfers
		return
	}
	if q.Qclass != mdns.ClassINET {
		m.Rcode = mdns.RcodeRefused // CHAOS version.bind and the like
		return
	}

	// Labels are compared as written: names unpacked from the wire escape
	// dots and other special bytes inside labels (a\.b), and the zone's name
	// holds none, so comparing the suffix as a string compares labels.
	idx := mdns.Split(name)
	k := len(s.zone.labels)
	if len(idx) < k {
		m.Rcode = mdns.RcodeRefused
		return
	}
	start := idx[len(idx)-k]
	if lower(name[start:]) != s.zone.name {
		m.Rcode = mdns.RcodeRefused
		return
	}
	a := answer{s: s, m: m, q: q, apex: name[start:]}
	depth := len(idx) - k
	fq := lower(name)
	switch {
	case depth == 0:
		a.apexRecords()
	case len(s.zone.hosts[fq]) > 0:
		a.hostRecords(s.zone.hosts[fq])
	case s.zone.enclosers[fq]:
		a.nodata()
	case depth == 1 && fq == acmeLabel+"."+s.zone.name:
		a.challengeRecords()
	case depth == 1:
		a.backendRecords(fq[:len(fq)-len(s.zone.name)-1])
	default:
		a.nxdomain()
	}
}

// answer builds the answer to one question in the zone.
type answer struct {
	s    *Server
	m    *mdns.Msg
	q    mdns.Question
	apex string // the zone's name as the query spells it, for the SOA's owner
}

// records answers with rrs, or NODATA when there are none: the name exists.
func (a *answer) records(rrs ...mdns.RR) {
	if len(rrs) == 0 {
		a.nodata()
		return
	}
	a.m.Authoritative = true
	a.m.Answer = rrs
}

// nodata answers that the name exists but holds no record of the type.
func (a *answer) nodata() {
	a.m.Authoritative = true
	a.m.Ns = []mdns.RR{a.negativeSOA()}
}

// nxdomain answers that the name does not exist.
func (a *answer) nxdomain() {
	a.m.Authoritative = true
	a.m.Rcode = mdns.RcodeNameError
	a.m.Ns = []mdns.RR{a.negativeSOA()}
}

// servfail answers that the records could not be read. err is logged here,
// once; the client learns nothing of it.
func (a *answer) servfail(msg string, err error) {
	a.m.Rcode = mdns.RcodeServerFailure
	level := slog.LevelError
	if a.s.ctx.Err() != nil {
		level = slog.LevelDebug // Close cancelled the call: not a failure of the source
	}
	a.s.logger.Log(a.s.ctx, level, msg, "name", a.q.Name, "type", mdns.Type(a.q.Qtype).String(), "err", err)
}

// negativeSOA is the SOA of negative answers: its TTL is the negative
// caching TTL, the smaller of its TTL and its minimum (RFC 2308 §3).
func (a *answer) negativeSOA() mdns.RR {
	return a.s.soa(a.apex, min(a.s.zone.ttl, a.s.zone.backendTTL))
}

// hinfo is RFC 8482's answer to ANY.
func (a *answer) hinfo(ttl uint32) mdns.RR {
	return &mdns.HINFO{Hdr: header(a.q.Name, mdns.TypeHINFO, ttl), Cpu: anyCPU}
}

func (a *answer) apexRecords() {
	z := a.s.zone
	switch a.q.Qtype {
	case mdns.TypeSOA:
		a.records(a.s.soa(a.q.Name, z.ttl))
	case mdns.TypeNS:
		rrs := make([]mdns.RR, 0, len(z.ns))
		for _, n := range z.ns {
			rrs = append(rrs, &mdns.NS{Hdr: header(a.q.Name, mdns.TypeNS, z.ttl), Ns: n})
		}
		a.records(rrs...)
		for _, n := range z.ns {
			addrs := z.hosts[n]
			if n == z.name {
				addrs = slices.Concat(z.apex4, z.apex6)
			}
			a.m.Extra = append(a.m.Extra, addrRecords(n, mdns.TypeA, addrs, z.ttl)...)
			a.m.Extra = append(a.m.Extra, addrRecords(n, mdns.TypeAAAA, addrs, z.ttl)...)
		}
	case mdns.TypeA:
		a.records(addrRecords(a.q.Name, mdns.TypeA, z.apex4, z.ttl)...)
	case mdns.TypeAAAA:
		a.records(addrRecords(a.q.Name, mdns.TypeAAAA, z.apex6, z.ttl)...)
	case mdns.TypeANY:
		a.records(a.hinfo(z.ttl))
	default:
		a.nodata()
	}
}

// hostRecords answers for an in-zone name server.
func (a *answer) hostRecords(addrs []netip.Addr) {
	switch a.q.Qtype {
	case mdns.TypeA, mdns.TypeAAAA:
		a.records(addrRecords(a.q.Name, a.q.Qtype, addrs, a.s.zone.ttl)...)
	case mdns.TypeANY:
		a.records(a.hinfo(a.s.zone.ttl))
	default:
		a.nodata()
	}
}

func (a *answer) challengeRecords() {
	ttl := a.s.zone.backendTTL // challenges change within minutes
	switch a.q.Qtype {
	case mdns.TypeTXT:
		ctx, cancel := context.WithTimeout(a.s.ctx, sourceTimeout)
		defer cancel()
		values, err := a.s.src.Challenges(ctx)
		if err != nil {
			a.servfail("dns: reading acme challenges", err)
			return
		}
		// An RRset holds no duplicates (RFC 2181 §5); sorting keeps answers
		// the same whatever order the source keeps.
		values = slices.Compact(slices.Sorted(slices.Values(values)))
		rrs := make([]mdns.RR, 0, len(values))
		for _, v := range values {
			rrs = append(rrs, &mdns.TXT{Hdr: header(a.q.Name, mdns.TypeTXT, ttl), Txt: txtStrings(v)})
		}
		a.records(rrs...)
	case mdns.TypeANY:
		a.records(a.hinfo(ttl))
	default:
		a.nodata()
	}
}

// backendRecords answers for <label>.<zone>, label lowercase.
func (a *answer) backendRecords(label string) {
	if plane.ValidateBackendID(label) != nil {
		a.nxdomain() // not a backend ID, so no backend: the Source need not be asked
		return
	}
	ctx, cancel := context.WithTimeout(a.s.ctx, sourceTimeout)
	defer cancel()
	ip, ok, err := a.s.src.BackendIP(ctx, label)
	if err != nil {
		a.servfail("dns: finding a backend's drone", err)
		return
	}
	if !ok {
		a.nxdomain()
		return
	}
	if !ip.IsValid() {
		a.servfail("dns: finding a backend's drone", plane.Errorf(plane.EINTERNAL, "no valid IP for live backend %q", label))
		return
	}
	ttl := a.s.zone.backendTTL
	switch a.q.Qtype {
	case mdns.TypeA, mdns.TypeAAAA:
		a.records(addrRecords(a.q.Name, a.q.Qtype, []netip.Addr{ip}, ttl)...)
	case mdns.TypeANY:
		a.records(a.hinfo(ttl))
	default:
		a.nodata()
	}
}

// soa returns the zone's SOA record with the given owner and TTL. Its
// minimum, the negative caching TTL, is the backend TTL: a backend that
// starts right after a failed lookup must become reachable as fast as a
// terminated one disappears.
func (s *Server) soa(owner string, ttl uint32) *mdns.SOA {
	return &mdns.SOA{
		Hdr:     header(owner, mdns.TypeSOA, ttl),
		Ns:      s.zone.ns[0],
		Mbox:    s.zone.mbox,
		Serial:  s.serial,
		Refresh: soaRefresh,
		Retry:   soaRetry,
		Expire:  soaExpire,
		Minttl:  s.zone.backendTTL,
	}
}

func header(owner string, rrtype uint16, ttl uint32) mdns.RR_Header {
	return mdns.RR_Header{Name: owner, Rrtype: rrtype, Class: mdns.ClassINET, Ttl: ttl}
}

// addrRecords returns A records (rrtype A) or AAAA records (AAAA) for the
// addresses of that family.
func addrRecords(owner string, rrtype uint16, addrs []netip.Addr, ttl uint32) []mdns.RR {
	var rrs []mdns.RR
	for _, ip := range addrs {
		ip = ip.Unmap()
		switch {
		case rrtype == mdns.TypeA && ip.Is4():
			rrs = append(rrs, &mdns.A{Hdr: header(owner, rrtype, ttl), A: net.IP(ip.AsSlice())})
		case rrtype == mdns.TypeAAAA && ip.Is6():
			rrs = append(rrs, &mdns.AAAA{Hdr: header(owner, rrtype, ttl), AAAA: net.IP(ip.AsSlice())})
		}
	}
	return rrs
}

// txtStrings splits a TXT value into character-strings of at most 255 bytes
// in miekg's presentation form, where a backslash starts an escape.
func txtStrings(v string) []string {
	var out []string
	for {
		chunk := v[:min(len(v), 255)]
		v = v[len(chunk):]
		out = append(out, strings.ReplaceAll(chunk, `\`, `\\`))
		if v == "" {
			return out
		}
	}
}
