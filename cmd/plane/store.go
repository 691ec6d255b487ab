package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"plane/server/postgres"
	"plane/server/sqlite"
	"plane/server/sqlstore"
)

// storeEnv names the controller's store when --store is not given.
const storeEnv = "PLANE_STORE"

// storeFlag registers --store on fs, defaulting to $PLANE_STORE.
func storeFlag(fs *flag.FlagSet) *string {
	return fs.String("store", os.Getenv(storeEnv),
		"the controller's store: a postgres:// URL (several controllers share it), or empty for sqlite in <data>/controller.db (env "+storeEnv+")")
}

// sqlitePath is the sqlite store of the data folder data.
func sqlitePath(data string) string { return filepath.Join(data, "controller.db") }

// checkStore refuses a --store that names neither store.
func checkStore(store string) error {
	if store != "" && !postgres.IsURL(store) {
		return usageError{"--store: want a postgres:// URL, or nothing for sqlite in the data folder"}
	}
	return nil
}

// openStore opens the controller's store: the Postgres database at store
// when it is given, else the sqlite file of the data folder. Migrations
// are applied.
func openStore(ctx context.Context, store, data string) (*sqlstore.DB, error) {
	if err := checkStore(store); err != nil {
		return nil, err
	}
	if store != "" {
		return postgres.Open(ctx, store)
	}
	return sqlite.Open(ctx, sqlitePath(data))
}

// migrateStore applies pending migrations to the store openStore would open
// and says which it was, without a password.
func migrateStore(ctx context.Context, store, data string) (string, error) {
	if err := checkStore(store); err != nil {
		return "", err
	}
	if store != "" {
		return describeStore(store, data), postgres.Migrate(ctx, store)
	}
	return sqlitePath(data), sqlite.Migrate(ctx, sqlitePath(data))
}

// describeStore names the store for logs and messages: a Postgres URL
// without its password.
func describeStore(store, data string) string {
	if store != "" {
		return redactURL(store)
	}
	return fmt.Sprintf("sqlite %s", sqlitePath(data))
}
