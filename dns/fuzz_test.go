package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// fuzzSource answers for any backend ID: live ones start with "l" (IPv4
// drone) or "v" (IPv6 drone), "e" fails, others are gone. It keeps no
// state, so fuzzing runs in parallel.
type fuzzSource struct{}

func (fuzzSource) BackendIP(_ context.Context, id string) (netip.Addr, bool, error) {
	switch {
	case strings.HasPrefix(id, "l"):
		return liveIP, true, nil
	case strings.HasPrefix(id, "v"):
		return v6IP, true, nil
	case strings.HasPrefix(id, "e"):
		return netip.Addr{}, false, errors.New("fuzz source error")
	case strings.HasPrefix(id, "z"):
		return netip.Addr{}, true, nil // a broken source: live without an IP
	}
	return netip.Addr{}, false, nil
}

func (fuzzSource) Challenges(context.Context) ([]string, error) {
	return []string{acme1, acme2, `back\slash "quoted"`, strings.Repeat("x", 300)}, nil
}

// fuzzSeeds are queries worth mutating, packed.
func fuzzSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	const zone = "plane.example.com."
	msgs := []*mdns.Msg{
		query(zone, mdns.TypeSOA),
		query(zone, mdns.TypeNS),
		query(zone, mdns.TypeANY),
		query(liveID+"."+zone, mdns.TypeA),
		query("V6Backend00001.Plane.Example.Com.", mdns.TypeAAAA),
		query("errbackend0001."+zone, mdns.TypeA),
		query("zerobackend001."+zone, mdns.TypeA),
		query("_acme-challenge."+zone, mdns.TypeTXT),
		query("a.b."+zone, mdns.TypeA),
		query("ns1."+zone, mdns.TypeA),
		query("example.org.", mdns.TypeA),
		withEDNS(query(liveID+"."+zone, mdns.TypeA), 4096, true),
		withEDNS(query("_acme-challenge."+zone, mdns.TypeTXT), 512, false),
		withEDNS(withEDNS(query(zone, mdns.TypeA), 1232, false), 4096, false),
	}
	notify := query(zone, mdns.TypeSOA)
	notify.Opcode = mdns.OpcodeNotify
	two := query(zone, mdns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	none := query(zone, mdns.TypeA)
	none.Question = nil
	msgs = append(msgs, notify, two, none)

	var seeds [][]byte
	for _, m := range msgs {
		b, err := m.Pack()
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzServeDNS feeds arbitrary packets to the handler: it must not panic,
// must answer every query exactly once with a well-formed response that
// fits the client's limits, and must never answer a response. Before
// fuzzing, random bytes go to a listening server's UDP and TCP sockets,
// which must keep answering.
func FuzzServeDNS(f *testing.F) {
	seeds := fuzzSeeds(f)
	for _, b := range seeds {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(make([]byte, 12))

	s := startServer(f, fuzzSource{}, discardLogger())
	sendGarbage(f, s.Addr(), seeds)
	for _, network := range []string{"udp", "tcp"} {
		if r := exchange(f, network, s.Addr(), query("plane.example.com.", mdns.TypeSOA)); r.Rcode != mdns.RcodeSuccess {
			f.Fatalf("after garbage over %s: %v", network, r)
		}
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		req := new(mdns.Msg)
		if err := req.Unpack(data); err != nil {
			return // miekg's server answers these itself, without the handler
		}
		for _, tcp := range []bool{false, true} {
			w := &recorder{tcp: tcp}
			s.ServeDNS(w, req)
			if req.Response {
				if len(w.msgs) != 0 {
					t.Fatalf("answered a response: %v", w.msgs[0])
				}
				continue
			}
			if len(w.msgs) != 1 || w.raw != 0 {
				t.Fatalf("tcp=%v: %d answers, %d raw writes; want one answer", tcp, len(w.msgs), w.raw)
			}
			resp := w.msgs[0]
			if !resp.Response || resp.Id != req.Id || resp.Opcode != req.Opcode {
				t.Fatalf("answer header %v for query %v", resp.MsgHdr, req.MsgHdr)
			}
			packed, err := resp.Pack()
			if err != nil {
				t.Fatalf("answer does not pack: %v\n%v", err, resp)
			}
			if !tcp && len(packed) > udpLimit(req) {
				t.Fatalf("UDP answer of %d bytes, over the client's %d", len(packed), udpLimit(req))
			}
			if len(resp.Answer) > 0 && !resp.Authoritative {
				t.Fatalf("answer without AA: %v", resp)
			}
		}
	})
}

// udpLimit is the largest UDP answer the client of req takes.
func udpLimit(req *mdns.Msg) int {
	if opt := req.IsEdns0(); opt != nil {
		return min(max(int(opt.UDPSize()), mdns.MinMsgSize), maxUDPSize)
	}
	return mdns.MinMsgSize
}

// sendGarbage sends random bytes and damaged seeds to the server's UDP
// socket, and a few framed random messages over TCP. Answers, if any, are
// not read: only the server's survival matters.
func sendGarbage(tb testing.TB, addr string, seeds [][]byte) {
	tb.Helper()
	udp, err := net.Dial("udp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer udp.Close()
	for seed := uint64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0x706c616e65))
		for range 40 {
			b := make([]byte, rng.IntN(600))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			if _, err := udp.Write(b); err != nil {
				tb.Fatal(err)
			}
		}
		for _, s := range seeds {
			b := append([]byte(nil), s...)
			for range 1 + rng.IntN(4) {
				b[rng.IntN(len(b))] = byte(rng.Uint32())
			}
			if _, err := udp.Write(b[:rng.IntN(len(b)+1)]); err != nil {
				tb.Fatal(err)
			}
		}

		tcp, err := net.Dial("tcp", addr)
		if err != nil {
			tb.Fatal(err)
		}
		tcp.SetDeadline(time.Now().Add(10 * time.Second))
		for range 3 {
			b := make([]byte, 2+rng.IntN(300))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			binary.BigEndian.PutUint16(b, uint16(len(b)-2))
			if _, err := tcp.Write(b); err != nil {
				break // the server may hang up on garbage
			}
		}
		tcp.Close()
	}
}
