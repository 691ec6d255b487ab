// Package pgtest gives tests a real, empty Postgres database each.
//
// The server comes from PLANE_TEST_POSTGRES, a libpq URL
// (postgres://user@host:port/db?sslmode=disable) to a role that may create
// databases; CI sets it. Without it, the first DSN of a test process starts
// a throw-away cluster of its own with Debian's initdb and postgres (package
// postgresql), which Main stops when the package's tests are done.
//
// Tests that all want the same schema can copy it from a Template, which
// makes it once per test process, rather than each build it again.
//
// A package that calls DSN (or a Template's) must run its tests through
// Main (or Run) in its TestMain, with or without the environment variable,
// so that it behaves the same in CI and on a developer's machine:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvVar names the environment variable with the admin server's URL.
const EnvVar = "PLANE_TEST_POSTGRES"

// Deadlines for the cluster's start and for each admin statement: generous,
// since CI machines are slow when every package's tests run at once, but
// finite, so a stuck server fails a test instead of hanging it to go test's
// timeout.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 15 * time.Second
	adminTimeout = 30 * time.Second
)

var (
	mu sync.Mutex
	// inMain is set by Run: DSN refuses to start a cluster nobody would
	// stop.
	inMain bool
	// admin is the admin URL once known; adminErr why there is none. Both
	// are decided once per process: when Postgres cannot be had, every test
	// after the first skips at once with the same reason.
	admin    *url.URL
	adminErr error
	decided  bool
	// adminMissing tells a missing Postgres (skip, except in CI) from a broken
	// one (fail).
	adminMissing bool
	started      *cluster
	// createOptions end every CREATE DATABASE (fileCopy or none).
	createOptions string
)

// fileCopy makes CREATE DATABASE copy its template's files whole (Postgres
// 15 and later) instead of page by page through the write-ahead log, the
// default: less of the CPU that tests running at once share. Our own
// cluster uses it when in memory, where the checkpoints it takes cost next
// to nothing; on a disk they cost more than it saves.
const fileCopy = " STRATEGY FILE_COPY"

// Main is a package's TestMain: it runs the tests, stops the cluster DSN
// may have started, and exits with the tests' status.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit, for a TestMain that does more around the
// tests. It returns m.Run's exit code (1 when the cluster did not stop
// cleanly and the tests had passed).
func Run(m *testing.M) int {
	mu.Lock()
	inMain = true
	mu.Unlock()

	code := m.Run()

	mu.Lock()
	c := started
	started = nil
	base, made := admin, templates
	templates = nil
	mu.Unlock()
	if c == nil {
		// The server is PLANE_TEST_POSTGRES's, and outlives the
		// process: the templates go as each test's database does.
		// (Those of our own cluster go with it.)
		for _, name := range made {
			if err := exec1(base, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
				fmt.Fprintf(os.Stderr, "pgtest: drop template %s: %v\n", name, err)
				if code == 0 {
					code = 1
				}
			}
		}
	}
	if c != nil {
		if err := c.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// DSN returns a libpq URL to a new, empty database of its own, dropped when
// tb's test ends. When EnvVar is unset and no cluster can be started here
// (Postgres not installed…), it skips the test, or fails it when CI=true,
// since CI must run these tests; when EnvVar is set, a server that does not
// answer fails the test.
func DSN(tb testing.TB) string {
	tb.Helper()
	return create(tb, adminURL(tb), "")
}

// adminURL returns the admin server's URL, or skips or fails tb as DSN
// tells.
func adminURL(tb testing.TB) *url.URL {
	tb.Helper()
	mu.Lock()
	ok := inMain
	mu.Unlock()
	if !ok {
		tb.Fatalf("pgtest: DSN needs the package's TestMain to be pgtest.Main (or pgtest.Run), which stops the cluster it may start")
	}

	base, missing, err := server()
	if err != nil {
		if !missing {
			tb.Fatalf("pgtest: %v", err)
		}
		msg := fmt.Sprintf("pgtest: no Postgres for this test: %v; set %s to a postgres:// URL of a role that may create databases, or install Debian's postgresql (apt-get install postgresql)", err, EnvVar)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return base
}

// create makes a new database on the admin server base, a copy of template
// (Postgres's template1 when ""), dropped when tb's test ends, and returns
// its URL.
func create(tb testing.TB, base *url.URL, template string) string {
	tb.Helper()
	name, err := dbName()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	// The name comes from dbName alone (lowercase letters, digits and
	// underscores), so quoting it as an identifier is enough.
	stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		stmt += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	stmt += createOptions
	if err := exec1(base, stmt); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		// FORCE ends the connections a test left open (a pool not
		// closed, a failed test's transaction) instead of failing the
		// drop; it needs Postgres 13 or later.
		if err := exec1(base, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})

	return dbURL(base, name)
}

// dbURL is base, the admin server's URL, naming database name instead.
func dbURL(base *url.URL, name string) string {
	u := *base
	u.Path = "/" + name
	u.RawPath = ""
	// A dbname parameter would override the path in libpq and in pgx.
	q := u.Query()
	q.Del("dbname")
	u.RawQuery = q.Encode()
	return u.String()
}

// server returns the admin server's URL, starting the throw-away cluster on
// first use when EnvVar is unset. missing tells whether the error means
// "no Postgres here" rather than "the configured Postgres is broken".
func server() (u *url.URL, missing bool, err error) {
	mu.Lock()
	defer mu.Unlock()
	if decided {
		return admin, adminMissing, adminErr
	}
	decided = true

	if s := os.Getenv(EnvVar); s != "" {
		// The developer asked for this server: when it does not
		// answer, that is a failure, never a skip.
		admin, adminErr = parseAdmin(s)
		if adminErr == nil {
			adminErr = ping(admin)
		}
		if adminErr != nil {
			adminErr = fmt.Errorf("%s: %w", EnvVar, adminErr)
		}
		return admin, false, adminErr
	}

	bin, err := findBin()
	if err != nil {
		adminMissing = true
		adminErr = fmt.Errorf("%s is unset and %w", EnvVar, err)
		return nil, true, adminErr
	}
	c, err := startCluster(bin)
	if err != nil {
		// Postgres is installed but would not start here (no postgres
		// user, no shared memory in a sandbox…): still an environment
		// this machine lacks, so the same skip-or-fail-in-CI rule.
		adminMissing = true
		adminErr = fmt.Errorf("%s is unset and the throw-away cluster did not start: %w", EnvVar, err)
		return nil, true, adminErr
	}
	started = c
	admin = c.url
	if c.inMemory {
		if v, err := serverVersion(admin); err == nil && v >= 150000 {
			createOptions = fileCopy
		}
	}
	return admin, false, nil
}

func parseAdmin(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("parse url: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("want a postgres:// url, got scheme %q", u.Scheme)
	}
	return u, nil
}

// dbName returns a name no other test, package or earlier run will pick:
// packages share the server in CI, and a crashed run may leave databases
// behind.
func dbName() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random database name: %w", err)
	}
	return "plane_test_" + hex.EncodeToString(b[:]), nil
}

// exec1 runs one statement on a connection of its own to the admin server.
// CREATE and DROP DATABASE cannot run in a transaction, and a connection
// per call keeps tests running in parallel from queueing on a shared one.
func exec1(u *url.URL, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("connect to admin server %s: %w", u.Redacted(), err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return err
	}
	return nil
}

func ping(u *url.URL) error {
	return exec1(u, "SELECT 1")
}

// serverVersion is the server's version as a number: 150004 for 15.4.
func serverVersion(u *url.URL) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return 0, fmt.Errorf("connect to admin server %s: %w", u.Redacted(), err)
	}
	defer conn.Close(context.Background())
	var v string
	if err := conn.QueryRow(ctx, "SHOW server_version_num").Scan(&v); err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

// findBin returns the folder of initdb and postgres: the initdb in PATH
// first (the developer's choice), then Debian's newest
// /usr/lib/postgresql/<version>/bin, which Debian keeps out of PATH.
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		// Debian's /usr/local/bin or /usr/bin entries are symlinks; the
		// postgres binary sits next to the real initdb.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if isExec(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Highest version first, numerically: 9.6 < 10 < 15.
	sort.Slice(dirs, func(i, j int) bool {
		return versionOf(dirs[i]) > versionOf(dirs[j])
	})
	for _, dir := range dirs {
		if isExec(filepath.Join(dir, "initdb")) && isExec(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", errors.New("no initdb and postgres found in PATH or /usr/lib/postgresql/*/bin")
}

// versionOf reads /usr/lib/postgresql/<major>[.<minor>]/bin as a number.
func versionOf(dir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
	if err != nil {
		return -1
	}
	return v
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// dirPrefix names the clusters' temporary folders, and lockName the file in
// each that its test process holds locked while it lives.
const (
	dirPrefix = "plane-pgtest-"
	lockName  = "plane-pgtest.lock"
)

// shmDir is Linux's shared memory folder, a tmpfs, and shmMin the room a
// cluster wants there: initdb's 40 MB and the databases of the tests that
// run at once. Docker gives containers 64 MB.
const (
	shmDir = "/dev/shm"
	shmMin = 1 << 30
)

// clusterRoot is where a cluster's temporary folder goes: in memory when
// there is room, since every test's database is some 300 files made and
// removed again, which costs a disk's file system more than the tests'
// queries do; the system's temporary folder otherwise.
func clusterRoot() string {
	var fs syscall.Statfs_t
	const tmpfsMagic = 0x01021994
	if err := syscall.Statfs(shmDir, &fs); err != nil || fs.Type != tmpfsMagic || fs.Bavail*uint64(fs.Bsize) < shmMin {
		return os.TempDir()
	}
	if err := syscall.Access(shmDir, 0o2 /* W_OK */); err != nil {
		return os.TempDir()
	}
	return shmDir
}

// cluster is the throw-away server of one test process.
type cluster struct {
	dir      string // temporary folder: data/, the unix socket, the log
	inMemory bool   // dir is in shmDir
	lock     *os.File
	url      *url.URL
	proc     *os.Process
	// exited is closed when the postmaster has exited; state then
	// describes how.
	exited chan struct{}
	state  func() string
}

// startCluster makes a cluster in a temporary folder and starts its
// postmaster.
//
// The postmaster is started directly (postgres -D), not through pg_ctl:
// pg_ctl detaches the server, so only Main's stop would end it, and a test
// process that dies first (a panic, go test's timeout, SIGKILL, a package
// without pgtest.Main) would leave a server running forever. As a direct
// child the postmaster gets SIGQUIT, Postgres's immediate shutdown, from the
// kernel when the test process dies (Pdeathsig), and Main can signal and
// wait for it. What such a death leaves is the temporary folder only, which
// the next run's sweep removes.
func startCluster(bin string) (*cluster, error) {
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	sweep()
	root := clusterRoot()
	dir, err := os.MkdirTemp(root, dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("temporary folder: %w", err)
	}
	c := &cluster{dir: dir, inMemory: root == shmDir}
	ok := false
	defer func() {
		if !ok {
			c.unlock()
			os.RemoveAll(dir)
		}
	}()
	if c.lock, err = lockDir(dir); err != nil {
		return nil, err
	}
	// Postgres wants its folders private (0700) and owned by the user it
	// runs as.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("temporary folder: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("temporary folder: %w", err)
		}
	}

	data := filepath.Join(dir, "data")
	// trust: a throw-away cluster on loopback with a unix socket in a
	// private folder. --no-sync and the fsync settings below: nothing here
	// has to survive a crash, and syncing is most of the time initdb and
	// CREATE DATABASE take.
	initdb := exec.Command(filepath.Join(bin, "initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, bytes.TrimSpace(out))
	}

	// A free port is only free until someone takes it: when another
	// process wins the race, the postmaster exits at once and a new port
	// is tried.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		lastErr = c.start(bin, data, port, cred)
		if lastErr == nil {
			ok = true
			return c, nil
		}
	}
	return nil, lastErr
}

// credential is who initdb and postgres run as: both refuse root, so as
// root they run as Debian's postgres system user; otherwise as the caller.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and Postgres refuses root: no postgres user to run it as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user: gid %q: %w", u.Gid, err)
	}
	// No supplementary groups: root's must not leak into the server.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs the postmaster on port and waits until it accepts
// connections, it exits, or startTimeout passes.
func (c *cluster) start(bin, data string, port int, cred *syscall.Credential) error {
	logPath := filepath.Join(c.dir, fmt.Sprintf("postgres-%d.log", port))
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("postgres log: %w", err)
	}
	// The postmaster writes to the file itself; the test process need
	// not keep its copy open.
	defer logFile.Close()

	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port="+strconv.Itoa(port),
		"-c", "unix_socket_directories="+c.dir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		// A package's tests run in parallel, each with stores of
		// its own pools; CI's server has as many.
		"-c", "max_connections=300",
	)
	cmd.Dir = c.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		Pdeathsig:  syscall.SIGQUIT,
		// Its own process group: a ^C in the terminal reaches the test
		// process, whose death then stops the postmaster through
		// Pdeathsig, rather than racing Main's shutdown.
		Setpgid: true,
	}

	// Pdeathsig fires when the thread that started the child exits, not
	// the process, and the Go runtime ends threads whose goroutine exits
	// while locked to them. So start from a goroutine that holds its
	// thread until the postmaster has exited: the thread then lives as
	// long as the server does.
	startErr := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			startErr <- err
			return
		}
		startErr <- nil
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-startErr; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.proc = cmd.Process
	c.exited = exited
	c.state = func() string { return cmd.ProcessState.String() }
	c.url = &url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}

	// Poll with a connection, the thing tests will do, rather than sleep:
	// the server is ready in well under a second on an idle machine and
	// in several on a loaded one.
	deadline := time.Now().Add(startTimeout)
	for {
		err := ping(c.url)
		if err == nil {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("postgres %s: %s", c.state(), tail(logPath))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.kill()
			return fmt.Errorf("postgres not ready after %v: %v: %s", startTimeout, err, tail(logPath))
		}
	}
}

// stop shuts the postmaster down the way pg_ctl stop -m immediate does
// (SIGQUIT: nothing is worth saving) and removes the cluster's folder.
func (c *cluster) stop() error {
	var errs []error
	if err := c.proc.Signal(syscall.SIGQUIT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		errs = append(errs, fmt.Errorf("stop postgres: %w", err))
	}
	select {
	case <-c.exited:
	case <-time.After(stopTimeout):
		c.kill()
		errs = append(errs, fmt.Errorf("stop postgres: still running after %v, killed", stopTimeout))
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove cluster folder: %w", err))
	}
	c.unlock()
	return errors.Join(errs...)
}

// lockDir locks dir's lock file for as long as this process lives: the
// kernel drops the lock when the process dies, however it dies, which is
// how sweep tells a dead run's folder from a live one.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock file: %w", err)
	}
	return f, nil
}

func (c *cluster) unlock() {
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

// sweep removes the folders of clusters whose test process died before
// Main could stop them (go test's timeout, a crash, SIGKILL, a ^C): their
// postmasters died with them (Pdeathsig), their data did not, and each is
// tens of megabytes. A folder is stale when its lock file can be locked;
// one without a lock file may be a live process's that has not made it
// yet, so it is left alone. Best effort: whatever fails stays for the next
// run or for the system's cleaning of its temporary folder.
func sweep() {
	var dirs []string
	for _, root := range []string{os.TempDir(), shmDir} {
		found, _ := filepath.Glob(filepath.Join(root, dirPrefix+"*"))
		dirs = append(dirs, found...)
	}
	for _, dir := range dirs {
		f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			_ = os.RemoveAll(dir)
		}
		f.Close()
	}
}

// kill ends a postmaster that did not start or stop in time, and waits for
// it so that its folder can go.
func (c *cluster) kill() {
	_ = c.proc.Kill()
	select {
	case <-c.exited:
	case <-time.After(stopTimeout):
	}
}

// tail is the end of the server's log, for an error message: why it did
// not start is in its last lines.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}
