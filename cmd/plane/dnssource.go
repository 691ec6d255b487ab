package main

import (
	"plane/dns"
	"plane/server/dispatch"
)

// The dispatcher answers the DNS server's questions: backend addresses from
// the store, ACME challenges from its lease.
var _ dns.Source = (*dispatch.Dispatcher)(nil)
