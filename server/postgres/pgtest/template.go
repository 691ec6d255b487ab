package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Template is a database that tests get copies of: made once per test
// process, the first time one asks, by running setup on a new, empty
// database (a schema's migrations, say). Copying a prepared database costs
// a fraction of preparing each test's.
type Template struct {
	setup func(ctx context.Context, dsn string) error

	mu   sync.Mutex
	done bool
	name string // the template database, once made
	err  error  // why it could not be made
}

// NewTemplate returns a template that setup prepares. setup must close
// every connection it opens: Postgres copies no database that has any.
func NewTemplate(setup func(ctx context.Context, dsn string) error) *Template {
	return &Template{setup: setup}
}

// templates are the template databases made on the admin server, dropped
// by Run.
var templates []string

// DSN returns a libpq URL to a new database of its own, a copy of the
// template, dropped when tb's test ends. Without Postgres it skips or fails
// tb as the package's DSN does.
func (tp *Template) DSN(tb testing.TB) string {
	tb.Helper()
	base := adminURL(tb)
	name, err := tp.make(base)
	if err != nil {
		tb.Fatalf("pgtest: template: %v", err)
	}
	return create(tb, base, name)
}

// make makes the template database on first use, and returns its name.
func (tp *Template) make(base *url.URL) (string, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.done {
		return tp.name, tp.err
	}
	tp.done = true
	name, err := dbName()
	if err != nil {
		tp.err = err
		return "", err
	}
	id := pgx.Identifier{name}.Sanitize()
	if err := exec1(base, "CREATE DATABASE "+id); err != nil {
		tp.err = fmt.Errorf("create database %s: %w", name, err)
		return "", tp.err
	}
	mu.Lock()
	templates = append(templates, name)
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if err := tp.setup(ctx, dbURL(base, name)); err != nil {
		tp.err = fmt.Errorf("set up %s: %w", name, err)
		return "", tp.err
	}
	tp.name = name
	return name, nil
}
