package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/mattn/go-sqlite3"
)

// gooseTable is goose's record of applied migrations: a sqlite file without
// it is not a Plane store.
const gooseTable = "goose_db_version"

// backupBusyTimeout bounds the wait of Backup's connection for a lock held
// by the controller (as during a WAL checkpoint that resets the log).
const backupBusyTimeout = 5000 // milliseconds

// Backup writes a consistent copy of the store at srcPath to dstPath, while
// a controller may go on writing to it: VACUUM INTO reads one snapshot, so
// the copy holds every transaction committed before it began and none
// half-done. It refuses an existing dstPath, and overwrites nothing.
//
// The copy holds password hashes and session ids, so it is never readable
// by others, not even for a moment: sqlite creates VACUUM INTO's file 0644
// (less the umask), so Backup creates an empty 0600 file in dstPath's folder
// first, which VACUUM INTO accepts as its target, checks the result with
// PRAGMA integrity_check, and links it into place only then.
//
// Backup reads srcPath on a read-only connection, which needs the store's
// -shm file, as the controller's own connections do: run it as the
// controller's user. When no controller has the store open, that
// connection leaves an empty -wal and a -shm file beside it, with the
// store's mode; the next Open uses them.
func Backup(ctx context.Context, srcPath, dstPath string) error {
	fi, err := os.Stat(srcPath)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("backup: %s is not a file", srcPath)
	}
	if err := refuseExisting(dstPath); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	tmp, err := createTemp(dstPath)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp) // after the link, a second name of the copy

	src, err := sql.Open("sqlite3", fileURI(srcPath, url.Values{
		"mode":          {"ro"},
		"_busy_timeout": {fmt.Sprint(backupBusyTimeout)},
	}))
	if err != nil {
		return fmt.Errorf("backup: open %s: %w", srcPath, err)
	}
	defer src.Close()
	// VACUUM INTO takes a filename, not a URI, as long as it does not
	// begin with "file:": an absolute path never does.
	if _, err := src.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		return fmt.Errorf("backup: copy %s: %w", srcPath, storeError(err))
	}
	if err := src.Close(); err != nil {
		return fmt.Errorf("backup: close %s: %w", srcPath, err)
	}
	if err := checkStore(ctx, tmp); err != nil {
		return fmt.Errorf("backup: the copy of %s: %w", srcPath, err)
	}
	// VACUUM INTO syncs its output as the source connection's synchronous
	// setting says; the copy must be on disk before it has its name.
	if err := syncFile(tmp); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := install(tmp, dstPath); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// Restore puts the backup at backupPath in place as the store at dstPath.
// The controller must be stopped and its old store moved away first:
// Restore refuses an existing dstPath rather than replacing a store that a
// controller may have open. It refuses a -wal or -journal file of dstPath
// that holds data too, since sqlite would apply it to the restored store:
// such a file belongs with the store that was moved away. Empty ones, and
// the -shm file, are stale and removed.
//
// Restore checks the backup first (PRAGMA integrity_check, and goose's
// migration table, which marks a Plane store), on its copy in dstPath's
// folder, so that what it checks is what it installs. The copy is 0600,
// synced, and given its name only once complete. dstPath's folder must
// exist.
//
// A backup made by an older release is fine: Open applies the migrations
// it lacks when the controller starts.
func Restore(ctx context.Context, backupPath, dstPath string) error {
	if err := refuseExisting(dstPath); err != nil {
		return fmt.Errorf("restore: %w: stop the controller and move it away first", err)
	}
	if err := refuseJournals(dstPath); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	src, err := os.Open(backupPath)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer src.Close()
	if fi, err := src.Stat(); err != nil {
		return fmt.Errorf("restore: %w", err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("restore: %s is not a file", backupPath)
	}
	tmp, err := createTemp(dstPath)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp)
	if err := copyFile(ctx, tmp, src); err != nil {
		return fmt.Errorf("restore: copy %s: %w", backupPath, err)
	}
	if err := checkStore(ctx, tmp); err != nil {
		return fmt.Errorf("restore: %s: %w", backupPath, err)
	}
	if err := removeStale(dstPath); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := install(tmp, dstPath); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// checkStore checks that the file at path is a sound sqlite database that
// goose has migrated; its error does not name the file.
func checkStore(ctx context.Context, path string) error {
	// immutable: no locks and no -wal or -shm files: nothing else has this
	// file open, and the check must not change it.
	db, err := sql.Open("sqlite3", fileURI(path, url.Values{"mode": {"ro"}, "immutable": {"1"}}))
	if err != nil {
		return err
	}
	defer db.Close()
	if fi, err := os.Stat(path); err == nil && fi.Size() == 0 {
		// sqlite takes an empty file for an empty database.
		return errors.New("an empty file, not a Plane store")
	}
	// At most 10 problems: enough to tell what is wrong.
	rows, err := db.QueryContext(ctx, `PRAGMA integrity_check(10)`)
	if err != nil {
		return storeError(err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return storeError(err)
		}
		problems = append(problems, p)
	}
	if err := rows.Err(); err != nil {
		return storeError(err)
	}
	if len(problems) != 1 || problems[0] != "ok" {
		return fmt.Errorf("a corrupt sqlite database: integrity check: %s", strings.Join(problems, "; "))
	}
	var n int
	if err := db.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, gooseTable).Scan(&n); err != nil {
		return storeError(err)
	}
	if n == 0 {
		return fmt.Errorf("a sqlite database, but not a Plane store: it has no %s table", gooseTable)
	}
	return nil
}

// storeError words sqlite's answer to a file that is no sound database.
func storeError(err error) error {
	var e sqlite3.Error
	if errors.As(err, &e) {
		switch e.Code {
		case sqlite3.ErrNotADB:
			return fmt.Errorf("not a sqlite database: %w", err)
		case sqlite3.ErrCorrupt:
			return fmt.Errorf("a corrupt sqlite database: %w", err)
		}
	}
	return err
}

// fileURI builds a sqlite URI for mattn/go-sqlite3 like dsn in sqlite.go,
// escaping '%', '?' and '#' so that they stay part of the path. A copy, so
// that this file does not depend on a helper that may move.
func fileURI(path string, params url.Values) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc + "?" + params.Encode()
}

// refuseExisting fails when path exists, with an error that is
// fs.ErrExist.
func refuseExisting(path string) error {
	_, err := os.Lstat(path)
	if err == nil {
		return existsError(path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// existsError says that a file is in the way. It is fs.ErrExist.
type existsError string

func (e existsError) Error() string { return string(e) + " already exists" }

func (e existsError) Is(target error) bool { return target == fs.ErrExist }

// refuseJournals fails when path's -wal or -journal file holds data: sqlite
// would replay it into whatever file next has path's name.
func refuseJournals(path string) error {
	for _, p := range []string{path + "-wal", path + "-journal"} {
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if fi.Size() > 0 {
			return fmt.Errorf("%s holds changes of the store that was at %s: move it away with that store, or remove it to drop them (and stop the controller if it runs)", p, path)
		}
	}
	return nil
}

// removeStale removes path's empty -wal and -journal files and its -shm
// file: they belong to the store that was moved away.
func removeStale(path string) error {
	if err := refuseJournals(path); err != nil {
		return err
	}
	for _, p := range []string{path + "-wal", path + "-journal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale %s: %w", p, err)
		}
	}
	return nil
}

// createTemp creates an empty file, 0600, beside path, and returns its
// absolute path.
func createTemp(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(abs)
	// Named here rather than in CreateTemp's error, which names the
	// temporary file.
	if _, err := os.Stat(dir); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(abs)+".tmp-*")
	if err != nil {
		return "", err
	}
	// CreateTemp asks for 0600, which the umask cannot widen; a chmod
	// would only matter on a filesystem that ignores modes.
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// copyFile copies src into the file at path and syncs it.
func copyFile(ctx context.Context, path string, src io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(f, readerCtx{ctx, src}); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// readerCtx stops a copy when ctx ends.
type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// install gives the complete file at tmp the name path, unless path
// exists. A hard link cannot replace a file, unlike a rename, so a file
// that appeared at path since refuseExisting is left alone; on a
// filesystem without hard links (FAT), it checks once more and renames.
// The folder is synced, so that the name survives a power loss.
func install(tmp, path string) error {
	err := os.Link(tmp, path)
	if errors.Is(err, fs.ErrExist) {
		return existsError(path)
	}
	if err != nil {
		if err := refuseExisting(path); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Some filesystems cannot sync a folder; the file itself is synced.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
