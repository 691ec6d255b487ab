package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"plane"
)

var _ plane.ProjectService = (*DB)(nil)

const projectColumns = `id, team_id, name, created_at`

// FindProjectByID returns the project with id.
func (db *DB) FindProjectByID(ctx context.Context, id int64) (*plane.Project, error) {
	return findProjectByID(ctx, db.read, id)
}

func findProjectByID(ctx context.Context, q queryer, id int64) (*plane.Project, error) {
	p, err := scanProject(q.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, plane.Errorf(plane.ENOTFOUND, "project %d not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("find project %d: %w", id, err)
	}
	return p, nil
}

// FindProjectByName returns the project named name.
func (db *DB) FindProjectByName(ctx context.Context, name string) (*plane.Project, error) {
	p, err := scanProject(db.read.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, plane.Errorf(plane.ENOTFOUND, "project %q not found", name)
	}
	if err != nil {
		return nil, fmt.Errorf("find project %q: %w", name, err)
	}
	return p, nil
}

// FindProjects returns every project, by name.
func (db *DB) FindProjects(ctx context.Context) ([]*plane.Project, error) {
	return db.findProjects(ctx, "")
}

// FindProjectsOfTeam returns the team's projects, by name.
func (db *DB) FindProjectsOfTeam(ctx context.Context, teamID int64) ([]*plane.Project, error) {
	return db.findProjects(ctx, `WHERE team_id = ?`, teamID)
}

func (db *DB) findProjects(ctx context.Context, where string, args ...any) ([]*plane.Project, error) {
	projects, err := queryAll(ctx, db.read, scanProject,
		`SELECT `+projectColumns+` FROM projects `+where+` ORDER BY name`, args...)
	if err != nil {
		return nil, fmt.Errorf("find projects: %w", err)
	}
	return projects, nil
}

// CreateProject stores p and sets its ID, and its CreatedAt when zero. A
// project without a team gets a team of its own, named after it, so that
// every project has an owner once teams matter.
func (db *DB) CreateProject(ctx context.Context, p *plane.Project) error {
	if err := plane.ValidateProjectName(p.Name); err != nil {
		return err
	}
	created := orNow(p.CreatedAt)
	var id, teamID int64
	err := db.inTx(ctx, func(tx *conn) error {
		teamID = p.TeamID
		if teamID == 0 {
			if err := tx.QueryRowContext(ctx,
				`INSERT INTO teams (name, created_at) VALUES (?, ?) RETURNING id`,
				p.Name, toMS(created)).Scan(&teamID); err != nil {
				return fmt.Errorf("create team: %w", err)
			}
		}
		return tx.QueryRowContext(ctx,
			`INSERT INTO projects (team_id, name, created_at) VALUES (?, ?, ?) RETURNING id`,
			teamID, p.Name, toMS(created)).Scan(&id)
	})
	switch {
	case db.isUnique(err):
		return conflict("name", "project %q already exists", p.Name)
	case db.isForeignKey(err):
		return plane.Errorf(plane.ENOTFOUND, "team %d not found", p.TeamID)
	case err != nil:
		return fmt.Errorf("create project %q: %w", p.Name, err)
	}
	p.ID, p.TeamID, p.CreatedAt = id, teamID, created
	return nil
}

// DeleteProject removes the project; the schema's cascades take its images,
// tokens, terminated backends and activity with it. Live backends would be
// orphaned on their drones, so they must be terminated first. The count and
// the delete share a write transaction, so no spawn slips in between.
func (db *DB) DeleteProject(ctx context.Context, id int64) error {
	return db.inTx(ctx, func(tx *conn) error {
		p, err := findProjectByID(ctx, tx, id)
		if err != nil {
			return err
		}
		var live int
		if err := tx.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM backends WHERE project_id = ? AND status <> 'terminated'`, id).Scan(&live); err != nil {
			return fmt.Errorf("delete project %q: count live backends: %w", p.Name, err)
		}
		if live > 0 {
			return plane.Errorf(plane.ECONFLICT, "project %q has %d live backends: terminate them first", p.Name, live)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM projects WHERE id = ?`, id); err != nil {
			return fmt.Errorf("delete project %q: %w", p.Name, err)
		}
		return nil
	})
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

func scanProject(s scanner) (*plane.Project, error) {
	var p plane.Project
	var created int64
	if err := s.Scan(&p.ID, &p.TeamID, &p.Name, &created); err != nil {
		return nil, err
	}
	p.CreatedAt = fromMS(created)
	return &p, nil
}
