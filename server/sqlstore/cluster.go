package sqlstore

import (
	"context"
	"fmt"

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
