// Package migrations holds the controller's schema as goose SQL migrations,
// one folder per database: sqlite (server/sqlite) and postgres
// (server/postgres). They are embedded so that the one binary can create and
// upgrade its store without files on disk.
//
// The two folders keep the same versions with the same meaning, so that a
// store moved from one database to the other (plane admin migrate-store)
// is at the same version on both sides.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed sqlite/*.sql postgres/*.sql
var all embed.FS

// SQLite and Postgres hold each database's migrations, named
// NNNNN_description.sql, applied in order.
var (
	SQLite   = sub("sqlite")
	Postgres = sub("postgres")
)

func sub(dir string) fs.FS {
	f, err := fs.Sub(all, dir)
	if err != nil {
		panic(err) // the folders are embedded above: only a build mistake gets here
	}
	return f
}
