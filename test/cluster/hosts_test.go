package cluster_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A host is a Linux network namespace joined to the root namespace by a
// veth pair of its own, on a /30 of its own: the root end is the host's
// gateway, and the root namespace forwards between hosts. Cutting a host
// off sets the root end down, which leaves every host unable to reach it
// and it unable to reach any of them.
//
// A drone host has a second pair, its docker link: Docker runs in the root
// namespace and publishes the drone's backends on the link's root end
// (the drone's --publish-ip). It stands for the machine's own path to its
// own Docker, which a network partition does not cut: so a cut drone still
// serves the users that reach its proxy.
type host struct {
	net    *network
	name   string // "n1", "ctrl", "d1"
	ns     string // the namespace
	ip     netip.Addr
	gw     netip.Addr // the root end of its link
	rootIf string
	nsIf   string
	// dockerIP is the root end of a drone host's docker link: where Docker
	// publishes its backends' ports. Invalid for other hosts.
	dockerIP     netip.Addr
	dockerRootIf string
}

// network is one cluster's hosts: namespaces, links, the forwarding rule
// and IP forwarding, all removed when the test ends.
type network struct {
	t      *T
	prefix string // of every namespace and interface name
	octet  int    // the hosts are in 10.213.<octet>.0/24
	hosts  []*host
	logDir string
}

// netSeq numbers the networks of this test process, for unique names.
var netSeq atomic.Int32

// takenOctets are the /24s of this process's networks, which the machine
// may not show yet when another picks one.
var (
	subnetMu    sync.Mutex
	takenOctets = map[int]bool{}
)

// newNetwork prepares the root namespace for a cluster's hosts: IP
// forwarding on, and a rule that lets the hosts' traffic through the
// FORWARD chain, whose policy Docker sets to DROP. It skips the test when
// not run as root.
func newNetwork(t *T) *network {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: network namespaces need root (run as root, or with sudo -E)")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install it (apt-get install -y iproute2 iptables)", tool)
		}
	}
	sweepStale(t)
	n := &network{t: t, logDir: t.TempDir()}
	// Names: "pl" + pid + a letter per network, at most 10 characters, so
	// that an interface name (prefix + host index + 2 letters) fits in 15.
	n.prefix = fmt.Sprintf("pl%d%c", os.Getpid()%10_000_000, 'a'+rune(netSeq.Add(1)-1)%26)

	subnetMu.Lock()
	n.octet = freeOctet(t)
	takenOctets[n.octet] = true
	subnetMu.Unlock()
	t.Cleanup(func() {
		subnetMu.Lock()
		delete(takenOctets, n.octet)
		subnetMu.Unlock()
	})

	old, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		t.Fatalf("turn IP forwarding on: %v", err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", old, 0o644); err != nil {
			t.Errorf("restore ip_forward: %v", err)
		}
	})
	rule := []string{"FORWARD", "-i", n.prefix + "+", "-o", n.prefix + "+", "-j", "ACCEPT"}
	n.must("iptables", append([]string{"-w", "-I"}, rule...)...)
	t.Cleanup(func() { n.try("iptables", append([]string{"-w", "-D"}, rule...)...) })
	return n
}

// staleOnce sweeps, once per process, what runs of this suite that died
// before their cleanups (a panic, a go test -timeout) left behind.
var (
	staleOnce     sync.Once
	stalePrefixes []string
)

// staleName matches this suite's namespaces, interfaces and FORWARD rules,
// and captures the prefix and the pid of the run that made them.
var (
	staleNS   = regexp.MustCompile(`^(pl(\d+)[a-z])-(n\d|ctrl|d\d)$`)
	staleIf   = regexp.MustCompile(`^(pl(\d+)[a-z])\d+[nd]r$`)
	staleRule = regexp.MustCompile(`^-A (FORWARD -i (pl(\d+)[a-z])\+ -o pl\d+[a-z]\+ -j ACCEPT)$`)
)

// sweepStale removes the namespaces, links and FORWARD rules of earlier
// runs whose process is gone, and returns their prefixes (their drones'
// containers carry them). A live process's are left alone.
func sweepStale(t *T) []string {
	staleOnce.Do(func() {
		dead := func(pid string) bool {
			n, err := strconv.Atoi(pid)
			return err == nil && n != os.Getpid() && syscall.Kill(n, 0) == syscall.ESRCH
		}
		seen := map[string]bool{}
		note := func(prefix string) {
			if !seen[prefix] {
				seen[prefix] = true
				stalePrefixes = append(stalePrefixes, prefix)
			}
		}
		if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				f := strings.Fields(line)
				if len(f) < 2 {
					continue
				}
				name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
				if m := staleIf.FindStringSubmatch(name); m != nil && dead(m[2]) {
					note(m[1])
					_ = exec.Command("ip", "link", "del", name).Run()
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				f := strings.Fields(line)
				if len(f) == 0 {
					continue
				}
				if m := staleNS.FindStringSubmatch(f[0]); m != nil && dead(m[2]) {
					note(m[1])
					_ = exec.Command("ip", "netns", "del", f[0]).Run()
				}
			}
		}
		if out, err := exec.Command("iptables", "-w", "-S", "FORWARD").Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if m := staleRule.FindStringSubmatch(strings.TrimSpace(line)); m != nil && dead(m[3]) {
					note(m[2])
					_ = exec.Command("iptables", append([]string{"-w", "-D"}, strings.Fields(m[1])...)...).Run()
				}
			}
		}
		if len(stalePrefixes) > 0 {
			t.Logf("removed what dead runs of this suite left behind: %s", strings.Join(stalePrefixes, ", "))
		}
	})
	return stalePrefixes
}

// freeOctet picks a /24 of 10.213.0.0/16 that no address or route of the
// root namespace uses, nor another network of this process; under
// subnetMu.
func freeOctet(t *T) int {
	out, err := exec.Command("sh", "-c", "ip -4 -o addr show; ip -4 route show table all").CombinedOutput()
	if err != nil {
		t.Fatalf("list addresses: %v\n%s", err, out)
	}
	start := os.Getpid() % 200
	for i := range 250 {
		o := (start + i) % 250
		if !takenOctets[o] && !bytes.Contains(out, fmt.Appendf(nil, "10.213.%d.", o)) {
			return o
		}
	}
	t.Fatal("no free /24 in 10.213.0.0/16")
	return 0
}

// addr is the address at offset off in the network's /24.
func (n *network) addr(off int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 213, byte(n.octet), byte(off)})
}

// addHost makes a namespace with its link, and with a docker link when
// docker is set. The first host skips the test if namespaces cannot be
// made here.
func (n *network) addHost(name string, docker bool) *host {
	n.t.Helper()
	i := len(n.hosts)
	h := &host{
		net: n, name: name, ns: n.prefix + "-" + name,
		gw: n.addr(4*i + 1), ip: n.addr(4*i + 2),
		rootIf: fmt.Sprintf("%s%dnr", n.prefix, i), nsIf: fmt.Sprintf("%s%dnh", n.prefix, i),
	}
	if out, err := exec.Command("ip", "netns", "add", h.ns).CombinedOutput(); err != nil {
		if i == 0 {
			n.t.Skipf("skipping: cannot make a network namespace here (ip netns add: %v: %s)", err, bytes.TrimSpace(out))
		}
		n.t.Fatalf("ip netns add %s: %v: %s", h.ns, err, out)
	}
	n.t.Cleanup(func() {
		// Deleting a root end deletes its pair at once; deleting the
		// namespace would too, but later, once the kernel lets it go.
		for _, ifc := range []string{h.rootIf, h.dockerRootIf} {
			if _, err := os.Stat("/sys/class/net/" + ifc); ifc != "" && err == nil {
				n.try("ip", "link", "del", ifc)
			}
		}
		n.try("ip", "netns", "del", h.ns)
	})
	n.hosts = append(n.hosts, h)
	n.must("ip", "-n", h.ns, "link", "set", "lo", "up")
	n.link(h, h.rootIf, h.nsIf, h.gw, h.ip)
	n.must("ip", "-n", h.ns, "route", "add", "default", "via", h.gw.String())
	if docker {
		h.dockerIP = n.addr(128 + 4*i + 1)
		h.dockerRootIf = fmt.Sprintf("%s%ddr", n.prefix, i)
		n.link(h, h.dockerRootIf, fmt.Sprintf("%s%ddh", n.prefix, i), h.dockerIP, n.addr(128+4*i+2))
	}
	return h
}

// link makes a veth pair between the root namespace (rootIP on rootIf) and
// h's namespace (nsIP on nsIf), on one /30.
func (n *network) link(h *host, rootIf, nsIf string, rootIP, nsIP netip.Addr) {
	n.must("ip", "link", "add", rootIf, "type", "veth", "peer", "name", nsIf, "netns", h.ns)
	n.must("ip", "addr", "add", rootIP.String()+"/30", "dev", rootIf)
	n.must("ip", "link", "set", rootIf, "up")
	n.must("ip", "-n", h.ns, "addr", "add", nsIP.String()+"/30", "dev", nsIf)
	n.must("ip", "-n", h.ns, "link", "set", nsIf, "up")
}

// cut takes h off the network: nothing reaches it, it reaches nothing (but
// its own Docker).
func (n *network) cut(h *host) {
	n.t.Helper()
	n.must("ip", "link", "set", h.rootIf, "down")
	n.t.Logf("cut %s off the network", h.name)
}

// heal puts h back on the network and returns once its link is up.
func (n *network) heal(h *host) {
	n.t.Helper()
	n.must("ip", "link", "set", h.rootIf, "up")
	// Both ends of a pair set up come back with their routes; re-adding
	// the default route covers a kernel that dropped it with the carrier.
	n.must("ip", "-n", h.ns, "route", "replace", "default", "via", h.gw.String())
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile("/sys/class/net/" + h.rootIf + "/operstate")
		if err == nil && strings.TrimSpace(string(b)) == "up" {
			break
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("link %s of %s is not up 10s after heal: %s", h.rootIf, h.name, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.t.Logf("healed %s", h.name)
}

func (n *network) must(name string, args ...string) {
	n.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		n.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// try runs a cleanup command: a failure is reported, not fatal.
func (n *network) try(name string, args ...string) {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		n.t.Errorf("cleanup: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// proc is a process started in a host's namespace.
type proc struct {
	t    *T
	name string
	cmd  *exec.Cmd
	log  string // its stdout and stderr
	done chan struct{}
	err  error // Wait's, once done is closed
}

// run starts args in h's namespace with `ip netns exec`, which execs the
// command: cmd.Process is the program itself, for kill -9. Its output goes
// to a file that is printed if the test fails; it is stopped when the test
// ends.
func (n *network) run(h *host, name string, env []string, args ...string) *proc {
	n.t.Helper()
	p := &proc{t: n.t, name: name, log: filepath.Join(n.logDir, name+".log"), done: make(chan struct{})}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", h.ns}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.Env = append(os.Environ(), env...)
	// If the test binary dies, so do its processes.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(f, "--- %s: %s\n", time.Now().Format(time.StampMilli), strings.Join(p.cmd.Args, " "))
	if err := p.cmd.Start(); err != nil {
		n.t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	n.t.Cleanup(func() {
		p.stop()
		if n.t.Failed() {
			n.t.Logf("%s", p.tail(64<<10))
		}
		p.keep()
	})
	return p
}

// logDirEnv names a folder to keep every process's output in, by test,
// failed or not: for reading what a passing scenario did.
const logDirEnv = "PLANE_CLUSTER_LOG_DIR"

func (p *proc) keep() {
	dir := os.Getenv(logDirEnv)
	if dir == "" {
		return
	}
	dir = filepath.Join(dir, strings.ReplaceAll(p.t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Errorf("%s: %v", logDirEnv, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(p.log)), []byte(p.output()), 0o644); err != nil {
		p.t.Errorf("%s: %v", logDirEnv, err)
	}
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill9 sends SIGKILL and waits for the end.
func (p *proc) kill9() {
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM, then SIGKILL after 15 s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.t.Logf("%s: no exit 15s after SIGTERM; SIGKILL", p.name)
		p.kill9()
	}
}

// output is everything the process wrote so far.
func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// tail is the end of the output, at most n bytes, headed by the name.
func (p *proc) tail(n int) string {
	out := p.output()
	if len(out) > n {
		out = "[…]" + out[len(out)-n:]
	}
	return fmt.Sprintf("=== %s (%s) ===\n%s", p.name, p.log, out)
}
