package plane

import (
	"context"
	"time"
)

// Team owns projects; its members (users with a role) reach them.
type Team struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Project groups images, backends and API tokens.
type Project struct {
	ID        int64     `json:"id"`
	TeamID    int64     `json:"team_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// DefaultProject is created on a fresh `plane dev`.
const DefaultProject = "default"

// ValidateProjectName checks a project's name; the rules are an image name's.
func ValidateProjectName(name string) error {
	if err := ValidateImageName(name); err != nil {
		e := err.(*Error)
		return &Error{Code: e.Code, Field: "name", Message: e.Message}
	}
	return nil
}

// ProjectService stores teams and projects.
type ProjectService interface {
	FindProjectByID(ctx context.Context, id int64) (*Project, error)
	FindProjectByName(ctx context.Context, name string) (*Project, error)
	FindProjects(ctx context.Context) ([]*Project, error)
	// CreateProject stores p (in a team created for it when TeamID is 0) and
	// sets its ID; ECONFLICT when the name is taken.
	CreateProject(ctx context.Context, p *Project) error
	// FindProjectsOfTeam returns a team's projects, by name.
	FindProjectsOfTeam(ctx context.Context, teamID int64) ([]*Project, error)
	// DeleteProject removes a project with its images, tokens and
	// terminated backends; ECONFLICT while it has live backends.
	DeleteProject(ctx context.Context, id int64) error
}
