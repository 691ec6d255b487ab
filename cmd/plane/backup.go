package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"plane/auth"
	"plane/server/sqlite"
)

// runAdminBackup copies the controller's sqlite store to a new file while
// the controller may run, and says where the copy is and how big.
func runAdminBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin backup", "Copy the controller's store, <data>/controller.db, to a new file readable by its owner only, while the controller runs or not. "+
		"The copy holds the store alone: keep <data>/"+auth.KeyFileName+" as well, or the API tokens signed with it stop working on a new machine.", stderr)
	data := fs.String("data", "./.plane", "the controller's data folder")
	to := fs.String("to", "", "the file to write (required); it must not exist")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *to == "" {
		return usageError{"--to is required"}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("plane admin backup takes no arguments, got %q (the file goes after --to)", fs.Args())}
	}
	if err := sqliteOnly("backup"); err != nil {
		return err
	}
	src := filepath.Join(*data, "controller.db")
	if err := sqlite.Backup(ctx, src, *to); err != nil {
		return err
	}
	fi, err := os.Stat(*to)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s to %s (%d bytes)\n", src, *to, fi.Size())
	return nil
}

// runAdminRestore puts a backup in place as the controller's store. It
// replaces nothing: the controller must be stopped and its store moved
// away first, so that a mistake costs no data.
func runAdminRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin restore", "Put a copy made by plane admin backup in place as <data>/controller.db. "+
		"Stop the controller and move its store away first: restore replaces no store. "+
		"A copy made by an older release is fine: the controller applies the newer migrations when it starts.", stderr)
	data := fs.String("data", "./.plane", "the controller's data folder; made if missing")
	from := fs.String("from", "", "the backup to restore (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" {
		return usageError{"--from is required"}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("plane admin restore takes no arguments, got %q (the file goes after --from)", fs.Args())}
	}
	if err := sqliteOnly("restore"); err != nil {
		return err
	}
	// As the controller makes it: the store, the signing key and NATS's
	// files in it are for the controller only. A folder made for a
	// restore that fails is removed again.
	_, err := os.Stat(*data)
	made := errors.Is(err, os.ErrNotExist)
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	dst := filepath.Join(*data, "controller.db")
	if err := sqlite.Restore(ctx, *from, dst); err != nil {
		if made {
			os.Remove(*data)
		}
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("restore: %s exists: stop the controller and move %s away first", dst, dst)
		}
		return err
	}
	fmt.Fprintf(stdout, "restored %s to %s\n", *from, dst)
	if _, err := os.Stat(filepath.Join(*data, auth.KeyFileName)); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "note: %s has no %s: the controller will make a new one, and API tokens signed with the old one will fail; copy it from the old data folder before starting the controller\n", *data, auth.KeyFileName)
	}
	return nil
}

// sqliteOnly refuses to run a backup or a restore, which know the sqlite
// store of the data folder only, when the controller's store is Postgres:
// it would copy a stale sqlite file, or put one in place that no
// controller reads. PLANE_STORE is --store's environment twin (store.go).
func sqliteOnly(cmd string) error {
	if os.Getenv(storeEnv) != "" {
		return usageError{fmt.Sprintf("plane admin %s copies the sqlite store of the data folder, but PLANE_STORE names a Postgres store: use pg_dump and pg_restore for that one", cmd)}
	}
	return nil
}
