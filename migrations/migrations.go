// Package migrations holds the controller's sqlite schema as goose SQL
// migrations. They are embedded so that the one binary can create and upgrade
// its store without files on disk; package server/sqlite applies them.
package migrations

import "embed"

// FS holds the migrations, named NNNNN_description.sql, applied in order.
//
//go:embed *.sql
var FS embed.FS
