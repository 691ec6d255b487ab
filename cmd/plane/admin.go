package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"plane"
	"plane/auth"
	"plane/server/sqlite"
)

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", "Apply the controller's database migrations to <data>/controller.db and exit.", stderr)
	data := fs.String("data", "/var/lib/plane", "the controller's data folder")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path := filepath.Join(*data, "controller.db")
	if err := sqlite.Migrate(ctx, path); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "migrated", path)
	return nil
}

func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const synopsis = "admin token create --data DIR --project NAME --name NAME [--scopes a,b] [--expires 720h]"
	if len(args) >= 2 && args[0] == "token" && args[1] == "create" {
		return runAdminTokenCreate(ctx, args[2:], stdout, stderr)
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
	project := fs.String("project", plane.DefaultProject, "project the token belongs to")
	name := fs.String("name", "", "a name for the token (required)")
	scopes := fs.String("scopes", "", "comma-separated scopes; default all: "+joinScopes(plane.AllScopes))
	expires := fs.Duration("expires", 0, "lifetime of the token, e.g. 720h; 0 = never expires")
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
				return usageError{fmt.Sprintf("--scopes: unknown scope %q (known: %s)", sc, joinScopes(plane.AllScopes))}
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

	db, err := sqlite.Open(ctx, filepath.Join(*data, "controller.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := db.FindProjectByName(ctx, *project)
	if err != nil {
		return fmt.Errorf("project %q: %s (plane dev creates %q on its first start)", *project, plane.ErrorMessageOf(err), plane.DefaultProject)
	}
	tok.ProjectID = p.ID
	key, err := auth.LoadOrCreateKey(*data)
	if err != nil {
		return err
	}
	signed, err := (&auth.Issuer{Key: key}).IssueAPIToken(tok)
	if err != nil {
		return err
	}
	if err := db.CreateToken(ctx, tok); err != nil {
		return err
	}
	fmt.Fprintln(stdout, signed)
	return nil
}

func joinScopes(s []plane.Scope) string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return strings.Join(out, ",")
}
