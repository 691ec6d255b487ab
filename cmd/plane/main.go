// Command plane is Plane's one binary: the controller, the drone, `plane dev`
// that runs both with an embedded NATS server, and the client commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// Version is set at build time with -ldflags "-X main.Version=…".
var Version = "dev"

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"dev":         {"run a controller, an embedded NATS server and one drone in one process", runDev},
		"controller":  {"run the controller: API, dashboard, scheduler, store", runController},
		"drone":       {"run a drone: the agent that starts backends in Docker", runDrone},
		"migrate":     {"apply the controller's database migrations and exit", runMigrate},
		"admin":       {"administer a controller: admin token/user/project/key create, sqlite backup/restore and migrate-store on its machine, admin drones over the API", runAdmin},
		"version":     {"print the version", runVersion},
		"spawn":       {"spawn a backend (or connect to the one holding --key)", runSpawn},
		"ls":          {"list backends", runList},
		"status":      {"show a backend", runStatus},
		"logs":        {"print a backend's logs (-f follows)", runLogs},
		"terminate":   {"terminate a backend", runTerminate},
		"images":      {"list the project's images", runImages},
		"image":       {"change an image: its ref, port, warm pool or limits", runImage},
		"connections": {"show who is connected to a backend", runConnections},
		"disconnect":  {"disconnect a user (or --all) from a backend", runDisconnect},
		"keepalive":   {"keep a backend up without connections for --seconds", runKeepAlive},
		"events":      {"print the project's event log (-f follows)", runEvents},
		"webhooks":    {"list webhooks; webhooks create/delete/deliveries/retry", runWebhooks},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "plane:", err)
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// usageError marks a command-line mistake (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return usageError{"no command given"}
		}
		return nil
	}
	cmd, ok := commands[args[0]]
	if !ok {
		usage(stderr)
		return usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	return cmd.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Plane runs session backends: one container per user, document or room.")
	fmt.Fprintln(w, "\nUsage: plane <command> [flags]   (plane <command> --help for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nEvery flag has an environment twin: --nats is PLANE_NATS.")
}

// newFlagSet returns a flag set whose usage lists each flag's environment twin.
func newFlagSet(name, synopsis string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: plane %s\n\n%s\n\nFlags:\n", name, synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" && f.DefValue != "false" {
				def = fmt.Sprintf(" (default %q)", f.DefValue)
			}
			fmt.Fprintf(out, "  --%s  [%s]\n      %s%s\n", f.Name, envName(f.Name), f.Usage, def)
		})
	}
	return fs
}

// envName is a flag's environment twin: --nats → PLANE_NATS.
func envName(flagName string) string {
	return "PLANE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args, then fills every flag not given on the command
// line from its environment twin.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = usageError{fmt.Sprintf("%s=%q: %v", envName(f.Name), v, e)}
			}
		}
	})
	return err
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "Print the version of this binary.", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, Version)
	return nil
}
