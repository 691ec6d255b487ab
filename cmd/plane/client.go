package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"plane"
	"plane/api"
)

// clientParser parses a client command's arguments and connects.
type clientParser func(args []string, wantID bool) (c *api.Client, backendID string, err error)

// clientFlags adds --url and --token (PLANE_URL, PLANE_TOKEN) to fs and
// returns the parser to call once the command's own flags are defined. With
// wantID the command takes one backend ID argument.
func clientFlags(fs *flag.FlagSet) clientParser {
	parse := clientArgFlags(fs)
	return func(args []string, wantID bool) (*api.Client, string, error) {
		if !wantID {
			c, _, err := parse(args)
			return c, "", err
		}
		what := "backend ID"
		if fs.Name() == "image" {
			what = "image name"
		}
		c, pos, err := parse(args, what)
		if err != nil {
			return nil, "", err
		}
		return c, pos[0], nil
	}
}

// clientArgParser parses a client command's arguments and connects; the
// command takes one argument for each name in what, returned in order.
type clientArgParser func(args []string, what ...string) (c *api.Client, pos []string, err error)

// clientArgFlags is clientFlags for commands with any arguments: a backend
// ID argument is checked as one.
func clientArgFlags(fs *flag.FlagSet) clientArgParser {
	u := fs.String("url", "http://127.0.0.1:8080", "controller URL")
	t := fs.String("token", "", "API token")
	return func(args []string, what ...string) (*api.Client, []string, error) {
		if err := parseFlags(fs, args); err != nil {
			return nil, nil, err
		}
		switch {
		case len(what) == 0 && fs.NArg() > 0:
			return nil, nil, usageError{fmt.Sprintf("plane %s takes no arguments, got %q", fs.Name(), fs.Arg(0))}
		case fs.NArg() != len(what):
			return nil, nil, usageError{fmt.Sprintf("plane %s takes %s", fs.Name(), argsText(what))}
		}
		for i, w := range what {
			if w != "backend ID" && w != "image name" {
				continue
			}
			if err := plane.ValidateBackendID(fs.Arg(i)); err != nil {
				return nil, nil, usageError{err.Error()}
			}
		}
		c, err := newAPIClient(*u, *t)
		return c, fs.Args(), err
	}
}

// argsText names a command's arguments: "one backend ID", "a webhook ID
// and a delivery ID".
func argsText(what []string) string {
	if len(what) == 1 {
		return "one " + what[0]
	}
	return "a " + strings.Join(what, " and a ")
}

// parseID reads a numeric ID argument (of a webhook, a delivery).
func parseID(what, v string) (int64, error) {
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, usageError{fmt.Sprintf("%s must be a positive number, got %q", what, v)}
	}
	return id, nil
}

func newAPIClient(base, token string) (*api.Client, error) {
	if token == "" {
		return nil, usageError{"no API token: set PLANE_TOKEN or --token (plane admin token create prints one)"}
	}
	c, err := api.NewClient(base, token, nil)
	if err != nil {
		return nil, usageError{"--url: " + err.Error()}
	}
	return c, nil
}

// backendOut is the API's answer about a backend.
type backendOut = api.Backend

// envFlags collects repeated --env K=V flags.
type envFlags map[string]string

func (e envFlags) String() string { return "" }
func (e envFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	e[k] = val
	return nil
}

func runSpawn(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("spawn", "Spawn a backend of an image, or connect to the live one holding --key.", stderr)
	parse := clientFlags(fs)
	image := fs.String("image", "", "image name in the project (required)")
	key := fs.String("key", "", "key: at most one live backend holds it")
	user := fs.String("user", "", "user identity passed to the backend")
	wait := fs.Bool("wait", true, "wait until the backend is ready (or failed)")
	maxIdle := fs.Int("max-idle-seconds", -1, "idle limit; default: the image's")
	lifetime := fs.Int("lifetime-seconds", -1, "lifetime limit; default: the image's")
	suspend := fs.Int("suspend-seconds", -1, "when idle, suspend for this long before stopping (0: stop at once); default: the image's")
	env := envFlags{}
	fs.Var(env, "env", "environment variable KEY=VALUE (repeatable)")
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	c, _, err := parse(args, false)
	if err != nil {
		return err
	}
	if *image == "" {
		return usageError{"--image is required"}
	}

	req := plane.SpawnRequest{Image: *image, Key: *key, User: *user, Wait: *wait}
	if len(env) > 0 {
		req.Env = env
	}
	if *maxIdle >= 0 {
		req.MaxIdleSeconds = maxIdle
	}
	if *lifetime >= 0 {
		req.LifetimeSeconds = lifetime
	}
	if *suspend >= 0 {
		req.SuspendSeconds = suspend
	}
	b, err := c.Spawn(ctx, req)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, b)
	}
	verb := "connected to"
	if b.Spawned {
		verb = "spawned"
	}
	fmt.Fprintf(stdout, "%s %s (%s)\n%s\n", verb, b.ID, statusText(b), b.URL)
	if start := startText(b); start != "" {
		fmt.Fprintln(stdout, start)
	}
	if b.Status == plane.StatusTerminated && b.TerminationReason == plane.ReasonFailed {
		return fmt.Errorf("backend %s failed: %s", b.ID, b.Error)
	}
	return nil
}

// startText says how a spawn started its backend: warm, claimed from the
// image's warm pool, or cold and why ("" for a backend found by its key,
// or from a controller that does not say).
func startText(b backendOut) string {
	if !b.Spawned || b.Warm == nil {
		return ""
	}
	if *b.Warm {
		return "started warm: claimed from the image's warm pool"
	}
	why, ok := coldReasons[b.ColdReason]
	if !ok {
		why = "no reason given"
	}
	if b.ColdReason != "" {
		why += " (" + string(b.ColdReason) + ")"
	}
	return "started cold: " + why
}

// coldReasons explain plane.ColdReasons to the person who spawned.
var coldReasons = map[plane.ColdReason]string{
	plane.ColdNoPool:    "the image has no warm pool",
	plane.ColdEnv:       "the spawn sets env, which a started backend cannot take",
	plane.ColdCPU:       "the spawn sets a CPU limit other than the image's",
	plane.ColdMemory:    "the spawn sets a memory limit other than the image's",
	plane.ColdPoolEmpty: "no drone had a ready backend in the image's warm pool",
	plane.ColdRaced:     "the warm pool's backend chosen was gone when its drone got the claim",
}

func statusText(b backendOut) string {
	s := string(b.Status)
	if b.Suspended {
		s += " (suspended)"
	}
	if b.Status == plane.StatusTerminated {
		s += " (" + string(b.TerminationReason)
		if b.ExitCode != nil {
			s += fmt.Sprintf(", exit code %d", *b.ExitCode)
		}
		s += ")"
	}
	return s
}

func runList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ls", "List the project's backends.", stderr)
	parse := clientFlags(fs)
	status := fs.String("status", "live", "live, terminated or all")
	key := fs.String("key", "", "only the backend(s) with this key")
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	c, _, err := parse(args, false)
	if err != nil {
		return err
	}

	bs, err := c.Backends(ctx, api.BackendFilter{Status: *status, Key: *key})
	if err != nil {
		return err
	}
	return printList(stdout, *asJSON, api.Backends{Backends: bs}, "ID\tIMAGE\tKEY\tSTATUS\tDRONE\tCREATED", bs, func(b api.Backend) string {
		return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", b.ID, b.Image, b.Key, statusText(b), b.Drone, b.CreatedAt.Local().Format(time.DateTime))
	})
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "Show a backend: status, timeline, URL.", stderr)
	parse := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	c, id, err := parse(args, true)
	if err != nil {
		return err
	}
	b, err := c.Backend(ctx, id)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, b)
	}
	fmt.Fprintf(stdout, "%s  %s\nimage %s  key %q  drone %s\n%s\n", b.ID, statusText(b), b.Image, b.Key, b.Drone, b.URL)
	if b.Error != "" {
		fmt.Fprintf(stdout, "error: %s\n", b.Error)
	}
	switch {
	case b.Suspended:
		fmt.Fprintf(stdout, "suspended since %s", b.SuspendedAt.Local().Format("15:04:05.000"))
		if b.IdleDeadline != nil {
			fmt.Fprintf(stdout, ", stops in %d s unless a request resumes it", max(0, int(time.Until(*b.IdleDeadline).Seconds())))
		}
		fmt.Fprintln(stdout)
	case b.Status.Live():
		fmt.Fprintf(stdout, "connections: %d", b.Connections)
		if b.IdleDeadline != nil {
			verb := "stops"
			if b.SuspendSeconds > 0 {
				verb = "suspended"
			}
			fmt.Fprintf(stdout, ", %s in %d s when idle", verb, max(0, int(time.Until(*b.IdleDeadline).Seconds())))
		}
		fmt.Fprintln(stdout)
	}
	for i, h := range b.StatusHistory {
		d := ""
		if i > 0 {
			d = fmt.Sprintf("+%dms", h.Time.Sub(b.StatusHistory[i-1].Time).Milliseconds())
		}
		fmt.Fprintf(stdout, "  %-12s %s %s\n", h.Status, h.Time.Local().Format("15:04:05.000"), d)
	}
	return nil
}

func runLogs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("logs", "Print a backend's logs; -f follows them until the backend terminates.", stderr)
	parse := clientFlags(fs)
	follow := fs.Bool("f", false, "follow")
	c, id, err := parse(args, true)
	if err != nil {
		return err
	}
	return c.Logs(ctx, id, *follow, func(l plane.LogLine) { fmt.Fprintln(stdout, l.Text) })
}

func runTerminate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("terminate", "Terminate a backend: SIGTERM, grace, SIGKILL (--hard: SIGKILL at once).", stderr)
	parse := clientFlags(fs)
	hard := fs.Bool("hard", false, "kill at once")
	c, id, err := parse(args, true)
	if err != nil {
		return err
	}
	if _, err := c.Terminate(ctx, id, *hard); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "terminating %s\n", id)
	return nil
}

func runImages(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("images", "List the project's images.", stderr)
	parse := clientFlags(fs)
	c, _, err := parse(args, false)
	if err != nil {
		return err
	}

	imgs, err := c.Images(ctx)
	if err != nil {
		return err
	}
	return printList(stdout, false, nil, "NAME\tREF\tPORT\tPULL\tPUBLIC\tWARM POOL", imgs, func(i *plane.Image) string {
		return fmt.Sprintf("%s\t%s\t%d\t%s\t%t\t%s", i.Name, i.Ref, i.Port, i.PullPolicy, i.Public, warmPoolText(i.WarmPool))
	})
}

// runImage changes the fields of an image that its flags set.
func runImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("image", "Change an image: plane image [flags] NAME sets the fields given by flags and keeps the others.", stderr)
	parse := clientFlags(fs)
	ref := fs.String("ref", "", "the container image reference")
	ints := []struct {
		name, usage string
		v           *int
	}{
		{"port", "the port its backends listen on", new(int)},
		{"warm-pool", "started, ready backends kept on every drone for spawns to claim at once (0: none)", new(int)},
		{"max-idle-seconds", "idle limit of its backends (0: none)", new(int)},
		{"suspend-seconds", "when idle, suspend for this long before stopping (0: stop at once)", new(int)},
		{"lifetime-seconds", "lifetime limit of its backends (0: none)", new(int)},
	}
	for _, f := range ints {
		fs.IntVar(f.v, f.name, -1, f.usage)
	}
	c, name, err := parse(args, true)
	if err != nil {
		return err
	}
	set := func(v *int) *int {
		if *v < 0 {
			return nil
		}
		return v
	}
	in := plane.ImageInput{Port: set(ints[0].v), WarmPool: set(ints[1].v), LimitsInput: plane.LimitsInput{
		MaxIdleSeconds: set(ints[2].v), SuspendSeconds: set(ints[3].v), LifetimeSeconds: set(ints[4].v)}}
	if *ref != "" {
		in.Ref = ref
	}
	img, err := c.UpdateImage(ctx, name, in)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s  %s  port %d  warm pool %s\n", img.Name, img.Ref, img.Port, warmPoolText(img.WarmPool))
	return nil
}

// warmPoolText shows an image's warm pool: backends kept per drone.
func warmPoolText(n int) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d per drone", n)
}

// printList prints a list command's answer: answer as JSON with --json,
// else a table of header and one tab-separated row per item.
func printList[T any](w io.Writer, asJSON bool, answer any, header string, items []T, row func(T) string) error {
	if asJSON {
		return printJSON(w, answer)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		fmt.Fprintln(tw, row(it))
	}
	return tw.Flush()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runConnections(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("connections", "Show who is connected to a backend: plane connections [flags] ID.", stderr)
	parse := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	c, id, err := parse(args, true)
	if err != nil {
		return err
	}
	conns, err := c.Connections(ctx, id)
	if err != nil {
		return err
	}
	return printList(stdout, *asJSON, api.Connections{Connections: conns}, "USER\tCONNECTIONS\tSINCE", conns, func(cn api.Connection) string {
		return fmt.Sprintf("%s\t%d\t%s", userText(cn.User), cn.Connections, cn.Since.Local().Format(time.DateTime))
	})
}

// userText shows a user's name; connections that name none are "(none)".
func userText(u string) string {
	if u == "" {
		return "(none)"
	}
	return u
}

func runDisconnect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("disconnect", "Close a user's connections to a backend (--all: everyone's) and refuse their earlier connect URLs: plane disconnect (--user USER | --all) ID. A URL from plane spawn or the connect API issued afterwards lets them back in.", stderr)
	parse := clientFlags(fs)
	user := fs.String("user", "", `the user to disconnect ("" : the connections that name no user)`)
	all := fs.Bool("all", false, "disconnect every user")
	c, id, err := parse(args, true)
	if err != nil {
		return err
	}
	userSet := false
	fs.Visit(func(f *flag.Flag) { userSet = userSet || f.Name == "user" })
	switch {
	case userSet && *all:
		return usageError{"--user and --all exclude each other"}
	case !userSet && !*all:
		return usageError{"name the user to disconnect with --user, or --all for everyone"}
	}
	if err := c.Disconnect(ctx, id, *user, *all); err != nil {
		return err
	}
	who := "every user"
	if !*all {
		who = userText(*user)
	}
	fmt.Fprintf(stdout, "disconnected %s from %s\n", who, id)
	return nil
}

func runKeepAlive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keepalive", "Keep a backend up without connections for --seconds from now (its idle clock starts after): plane keepalive --seconds N ID. A later keep-alive replaces this one.", stderr)
	parse := clientFlags(fs)
	seconds := fs.Int("seconds", 0, "how long, 1 to 86400 (required)")
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	c, id, err := parse(args, true)
	if err != nil {
		return err
	}
	if *seconds <= 0 {
		return usageError{"--seconds is required: how long to keep the backend up, 1 to 86400"}
	}
	b, err := c.KeepAlive(ctx, id, *seconds)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, b)
	}
	fmt.Fprintf(stdout, "%s kept alive", b.ID)
	if b.KeepAliveUntil != nil {
		// Its lifetime may end it sooner than asked.
		fmt.Fprintf(stdout, " until %s", b.KeepAliveUntil.Local().Format(time.DateTime))
	}
	if b.KeepAliveBy != "" {
		fmt.Fprintf(stdout, " by %s", b.KeepAliveBy)
	}
	fmt.Fprintln(stdout)
	return nil
}
