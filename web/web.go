// Package web holds the dashboard's views: templ components that render
// plain data. Views never see a request, the store or NATS; handlers in
// package server gather the data and pick the view.
package web

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"plane"
)

// Page is what every full page needs: who is signed in, the CSRF token for
// its forms, and where in the navigation it sits.
type Page struct {
	Title string
	User  *plane.User // nil when signed out
	CSRF  string
	Nav   string // "projects", "admin" …: the main navigation's active entry
	Flash *Flash
	// AssetPath maps an asset's name to its content-hashed URL.
	AssetPath func(name string) string
}

// Flash is a one-time message shown at the top of a page.
type Flash struct {
	Kind    string // "success", "error" or "info"
	Message string
}

// Form carries what a user typed and what was wrong with it, so that a
// form shown again keeps the input and shows each error by its field.
type Form struct {
	Values map[string]string
	Errors map[string]string // by field; "" for an error of the whole form
}

// NewForm returns an empty form.
func NewForm() Form { return Form{Values: map[string]string{}, Errors: map[string]string{}} }

// Value is what was typed into field.
func (f Form) Value(field string) string { return f.Values[field] }

// Error is the error shown next to field ("" for none).
func (f Form) Error(field string) string { return f.Errors[field] }

// Checked reports whether a checkbox field was ticked.
func (f Form) Checked(field string) bool {
	v := f.Values[field]
	return v == "on" || v == "true" || v == "1"
}

// ProjectNav is the header of every project page.
type ProjectNav struct {
	Project *plane.Project
	Team    *plane.Team
	Role    plane.Role
	Tab     string // "backends", "images", "tokens", "webhooks", "activity", "settings"
}

// BasePath is the URL of the project's pages.
func (n ProjectNav) BasePath() string { return ProjectPath(n.Project.ID) }

// ProjectPath is the URL of a project's pages.
func ProjectPath(id int64) string { return "/projects/" + strconv.FormatInt(id, 10) }

// TeamPath is the URL of a team's page.
func TeamPath(id int64) string { return "/teams/" + strconv.FormatInt(id, 10) }

// Ago formats how long before now t was, for pages rendered once (tickers
// in app.js keep data-since elements current).
func Ago(t time.Time, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

// Duration formats a phase's length: milliseconds below a second.
func Duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
}

// Bytes formats a size in binary units.
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Time formats a timestamp for tables: UTC, to the second.
func Time(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

// RFC3339 is the machine form of t, for <time datetime> and data-since.
func RFC3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func itoa(n int) string     { return strconv.Itoa(n) }
func i64toa(n int64) string { return strconv.FormatInt(n, 10) }

// withNext appends a next= parameter to path when there is one.
func withNext(path, next string) string {
	if next == "" {
		return path
	}
	return path + "?next=" + url.QueryEscape(next)
}

func percent(f float64) string { return fmt.Sprintf("%.1f %%", f) }

func secondsUntil(t, now time.Time) int {
	s := int(t.Sub(now).Seconds() + 0.5)
	if s < 0 {
		return 0
	}
	return s
}

// sparkPoints scales values into an SVG polyline of w×h, the highest value
// at the top (never below a small floor, so that noise stays flat).
func sparkPoints(values []float64, w, h float64) string {
	top := 1e-9
	for _, v := range values {
		top = max(top, v)
	}
	var b strings.Builder
	step := w / float64(max(len(values)-1, 1))
	for i, v := range values {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", float64(i)*step, h-1-(h-2)*v/top)
	}
	return b.String()
}

// StatusText is a backend's status as the dashboard shows it: with the
// reason once it has terminated, like "terminated (idle)".
func StatusText(b *plane.Backend) string {
	if b.Status == plane.StatusTerminated && b.TerminationReason != "" {
		return string(b.Status) + " (" + string(b.TerminationReason) + ")"
	}
	return string(b.Status)
}

// idleVerb is what becomes of an idle backend: suspended first, with a
// suspend time, or stopped.
func idleVerb(s StatsView) string {
	if s.SuspendFor > 0 {
		return "Suspended"
	}
	return "Stops"
}

// idlePolicy says what idleness does to a backend.
func idlePolicy(s StatsView) string {
	if s.SuspendFor > 0 {
		return fmt.Sprintf("Suspended %d s after its last connection closes; stops once suspended %d s.", s.MaxIdle, s.SuspendFor)
	}
	return fmt.Sprintf("Stops %d s after its last connection closes.", s.MaxIdle)
}

func memoryLabel(s StatsView) string {
	if s.MemoryLimit > 0 {
		return "memory of " + Bytes(s.MemoryLimit)
	}
	return "memory"
}

// options offers names as a select's choices.
func options(names []string) []Option {
	out := make([]Option, len(names))
	for i, n := range names {
		out[i] = Option{Value: n, Label: n}
	}
	return out
}

// teamOptions offers the user's teams as a select's choices.
func (v ProjectsView) teamOptions() []Option {
	out := make([]Option, len(v.Teams))
	for i, t := range v.Teams {
		out[i] = Option{Value: i64toa(t.Team.ID), Label: t.Team.Name}
	}
	return out
}
