package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"plane"
	"plane/api"
	"plane/auth"
	"plane/server/sqlstore"
)

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", "Apply the controller's database migrations to its store (--store, or <data>/controller.db) and exit.", stderr)
	data := fs.String("data", "/var/lib/plane", "the controller's data folder")
	store := storeFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	what, err := migrateStore(ctx, *store, *data)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "migrated", what)
	return nil
}

func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const synopsis = "admin token create --data DIR --project NAME --name NAME [--scopes a,b] [--expires 720h]\n" +
		"       plane admin user create --data DIR --email EMAIL [--name NAME] [--admin] [--password-stdin]\n" +
		"       plane admin project create --data DIR --name NAME\n" +
		"       plane admin key create --out FILE\n" +
		"       plane admin backup --to FILE [--data DIR]\n" +
		"       plane admin restore --from FILE [--data DIR]\n" +
		"       plane admin migrate-store --from STORE --to STORE [--data DIR]\n" +
		"       plane admin drones [--url URL] [--token TOKEN] [--json]\n" +
		"       plane admin drones drain|undrain [--url URL] [--token TOKEN] ID"
	if len(args) >= 1 && args[0] == "drones" {
		if len(args) >= 2 && (args[1] == "drain" || args[1] == "undrain") {
			return runAdminDrain(ctx, args[1] == "drain", args[2:], stdout, stderr)
		}
		return runAdminDrones(ctx, args[1:], stdout, stderr)
	}
	if len(args) >= 2 && args[0] == "token" && args[1] == "create" {
		return runAdminTokenCreate(ctx, args[2:], stdout, stderr)
	}
	if len(args) >= 2 && args[0] == "project" && args[1] == "create" {
		return runAdminProjectCreate(ctx, args[2:], stdout, stderr)
	}
	if len(args) >= 2 && args[0] == "user" && args[1] == "create" {
		return runAdminUserCreate(ctx, args[2:], os.Stdin, stdout, stderr)
	}
	if len(args) >= 2 && args[0] == "key" && args[1] == "create" {
		return runAdminKeyCreate(ctx, args[2:], stdout, stderr)
	}
	if len(args) >= 1 && args[0] == "migrate-store" {
		return runAdminMigrateStore(ctx, args[1:], stdout, stderr)
	}
	if len(args) >= 1 && args[0] == "backup" {
		return runAdminBackup(ctx, args[1:], stdout, stderr)
	}
	if len(args) >= 1 && args[0] == "restore" {
		return runAdminRestore(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stdout, "Usage: plane "+synopsis)
		return nil
	}
	return usageError{"usage: plane " + synopsis}
}

// runAdminTokenCreate creates an API token straight in the store, for
// bootstrapping from the controller's machine; it prints the token alone.
func runAdminTokenCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin token create", "Create an API token for a project and print it alone on one line.", stderr)
	data := fs.String("data", "./.plane", "the controller's data folder")
	store := storeFlag(fs)
	project := fs.String("project", plane.DefaultProject, "project the token belongs to")
	name := fs.String("name", "", "a name for the token (required)")
	scopes := fs.String("scopes", "", "comma-separated scopes; default all: "+joinScopes(plane.AllScopes)+" ("+joinScopes(plane.AdminScopes)+", for the drones API, only when named)")
	expires := fs.Duration("expires", 0, "lifetime of the token, e.g. 720h; 0 = never expires")
	signingKey := fs.String("signing-key", os.Getenv("PLANE_SIGNING_KEY"), "the controllers' signing key, when not <data>/signing.key (env PLANE_SIGNING_KEY)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if strings.TrimSpace(*name) == "" {
		return usageError{"--name is required"}
	}
	tok := &plane.Token{ID: auth.NewTokenID(), Name: *name, Scopes: plane.AllScopes, CreatedAt: time.Now().UTC()}
	if *scopes != "" {
		tok.Scopes = nil
		for _, s := range strings.Split(*scopes, ",") {
			sc := plane.Scope(strings.TrimSpace(s))
			if !sc.Valid() {
				return usageError{fmt.Sprintf("--scopes: unknown scope %q (known: %s)", sc, joinScopes(append(slices.Clone(plane.AllScopes), plane.AdminScopes...)))}
			}
			tok.Scopes = append(tok.Scopes, sc)
		}
	}
	if *expires < 0 {
		return usageError{"--expires must not be negative"}
	}
	if *expires > 0 {
		t := tok.CreatedAt.Add(*expires)
		tok.ExpiresAt = &t
	}

	db, err := openStore(ctx, *store, *data)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := db.FindProjectByName(ctx, *project)
	if err != nil {
		return fmt.Errorf("project %q: %s (the controller creates %q on its first start; plane admin project create makes others)", *project, plane.ErrorMessageOf(err), plane.DefaultProject)
	}
	tok.ProjectID = p.ID
	keys, err := loadSigningKeys(*data, *signingKey, nil)
	if err != nil {
		return err
	}
	signed, err := (&auth.Issuer{Key: keys.sign}).IssueAPIToken(tok)
	if err != nil {
		return err
	}
	if err := db.CreateToken(ctx, tok); err != nil {
		return err
	}
	fmt.Fprintln(stdout, signed)
	return nil
}

// runAdminProjectCreate creates a project straight in the store, in a
// team of its own named after it. Its owner is --owner, or else the
// first admin, so that someone sees it in the dashboard; before anyone
// has signed up, the first user to do so becomes the owner (as of project
// default). With --team, the project goes to that team instead.
func runAdminProjectCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin project create", "Create a project and print its id.", stderr)
	data := fs.String("data", "./.plane", "the controller's data folder")
	store := storeFlag(fs)
	name := fs.String("name", "", "the project's name (required)")
	owner := fs.String("owner", "", "the email of the user who owns the project's new team (default: the first admin)")
	team := fs.Int64("team", 0, "the id of an existing team to put the project in, instead of a new team")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p := &plane.Project{Name: strings.TrimSpace(*name), TeamID: *team}
	switch {
	case p.Name == "":
		return usageError{"--name is required"}
	case *team != 0 && *owner != "":
		return usageError{"--owner and --team exclude each other: --owner names who owns a new team"}
	}
	db, err := openStore(ctx, *store, *data)
	if err != nil {
		return err
	}
	defer db.Close()
	if p.TeamID == 0 {
		if p.TeamID, err = newProjectTeam(ctx, db, p.Name, *owner); err != nil {
			return err
		}
	}
	if err := db.CreateProject(ctx, p); err != nil {
		return fmt.Errorf("create project %q: %s", p.Name, plane.ErrorMessageOf(err))
	}
	fmt.Fprintln(stdout, p.ID)
	return nil
}

// newProjectTeam makes the team of a new project named name, owned by the
// user with email owner, or else by the first admin; with no user yet it
// makes none (0: CreateProject makes one the first user will own). A name
// taken already is refused first, so that no team is left without its
// project.
func newProjectTeam(ctx context.Context, db *sqlstore.DB, name, owner string) (int64, error) {
	if _, err := db.FindProjectByName(ctx, name); err == nil {
		return 0, fmt.Errorf("create project %q: project %q already exists", name, name)
	} else if plane.ErrorCodeOf(err) != plane.ENOTFOUND {
		return 0, err
	}
	var u *plane.User
	if owner != "" {
		var err error
		if u, err = db.FindUserByEmail(ctx, owner); err != nil {
			return 0, fmt.Errorf("--owner %s: %s", owner, plane.ErrorMessageOf(err))
		}
	} else {
		users, err := db.FindUsers(ctx)
		if err != nil {
			return 0, err
		}
		for _, x := range users {
			if x.Admin {
				u = x
				break
			}
		}
		if u == nil {
			return 0, nil
		}
	}
	t := &plane.Team{Name: name}
	if err := db.CreateTeam(ctx, t, u.ID); err != nil {
		return 0, fmt.Errorf("create the team of project %q: %w", name, err)
	}
	return t.ID, nil
}

// runAdminDrones lists the drones through the API, with a token of the
// admin scope: unlike the other admin commands it needs no access to the
// controller's data, only to its URL.
func runAdminDrones(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin drones", "List the drones: status, address, backends, version, last heartbeat. The token needs the admin scope (plane admin token create --scopes admin).", stderr)
	parse := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	c, _, err := parse(args, false)
	if err != nil {
		return err
	}
	ds, err := c.Drones(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	return printList(stdout, *asJSON, api.Drones{Drones: ds}, "ID\tSTATUS\tADDRESS\tBACKENDS\tVERSION\tHEARTBEAT", ds, func(d plane.Drone) string {
		return fmt.Sprintf("%s\t%s\t%s\t%d/%d\t%s\t%s", d.ID, d.Status, d.Address, d.Backends, d.Capacity, d.Version, heartbeatAge(now, d.LastHeartbeat))
	})
}

// heartbeatAge says how long ago a drone last beat, to the second.
func heartbeatAge(now, beat time.Time) string {
	if beat.IsZero() {
		return "never"
	}
	return max(0, now.Sub(beat)).Round(time.Second).String() + " ago"
}

// runAdminDrain drains a drone (it takes no new backends) or undrains it.
func runAdminDrain(ctx context.Context, draining bool, args []string, stdout, stderr io.Writer) error {
	verb, synopsis := "undrain", "Let a drone take new backends again."
	if draining {
		verb, synopsis = "drain", "Drain a drone: it takes no new backends, and those it runs go on until they end."
	}
	fs := newFlagSet("admin drones "+verb, synopsis+" The token needs the admin scope.", stderr)
	_ = clientFlags(fs)
	c, id, err := parseDroneArgs(fs, args)
	if err != nil {
		return err
	}
	d, err := c.Drain(ctx, id, draining)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s (%s)\n", verb+"ed", d.ID, d.Status)
	return nil
}

// parseDroneArgs parses the flags of clientFlags and one drone ID. The
// parser of clientFlags checks a backend ID, which a drone's (a DNS label,
// with inner '-') need not be, so the ID is read here.
func parseDroneArgs(fs *flag.FlagSet, args []string) (*api.Client, string, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, "", err
	}
	if fs.NArg() != 1 {
		return nil, "", usageError{fmt.Sprintf("plane %s takes one drone ID", fs.Name())}
	}
	id := fs.Arg(0)
	if err := plane.ValidateDroneID(id); err != nil {
		return nil, "", usageError{plane.ErrorMessageOf(err)}
	}
	c, err := newAPIClient(fs.Lookup("url").Value.String(), fs.Lookup("token").Value.String())
	return c, id, err
}

// passwordEnv holds the password of admin user create when it is not read
// from standard input; a flag would show it to every user of ps.
const passwordEnv = "PLANE_PASSWORD"

// runAdminUserCreate creates a dashboard user straight in the store, for
// bootstrapping an instance (the first user is its admin) or recovering
// access.
func runAdminUserCreate(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin user create", "Create a dashboard user. The password is read from standard input with --password-stdin, or from "+passwordEnv+".", stderr)
	data := fs.String("data", "./.plane", "the controller's data folder")
	store := storeFlag(fs)
	email := fs.String("email", "", "the user's email address (required)")
	name := fs.String("name", "", "the user's display name")
	admin := fs.Bool("admin", false, "make the user an admin of the instance (the first user always is)")
	pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	addr, err := plane.ValidateEmail(*email)
	if err != nil {
		return usageError{"--" + plane.ErrorMessageOf(err)}
	}
	pw, err := readPassword(stdin, *pwStdin)
	if err != nil {
		return err
	}
	if err := plane.ValidatePassword(pw); err != nil {
		return usageError{plane.ErrorMessageOf(err)}
	}
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return err
	}
	// CreateUser keeps a preset Admin and makes the first user admin anyway.
	u := &plane.User{Email: addr, Name: strings.TrimSpace(*name), Admin: *admin, PasswordHash: hash, CreatedAt: time.Now().UTC()}

	db, err := openStore(ctx, *store, *data)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.CreateUser(ctx, u); err != nil {
		return fmt.Errorf("create user %s: %w", addr, err)
	}
	if *admin && !u.Admin {
		return fmt.Errorf("user %d %s was created but the store did not make it an admin", u.ID, u.Email)
	}
	role := "user"
	if u.Admin {
		role = "admin"
	}
	fmt.Fprintf(stdout, "created %s %d %s\n", role, u.ID, u.Email)
	return nil
}

// readPassword returns the first line of stdin when fromStdin is set, or
// else the value of PLANE_PASSWORD.
func readPassword(stdin io.Reader, fromStdin bool) (string, error) {
	if !fromStdin {
		pw, ok := os.LookupEnv(passwordEnv)
		if !ok {
			return "", usageError{"give the password on standard input with --password-stdin, or in " + passwordEnv}
		}
		return pw, nil
	}
	// Read a little past the longest password so that a longer one is
	// refused rather than cut.
	line, err := bufio.NewReader(io.LimitReader(stdin, plane.MaxPasswordLength+3)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}

func joinScopes(s []plane.Scope) string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return strings.Join(out, ",")
}
