package sqlite

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
	p, err := scanProject(db.read.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE id = ?`, id))
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
	rows, err := db.read.QueryContext(ctx, `SELECT `+projectColumns+` FROM projects ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("find projects: %w", err)
	}
	defer rows.Close()
	projects := []*plane.Project{}
	for rows.Next() {
		p, err := scanProject(rows)
		if err != nil {
			return nil, fmt.Errorf("find projects: %w", err)
		}
		projects = append(projects, p)
	}
	if err := rows.Err(); err != nil {
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
	err := db.inTx(ctx, func(tx *sql.Tx) error {
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
	case isUnique(err):
		return conflict("name", "project %q already exists", p.Name)
	case isForeignKey(err):
		return plane.Errorf(plane.ENOTFOUND, "team %d not found", p.TeamID)
	case err != nil:
		return fmt.Errorf("create project %q: %w", p.Name, err)
	}
	p.ID, p.TeamID, p.CreatedAt = id, teamID, created
	return nil
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
