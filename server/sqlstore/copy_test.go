package sqlstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"plane"
	"plane/migrations"
	"plane/server/sqlstore"
)

// mustFill stores every kind of row there is, through the store's API:
// what a copy must carry across. Some rows share a millisecond, so that
// the order of insertion (rowid, or the id) decides their listings.
func mustFill(t *testing.T, db *sqlstore.DB) {
	t.Helper()
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	at := time.UnixMilli(1_700_000_000_000).UTC()

	ada := &plane.User{Email: "Ada@Example.com", Name: "Ada", PasswordHash: "hash-ada", CreatedAt: at}
	check("create ada", db.CreateUser(ctx, ada))
	bob := &plane.User{Email: "bob@example.com", PasswordHash: "hash-bob", CreatedAt: at}
	check("create bob", db.CreateUser(ctx, bob))
	crew := &plane.Team{Name: "crew", CreatedAt: at}
	check("create team", db.CreateTeam(ctx, crew, ada.ID))
	used := &plane.Invite{TeamID: crew.ID, TokenHash: "used-invite", Role: plane.RoleMember, CreatedBy: ada.ID, CreatedAt: at}
	check("create invite", db.CreateInvite(ctx, used))
	_, err := db.AcceptInvite(ctx, used.TokenHash, bob.ID, at) // joins in the founder's millisecond
	check("accept invite", err)
	check("create open invite", db.CreateInvite(ctx, &plane.Invite{TeamID: crew.ID, TokenHash: "open-invite", Role: plane.RoleOwner, CreatedBy: ada.ID}))
	check("create session", db.CreateSession(ctx, &plane.Session{ID: "session-hash", UserID: bob.ID}))
	for _, ago := range []time.Duration{3 * time.Minute, time.Minute} {
		check("record login failure", db.RecordLoginFailure(ctx, "bob@example.com", time.Now().Add(-ago), time.Now().Add(-time.Hour)))
	}

	web := &plane.Project{Name: "web", TeamID: crew.ID, CreatedAt: at}
	check("create project web", db.CreateProject(ctx, web))
	api := &plane.Project{Name: "api", CreatedAt: at}
	check("create project api", db.CreateProject(ctx, api))

	public := &plane.Image{ProjectID: web.ID, Name: "site", Ref: "registry.local/site:1", Port: 8080, PullPolicy: plane.PullAlways,
		Public: true, AllowBearer: true, Env: map[string]string{"MODE": "prod"},
		Limits: plane.Limits{MaxIdleSeconds: 60, LifetimeSeconds: 3600, CPUMillis: 500, MemoryMB: 256, SuspendSeconds: 600}, WarmPool: 2, CreatedAt: at}
	check("create public image", db.CreateImage(ctx, public))
	private := &plane.Image{ProjectID: web.ID, Name: "admin", Ref: "registry.local/admin:1", Port: 80, PullPolicy: plane.PullIfNotPresent, CreatedAt: at}
	check("create private image", db.CreateImage(ctx, private))

	// Backends: two of one millisecond, one through its whole life to an
	// exit with a code (two steps of one millisecond in its history), one
	// failed, one live with a key, suspended and resumed.
	backend := func(id, key string, projectID int64) {
		t.Helper()
		_, created, err := db.CreateBackend(ctx, &plane.Backend{ID: id, ProjectID: projectID, Image: "site", ImageRef: "registry.local/site:1",
			Key: key, Env: map[string]string{"ID": id}, User: "u-" + id, Limits: plane.Limits{MaxIdleSeconds: 30, SuspendSeconds: 300}, CreatedAt: at})
		if err != nil || !created {
			t.Fatalf("create backend %s: %v, %v", id, created, err)
		}
	}
	apply := func(e plane.BackendEvent) {
		t.Helper()
		if _, applied, err := db.ApplyBackendEvent(ctx, e); err != nil || !applied {
			t.Fatalf("apply %s to %s: %v, %v", e.Status, e.BackendID, applied, err)
		}
	}
	for _, id := range []string{"zzfirst", "aasecond", "exited", "failed", "live"} {
		key := ""
		if id == "live" {
			key = "room-1"
		}
		backend(id, key, web.ID)
	}
	backend("other", "", api.ID)
	step := func(ms int64) time.Time { return at.Add(time.Duration(ms) * time.Millisecond) }
	apply(plane.BackendEvent{BackendID: "exited", DroneID: "drone-a", Status: plane.StatusLoading, Time: step(10)})
	apply(plane.BackendEvent{BackendID: "exited", Status: plane.StatusStarting, Time: step(10)})
	apply(plane.BackendEvent{BackendID: "exited", Status: plane.StatusWaiting, Time: step(20), Address: "10.0.0.1:32768"})
	apply(plane.BackendEvent{BackendID: "exited", Status: plane.StatusReady, Time: step(30)})
	apply(plane.BackendEvent{BackendID: "exited", Status: plane.StatusTerminating, Time: step(40)})
	apply(plane.BackendEvent{BackendID: "exited", Status: plane.StatusTerminated, Time: step(50), Reason: plane.ReasonExited, ExitCode: ptr(3)})
	apply(plane.BackendEvent{BackendID: "failed", DroneID: "drone-b", Status: plane.StatusTerminated, Time: step(5), Reason: plane.ReasonFailed, Error: "pull: not found"})
	apply(plane.BackendEvent{BackendID: "live", DroneID: "drone-a", Status: plane.StatusReady, Time: step(7), Address: "10.0.0.1:32769"})
	apply(plane.BackendEvent{BackendID: "live", Status: plane.StatusReady, Time: step(8), Suspended: ptr(true)})
	apply(plane.BackendEvent{BackendID: "live", Status: plane.StatusReady, Time: step(9), Suspended: ptr(false)})
	// A webhook, a user connected to the live backend (an event and its
	// delivery) and one attempt of that delivery.
	hook := &plane.Webhook{ProjectID: web.ID, URL: "https://hooks.example.com/plane", Events: []plane.ProjectEventType{plane.ProjectEventUserJoined}, Secret: "whsec_c2VjcmV0", CreatedAt: at}
	check("create webhook", db.CreateWebhook(ctx, hook))
	apply(plane.BackendEvent{BackendID: "live", Status: plane.StatusReady, Time: step(11), Connection: &plane.ConnectionChange{User: "ada", Joined: true, Users: 1}})
	due, err := db.ClaimWebhookDeliveries(ctx, time.Now(), time.Minute, 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("claim the webhook's delivery: %d, %v", len(due), err)
	}
	_, err = db.RecordWebhookAttempt(ctx, due[0], plane.AttemptOutcome{Attempt: plane.DeliveryAttempt{Time: step(12), StatusCode: 204, Duration: 3 * time.Millisecond}})
	check("record attempt", err)

	check("upsert drone-a", db.UpsertDrone(ctx, &plane.Drone{ID: "drone-a", Address: "10.0.0.1", ProxyAddress: "10.0.0.1:443",
		Version: "v1.2.3", ProtocolVersion: 3, Draining: true, Capacity: 20, Backends: 1, CPUPercent: 12.5, MemoryBytes: 1 << 30,
		Images: []string{"registry.local/site:1"}, CertNotAfter: ptr(step(90 * 24 * 3600 * 1000)), CertError: "rate limited",
		ProxyError: "bind: address in use", LastHeartbeat: step(100)}))
	check("upsert drone-b", db.UpsertDrone(ctx, &plane.Drone{ID: "drone-b", Address: "10.0.0.2", Capacity: 10, LastHeartbeat: step(100)}))

	tokens := []*plane.Token{
		{ID: "tok-b", ProjectID: web.ID, Name: "ci", Scopes: []plane.Scope{plane.ScopeBackendsRead}, CreatedAt: at},
		{ID: "tok-a", ProjectID: web.ID, Name: "deploy", Scopes: plane.AllScopes, CreatedAt: at, ExpiresAt: ptr(step(1000))},
		{ID: "tok-c", ProjectID: web.ID, Name: "old", CreatedAt: at},
	}
	for _, tok := range tokens {
		check("create token "+tok.ID, db.CreateToken(ctx, tok))
	}
	check("touch token", db.TouchToken(ctx, "tok-a", step(500)))
	check("revoke token", db.RevokeToken(ctx, "tok-c"))

	for i, a := range []*plane.Activity{
		{ProjectID: web.ID, Time: at, Actor: plane.Actor{UserID: ada.ID, Name: "Ada"}, Action: plane.ActionProjectCreate, Target: "web"},
		{ProjectID: web.ID, Time: at, Actor: plane.Actor{UserID: ada.ID, Name: "Ada"}, Action: plane.ActionImageCreate, Target: "site"},
		{ProjectID: web.ID, Time: step(60), Actor: plane.Actor{TokenID: "tok-a", Name: "deploy"}, Action: plane.ActionBackendSpawn, Target: "live", Detail: "image site"},
		{ProjectID: api.ID, Time: step(70), Actor: plane.Actor{UserID: bob.ID, Name: "bob"}, Action: plane.ActionBackendTerminate, Target: "other", Detail: "hard"},
	} {
		check(fmt.Sprint("record activity ", i), db.RecordActivity(ctx, a))
	}
	_, err = db.ClusterIdentity(ctx)
	check("cluster identity", err)
	check("signing keys", db.RegisterSigningKeys(ctx, "key-a", []string{"key-b"}))
	check("ACME state", db.UpdateACMEState(ctx, func(st *plane.ACMEState) error {
		st.Holder, st.Until, st.Values = "drone-a", step(80), map[string]string{"txt-value": "drone-a"}
		return nil
	}))
}

// contents is what the store's read API tells of everything mustFill
// stored, and how many rows each table holds.
type contents struct {
	Users    []*plane.User
	TeamsOf  map[int64][]*plane.TeamOf
	Members  map[int64][]*plane.Member
	Invites  []*plane.Invite
	Session  *plane.Session
	Failures []time.Time
	Projects []*plane.Project
	Images   map[int64][]*plane.Image
	Backends []*plane.Backend
	Drones   []*plane.Drone
	Tokens   map[int64][]*plane.Token
	Activity map[int64][]*plane.Activity
	Cluster  plane.ClusterIdentity
	ACME     *plane.ACMEState
	Counts   []sqlstore.TableCount
}

func mustRead(t *testing.T, db *sqlstore.DB) contents {
	t.Helper()
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("read %s: %v", what, err)
		}
	}
	c := contents{TeamsOf: map[int64][]*plane.TeamOf{}, Members: map[int64][]*plane.Member{},
		Images: map[int64][]*plane.Image{}, Tokens: map[int64][]*plane.Token{}, Activity: map[int64][]*plane.Activity{}}
	var err error
	c.Users, err = db.FindUsers(ctx)
	check("users", err)
	for _, u := range c.Users {
		c.TeamsOf[u.ID], err = db.FindTeamsOfUser(ctx, u.ID)
		check("teams", err)
		for _, team := range c.TeamsOf[u.ID] {
			c.Members[team.ID], err = db.FindMembers(ctx, team.ID)
			check("members", err)
		}
	}
	for _, hash := range []string{"used-invite", "open-invite"} {
		inv, err := db.FindInvite(ctx, hash)
		check("invite", err)
		c.Invites = append(c.Invites, inv)
	}
	c.Session, err = db.FindSession(ctx, "session-hash")
	check("session", err)
	c.Failures, err = db.RecentLoginFailures(ctx, "bob@example.com", time.Now().Add(-time.Hour), 10)
	check("login failures", err)
	c.Projects, err = db.FindProjects(ctx)
	check("projects", err)
	for _, p := range c.Projects {
		c.Images[p.ID], err = db.FindImages(ctx, p.ID)
		check("images", err)
		c.Tokens[p.ID], err = db.FindTokens(ctx, p.ID)
		check("tokens", err)
		c.Activity[p.ID], err = db.FindActivity(ctx, p.ID, sqlstore.MaxActivityLimit)
		check("activity", err)
	}
	c.Backends, err = db.FindBackends(ctx, plane.BackendFilter{Limit: sqlstore.MaxBackendLimit})
	check("backends", err)
	c.Drones, err = db.FindDrones(ctx)
	check("drones", err)
	c.Cluster, err = db.ClusterIdentity(ctx)
	check("cluster identity", err)
	c.ACME, err = db.FindACMEState(ctx)
	check("ACME state", err)
	c.Counts, err = db.CountRows(ctx)
	check("counts", err)
	return c
}

// wantSame fails the test for every part of got that differs from want.
func wantSame(t *testing.T, got, want contents) {
	t.Helper()
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range g.NumField() {
		if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
			t.Errorf("%s differ after the copy:\n got %s\nwant %s", g.Type().Field(i).Name, dump(g.Field(i).Interface()), dump(w.Field(i).Interface()))
		}
	}
}

func dump(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(data)
}

// Copy carries every row across, from either store to either, and back:
// the read API finds the same things in the same order, ids and all, and
// the copy takes new rows after that.
func TestCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, from := range stores {
		for _, to := range stores {
			t.Run(from.name+" to "+to.name+" and back", func(t *testing.T) {
				t.Parallel()
				src := from.MustOpen(t)
				mustFill(t, src)
				want := mustRead(t, src)
				if c := want.Counts; len(c) == 0 || slices.ContainsFunc(c, func(c sqlstore.TableCount) bool { return c.Rows == 0 }) {
					t.Fatalf("the filled store leaves a table empty: %+v", c)
				}

				dst := to.MustOpen(t)
				if err := sqlstore.Copy(ctx, src, dst); err != nil {
					t.Fatal(err)
				}
				wantSame(t, mustRead(t, dst), want)

				back := from.MustOpen(t)
				if err := sqlstore.Copy(ctx, dst, back); err != nil {
					t.Fatal(err)
				}
				wantSame(t, mustRead(t, back), want)

				for _, db := range []*sqlstore.DB{dst, back} {
					mustTakeNewRows(t, db, want)
				}
			})
		}
	}
}

// mustTakeNewRows stores a row in each table with ids of its own: new ids
// come after the copied ones.
func mustTakeNewRows(t *testing.T, db *sqlstore.DB, old contents) {
	t.Helper()
	ctx := context.Background()
	u := &plane.User{Email: "new@example.com"}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatalf("%s: create user after the copy: %v", db.Dialect(), err)
	}
	if last := old.Users[len(old.Users)-1]; u.ID <= last.ID || u.Admin {
		t.Errorf("%s: new user %+v after user %d", db.Dialect(), u, last.ID)
	}
	team := &plane.Team{Name: "new team"}
	if err := db.CreateTeam(ctx, team, u.ID); err != nil {
		t.Fatalf("%s: create team after the copy: %v", db.Dialect(), err)
	}
	p := &plane.Project{Name: "new-project"}
	if err := db.CreateProject(ctx, p); err != nil {
		t.Fatalf("%s: create project after the copy: %v", db.Dialect(), err)
	}
	if err := db.CreateImage(ctx, &plane.Image{ProjectID: p.ID, Name: "new", Ref: "new:1", Port: 80, PullPolicy: plane.PullNever}); err != nil {
		t.Fatalf("%s: create image after the copy: %v", db.Dialect(), err)
	}
	if err := db.CreateInvite(ctx, &plane.Invite{TeamID: team.ID, TokenHash: "new-invite", Role: plane.RoleMember, CreatedBy: u.ID}); err != nil {
		t.Fatalf("%s: create invite after the copy: %v", db.Dialect(), err)
	}
	if err := db.RecordActivity(ctx, &plane.Activity{ProjectID: p.ID, Actor: plane.Actor{UserID: u.ID, Name: "new"}, Action: plane.ActionProjectCreate}); err != nil {
		t.Fatalf("%s: record activity after the copy: %v", db.Dialect(), err)
	}
	if _, created, err := db.CreateBackend(ctx, &plane.Backend{ProjectID: p.ID, Image: "new", ImageRef: "new:1"}); err != nil || !created {
		t.Fatalf("%s: create backend after the copy: %v, %v", db.Dialect(), created, err)
	}
	if c, err := db.ClusterIdentity(ctx); err != nil || c != old.Cluster {
		t.Errorf("%s: cluster identity after the copy %+v, %v; want %+v", db.Dialect(), c, err, old.Cluster)
	}
}

// The copy names every table of the schema: a table a migration adds must
// join it, or the copy would leave its rows behind.
func TestCopyTablesAreTheSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := stores[0].fresh(t)
	db := stores[0].mustOpenAt(t, path)
	counts, err := db.CountRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var copied []string
	for _, c := range counts {
		copied = append(copied, c.Table)
	}
	raw, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'
		AND name NOT LIKE 'sqlite_%' AND name <> 'goose_db_version' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var schema []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		schema = append(schema, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(copied)
	if !slices.Equal(copied, schema) {
		t.Fatalf("Copy copies %v, the schema has %v", copied, schema)
	}
}

func TestCopyRefuses(t *testing.T) { eachStore(t, testCopyRefuses) }

func testCopyRefuses(t *testing.T, s store) {
	ctx := context.Background()
	src := s.MustOpen(t)
	mustFill(t, src)

	t.Run("the same store", func(t *testing.T) {
		if err := sqlstore.Copy(ctx, src, src); err == nil || !strings.Contains(err.Error(), "same store") {
			t.Fatalf("copy onto itself: %v", err)
		}
	})

	for _, to := range stores {
		t.Run("a destination with data, "+to.name, func(t *testing.T) {
			dst := to.MustOpen(t)
			MustCreateProject(t, dst, "taken")
			before, err := dst.CountRows(ctx)
			if err != nil {
				t.Fatal(err)
			}
			err = sqlstore.Copy(ctx, src, dst)
			if err == nil || !strings.Contains(err.Error(), "not empty") || !strings.Contains(err.Error(), "projects (1)") {
				t.Fatalf("copy into a store with a project: %v", err)
			}
			if after, err := dst.CountRows(ctx); err != nil || !reflect.DeepEqual(after, before) {
				t.Fatalf("the refused copy changed the destination: %+v, %v; was %+v", after, err, before)
			}
		})

		t.Run("a destination holding only the cluster's identity, "+to.name, func(t *testing.T) {
			dst := to.MustOpen(t)
			if _, err := dst.ClusterIdentity(ctx); err != nil {
				t.Fatal(err)
			}
			if err := sqlstore.Copy(ctx, src, dst); err == nil || !strings.Contains(err.Error(), "cluster (1)") {
				t.Fatalf("copy into a store with an identity: %v", err)
			}
		})

		t.Run("an older destination, "+to.name, func(t *testing.T) {
			old, version := mustOpenOlder(t, to)
			err := sqlstore.Copy(ctx, src, old)
			want := fmt.Sprintf("the destination (%s) is at migration %d, older than the source", to.name, version)
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "plane migrate on the destination") {
				t.Fatalf("copy into an older store: %v, want %q", err, want)
			}
		})

		t.Run("an older source, "+to.name, func(t *testing.T) {
			old, version := mustOpenOlder(t, to)
			err := sqlstore.Copy(ctx, old, s.MustOpen(t))
			want := fmt.Sprintf("the source (%s) is at migration %d, older than the destination", to.name, version)
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "plane migrate on the source") {
				t.Fatalf("copy from an older store: %v, want %q", err, want)
			}
		})
	}
}

// mustOpenOlder opens a new store of s migrated to the version before the
// last, with goose directly, as a release before this one left it.
func mustOpenOlder(t *testing.T, s store) (*sqlstore.DB, int64) {
	t.Helper()
	ctx := context.Background()
	where := s.blank(t)
	var raw *sql.DB
	var err error
	var p *goose.Provider
	var d sqlstore.Dialect
	switch s.name {
	case "sqlite":
		raw, err = sql.Open("sqlite3", "file:"+where+"?_foreign_keys=on")
		if err == nil {
			raw.SetMaxOpenConns(1)
			p, err = goose.NewProvider(goose.DialectSQLite3, raw, migrations.SQLite, goose.WithDisableGlobalRegistry(true))
		}
		d = sqlstore.Dialect{Name: "sqlite"}
	case "postgres":
		raw, err = sql.Open("pgx", where)
		if err == nil {
			p, err = goose.NewProvider(goose.DialectPostgres, raw, migrations.Postgres, goose.WithDisableGlobalRegistry(true))
		}
		d = sqlstore.Dialect{Name: "postgres", Numbered: true}
	default:
		t.Fatalf("no older %s store", s.name)
	}
	if err != nil {
		t.Fatal(err)
	}
	sources := p.ListSources()
	if len(sources) < 2 {
		t.Fatalf("%d migrations: no version before the last", len(sources))
	}
	version := sources[len(sources)-2].Version
	if _, err := p.UpTo(ctx, version); err != nil {
		t.Fatal(err)
	}
	db := sqlstore.New(raw, raw, d, raw.Close)
	t.Cleanup(func() { db.Close() })
	return db, version
}
