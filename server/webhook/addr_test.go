package webhook_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"plane/server/webhook"
)

func TestCheckAddr(t *testing.T) {
	tests := []struct {
		addr string
		why  string // in the refusal; "" for allowed
	}{
		{"127.0.0.1", "loopback"},
		{"127.8.9.10", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"169.254.169.254", "link-local"}, // cloud metadata
		{"0.0.0.0", "unspecified"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"224.0.0.1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"::1", "loopback"},
		{"::", "unspecified"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"fd00::1", "unique local"},
		{"ff02::1", "multicast"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:10.0.0.1", "private"},
		{"::127.0.0.1", "IPv4-compatible"},
		{"64:ff9b::a00:1", "embeds 10.0.0.1"},
		{"2002:a9fe:a9fe::1", "embeds 169.254.169.254"},
		{"93.184.215.14", ""},
		{"1.1.1.1", ""},
		{"172.32.0.1", ""},
		{"2606:4700:4700::1111", ""},
		{"64:ff9b::5db8:d70e", ""}, // NAT64 of a public address
		{"::ffff:93.184.215.14", ""},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := webhook.CheckAddr(netip.MustParseAddr(tt.addr))
			switch {
			case tt.why == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.why != "" && (err == nil || !strings.Contains(err.Error(), tt.why)):
				t.Fatalf("error %v, want one saying %q", err, tt.why)
			}
			var re *webhook.RefusedError
			if err != nil && !errors.As(err, &re) {
				t.Fatalf("%T is no *RefusedError", err)
			}
		})
	}
	if err := webhook.CheckAddr(netip.Addr{}); err == nil {
		t.Error("the zero address is allowed")
	}
}
