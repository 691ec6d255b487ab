package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"plane/auth"
	"plane/server/postgres"
	"plane/server/sqlite"
	"plane/server/sqlstore"
)

// runAdminMigrateStore copies a controller's store into a new, empty one,
// ids and all: from sqlite to Postgres when a cluster grows to several
// controllers, or back. It prints what it copied, in one line.
func runAdminMigrateStore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin migrate-store", "Copy a controller's store into a new, empty one, ids and all: from sqlite to Postgres when a cluster grows to several controllers, or back. "+
		"A STORE is a postgres:// URL or the path of a sqlite file. Both stores are migrated to this release first. "+
		"Stop the controllers before: what they write once the copy has begun stays behind. Then start them on the new store (--store, or "+storeEnv+") "+
		"with the signing key they had (<data>/"+auth.KeyFileName+"): the store does not hold it.", stderr)
	data := fs.String("data", "", "a controller's data folder: --from or --to left out stands for its sqlite store, <data>/controller.db")
	from := fs.String("from", "", "the store to copy: a postgres:// URL or a sqlite file")
	to := fs.String("to", "", "the store to fill: a postgres:// URL or a sqlite file (made if missing); it must hold nothing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("plane admin migrate-store takes no arguments, got %q (the stores go after --from and --to)", fs.Args())}
	}
	switch {
	case *from == "" && *to == "":
		return usageError{"--from and --to are required"}
	case *from == "" && *data == "":
		return usageError{"--from is required (or --data, for the sqlite store of a data folder)"}
	case *to == "" && *data == "":
		return usageError{"--to is required (or --data, for the sqlite store of a data folder)"}
	case *from == "":
		*from = sqlitePath(*data)
	case *to == "":
		*to = sqlitePath(*data)
	}
	for _, f := range []struct{ name, store string }{{"--from", *from}, {"--to", *to}} {
		if strings.Contains(f.store, "://") && !postgres.IsURL(f.store) {
			return usageError{fmt.Sprintf("%s: want a postgres:// URL or the path of a sqlite file, got %s", f.name, redactURL(f.store))}
		}
	}
	if sameStore(*from, *to) {
		return usageError{fmt.Sprintf("--from and --to name the same store, %s: copy into another one", describeStoreAt(*to))}
	}
	for _, f := range []struct{ name, store string }{{"--from", *from}, {"--to", *to}} {
		if postgres.IsURL(f.store) {
			continue
		}
		fi, err := os.Stat(f.store)
		switch {
		case err == nil && fi.IsDir():
			return usageError{fmt.Sprintf("%s: %s is a folder: name the sqlite file, such as %s", f.name, f.store, sqlitePath(f.store))}
		case errors.Is(err, os.ErrNotExist) && f.name == "--from":
			// sqlite would make it: an empty store, copied as such.
			return fmt.Errorf("--from: %s does not exist", f.store)
		}
	}

	src, err := openStoreAt(ctx, *from)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	defer src.Close()
	dst, err := openStoreAt(ctx, *to)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	defer dst.Close()
	if err := sqlstore.Copy(ctx, src, dst); err != nil {
		return err
	}
	counts, err := dst.CountRows(ctx)
	if err != nil {
		return err
	}
	var total int64
	parts := make([]string, len(counts))
	for i, c := range counts {
		parts[i] = fmt.Sprintf("%s %d", c.Table, c.Rows)
		total += c.Rows
	}
	fmt.Fprintf(stdout, "copied %s to %s: %d rows (%s)\n", describeStoreAt(*from), describeStoreAt(*to), total, strings.Join(parts, ", "))
	return nil
}

// openStoreAt opens the store at where, a postgres:// URL or a sqlite
// file, and applies pending migrations.
func openStoreAt(ctx context.Context, where string) (*sqlstore.DB, error) {
	if postgres.IsURL(where) {
		return postgres.Open(ctx, where)
	}
	return sqlite.Open(ctx, where)
}

// describeStoreAt names the store at where for messages: a Postgres URL
// without its password.
func describeStoreAt(where string) string {
	if postgres.IsURL(where) {
		return redactURL(where)
	}
	return "sqlite " + where
}

// sameStore reports whether a and b name one store: the same file, or the
// same database of the same server, however spelled. Users and passwords
// do not matter: one database is one store, whoever signs in.
func sameStore(a, b string) bool {
	if postgres.IsURL(a) != postgres.IsURL(b) {
		return false
	}
	if postgres.IsURL(a) {
		ua, errA := url.Parse(a)
		ub, errB := url.Parse(b)
		if errA != nil || errB != nil {
			return a == b
		}
		port := func(u *url.URL) string {
			if p := u.Port(); p != "" {
				return p
			}
			return "5432"
		}
		return strings.EqualFold(ua.Hostname(), ub.Hostname()) && port(ua) == port(ub) &&
			strings.Trim(ua.Path, "/") == strings.Trim(ub.Path, "/") &&
			ua.Query().Get("host") == ub.Query().Get("host")
	}
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if errA == nil && errB == nil && absA == absB {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}
