package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"plane"
)

var _ plane.ImageService = (*DB)(nil)

const imageColumns = `id, project_id, name, ref, port, pull_policy, public, allow_bearer, env,
	max_idle_seconds, lifetime_seconds, cpu_millis, memory_mb, suspend_seconds, warm_pool, created_at, updated_at`

// FindImage returns the image of the project named name.
func (db *DB) FindImage(ctx context.Context, projectID int64, name string) (*plane.Image, error) {
	return findImage(ctx, db.read, projectID, name)
}

func findImage(ctx context.Context, q queryer, projectID int64, name string) (*plane.Image, error) {
	img, err := scanImage(q.QueryRowContext(ctx,
		`SELECT `+imageColumns+` FROM images WHERE project_id = ? AND name = ?`, projectID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, plane.Errorf(plane.ENOTFOUND, "image %q not found", name)
	}
	if err != nil {
		return nil, fmt.Errorf("find image %q: %w", name, err)
	}
	return img, nil
}

// FindImages returns the project's images, by name.
func (db *DB) FindImages(ctx context.Context, projectID int64) ([]*plane.Image, error) {
	images, err := queryAll(ctx, db.read, scanImage,
		`SELECT `+imageColumns+` FROM images WHERE project_id = ? ORDER BY name`, projectID)
	if err != nil {
		return nil, fmt.Errorf("find images: %w", err)
	}
	return images, nil
}

// FindWarmPoolImages returns the images of every project with a warm pool,
// by ID: the controller keeps their pools on every drone, whoever's project
// they belong to.
func (db *DB) FindWarmPoolImages(ctx context.Context) ([]*plane.Image, error) {
	images, err := queryAll(ctx, db.read, scanImage,
		`SELECT `+imageColumns+` FROM images WHERE warm_pool > 0 ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("find warm pool images: %w", err)
	}
	return images, nil
}

// CreateImage validates and stores img, and sets its ID and timestamps.
func (db *DB) CreateImage(ctx context.Context, img *plane.Image) error {
	if err := img.Validate(); err != nil {
		return err
	}
	env, err := marshalEnv(img.Env)
	if err != nil {
		return err
	}
	created := orNow(img.CreatedAt)
	var id int64
	err = db.write.QueryRowContext(ctx, `
		INSERT INTO images (project_id, name, ref, port, pull_policy, public, allow_bearer, env,
			max_idle_seconds, lifetime_seconds, cpu_millis, memory_mb, suspend_seconds, warm_pool, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		img.ProjectID, img.Name, img.Ref, img.Port, img.PullPolicy, img.Public, img.AllowBearer, env,
		img.MaxIdleSeconds, img.LifetimeSeconds, img.CPUMillis, img.MemoryMB, img.SuspendSeconds, img.WarmPool, toMS(created), toMS(created),
	).Scan(&id)
	switch {
	case db.isUnique(err):
		return conflict("name", "image %q already exists", img.Name)
	case db.isForeignKey(err):
		return plane.Errorf(plane.ENOTFOUND, "project %d not found", img.ProjectID)
	case err != nil:
		return fmt.Errorf("create image %q: %w", img.Name, err)
	}
	img.ID, img.CreatedAt, img.UpdatedAt = id, created, created
	if img.Env == nil {
		img.Env = map[string]string{}
	}
	return nil
}

// UpdateImage applies in to the named image and returns the result; a
// rename onto a taken name is ECONFLICT.
func (db *DB) UpdateImage(ctx context.Context, projectID int64, name string, in plane.ImageInput) (*plane.Image, error) {
	var img *plane.Image
	err := db.inTx(ctx, func(tx *conn) error {
		var err error
		if img, err = findImage(ctx, tx, projectID, name); err != nil {
			return err
		}
		if err := img.Apply(in); err != nil {
			return err
		}
		env, err := marshalEnv(img.Env)
		if err != nil {
			return err
		}
		img.UpdatedAt = now()
		_, err = tx.ExecContext(ctx, `
			UPDATE images SET name = ?, ref = ?, port = ?, pull_policy = ?, public = ?, allow_bearer = ?, env = ?,
				max_idle_seconds = ?, lifetime_seconds = ?, cpu_millis = ?, memory_mb = ?, suspend_seconds = ?, warm_pool = ?,
				updated_at = ?
			WHERE id = ?`,
			img.Name, img.Ref, img.Port, img.PullPolicy, img.Public, img.AllowBearer, env,
			img.MaxIdleSeconds, img.LifetimeSeconds, img.CPUMillis, img.MemoryMB, img.SuspendSeconds, img.WarmPool,
			toMS(img.UpdatedAt), img.ID)
		if db.isUnique(err) {
			return conflict("name", "image %q already exists", img.Name)
		}
		if err != nil {
			return fmt.Errorf("update image %q: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return img, nil
}

// DeleteImage removes the named image. Backends started from it keep its
// name and reference.
func (db *DB) DeleteImage(ctx context.Context, projectID int64, name string) error {
	res, err := db.write.ExecContext(ctx, `DELETE FROM images WHERE project_id = ? AND name = ?`, projectID, name)
	if err != nil {
		return fmt.Errorf("delete image %q: %w", name, err)
	}
	return rowAffected(res, "image %q not found", name)
}

func scanImage(s scanner) (*plane.Image, error) {
	var img plane.Image
	var env string
	var created, updated int64
	if err := s.Scan(&img.ID, &img.ProjectID, &img.Name, &img.Ref, &img.Port, &img.PullPolicy, &img.Public, &img.AllowBearer, &env,
		&img.MaxIdleSeconds, &img.LifetimeSeconds, &img.CPUMillis, &img.MemoryMB, &img.SuspendSeconds, &img.WarmPool, &created, &updated); err != nil {
		return nil, err
	}
	var err error
	if img.Env, err = unmarshalEnv(env); err != nil {
		return nil, err
	}
	img.CreatedAt, img.UpdatedAt = fromMS(created), fromMS(updated)
	return &img, nil
}
