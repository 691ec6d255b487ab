package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"plane"
)

// ClusterIdentity returns the identity of the cluster this store belongs
// to, made at random on the first call and the same ever after. Controllers
// that share the store and start together get the same one: the first
// writer makes it, the others read it in the same transaction.
func (db *DB) ClusterIdentity(ctx context.Context) (plane.ClusterIdentity, error) {
	var c plane.ClusterIdentity
	err := db.inTx(ctx, func(tx *conn) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO cluster (one, id, created_at) VALUES (1, ?, ?)
			ON CONFLICT (one) DO NOTHING`, plane.NewClusterID(), toMS(now())); err != nil {
			return err
		}
		var created int64
		if err := tx.QueryRowContext(ctx, `SELECT id, created_at FROM cluster WHERE one = 1`).Scan(&c.ID, &created); err != nil {
			return err
		}
		c.CreatedAt = fromMS(created)
		return nil
	})
	if err != nil {
		return plane.ClusterIdentity{}, fmt.Errorf("cluster identity: %w", err)
	}
	return c, nil
}

// RegisterSigningKeys checks that a controller's signing key belongs to
// the cluster, and records it with the keys the controller accepts. The
// store keeps the IDs (auth.KeyID) of every key a controller of the cluster
// has signed with or accepted. A controller passes when there are none yet
// (the first), when it signs with one of them, or when it accepts one of
// them (the second step of a rotation: signing with the new key, accepting
// the old); otherwise it has a key of its own, which the other controllers
// would refuse (EFORBIDDEN, naming the cluster's keys).
func (db *DB) RegisterSigningKeys(ctx context.Context, sign string, accept []string) error {
	return db.inTx(ctx, func(tx *conn) error {
		known, err := queryAll(ctx, tx, func(s scanner) (string, error) {
			var id string
			return id, s.Scan(&id)
		}, `SELECT id FROM signing_keys ORDER BY created_at, id`)
		if err != nil {
			return fmt.Errorf("read the cluster's signing keys: %w", err)
		}
		ours := append([]string{sign}, accept...)
		if len(known) > 0 && !slices.ContainsFunc(ours, func(id string) bool { return slices.Contains(known, id) }) {
			return plane.Errorf(plane.EFORBIDDEN, "this controller signs with key %s, which the cluster's other controllers do not accept (the cluster's keys: %s)",
				sign, strings.Join(known, ", "))
		}
		for _, id := range ours {
			if _, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`,
				id, toMS(now())); err != nil {
				return fmt.Errorf("record signing key %s: %w", id, err)
			}
		}
		return nil
	})
}
