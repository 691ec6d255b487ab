package plane_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// This file keeps the import rules of docs/architecture.md ("Import
// rules") true, each rule there an entry of layoutRules: the root package imports
// nothing of the repository, the drone and the controller meet only through
// it, views stay away from handlers, stores and NATS, and so on.

// module is the module path of go.mod.
const module = "plane"

// goFile is what the layout rules look at in one Go source file.
type goFile struct {
	name    string   // slash path from the module root, for messages
	pkg     string   // slash path of its folder from the module root; "." for the root
	test    bool     // a _test.go file
	imports []string // import paths
}

// layoutRule restricts what the packages it covers may import.
type layoutRule struct {
	name string
	// pkgs are folders from the module root; "x/..." covers x and every folder below it.
	pkgs []string
	// allowed reports whether a file of pkg may import imp.
	allowed func(pkg, imp string) bool
	// sourceOnly: the rule is about the package's code, not its tests
	// (which may drive it with the real store and dispatcher).
	sourceOnly bool
}

// Import path classes.

// isStd reports whether imp belongs to the standard library: its first
// element holds no dot. The module path "plane" has none either, so repo
// paths are told apart first.
func isStd(imp string) bool {
	return !isRepo(imp) && !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".")
}

// isRepo reports whether imp is a package of this module.
func isRepo(imp string) bool { return imp == module || strings.HasPrefix(imp, module+"/") }

// within reports whether imp is the module package dir or one below it.
func within(imp, dir string) bool {
	p := module + "/" + dir
	return imp == p || strings.HasPrefix(imp, p+"/")
}

// isTestHelper reports whether imp is a test helper package of the repo, such
// as plane/drone/docker/dockertest.
func isTestHelper(imp string) bool {
	return isRepo(imp) && imp != module && strings.HasSuffix(path.Base(imp), "test")
}

// importPath is the import path of the package in folder pkg.
func importPath(pkg string) string {
	if pkg == "." {
		return module
	}
	return module + "/" + pkg
}

// covers reports whether pattern ("x" or "x/...") covers folder pkg.
func covers(pattern, pkg string) bool {
	if dir, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == dir || strings.HasPrefix(pkg, dir+"/")
	}
	return pkg == pattern
}

// repoOnly allows the standard library, third-party packages and, of the
// repo, the packages in dirs ("." is the root package), the package's own
// subpackages, and for a test-helper package (its name ends in "test", like
// drone/docker/dockertest) the package it serves: its parent.
func repoOnly(dirs ...string) func(pkg, imp string) bool {
	return func(pkg, imp string) bool {
		if !isRepo(imp) {
			return true
		}
		for _, d := range dirs {
			if importPath(d) == imp {
				return true
			}
		}
		self := importPath(pkg)
		if imp == self || strings.HasPrefix(imp, self+"/") {
			return true
		}
		return strings.HasSuffix(path.Base(pkg), "test") && imp == importPath(path.Dir(pkg))
	}
}

// layoutRules are the rules of docs/architecture.md.
var layoutRules = []layoutRule{
	{
		name: "the root package imports the standard library only",
		pkgs: []string{"."},
		allowed: func(pkg, imp string) bool {
			return isStd(imp)
		},
	},
	{
		name:    "drone/... never imports server/...: they meet only through the root package's wire contract",
		pkgs:    []string{"drone/..."},
		allowed: func(pkg, imp string) bool { return !within(imp, "server") },
	},
	{
		name:    "server/... never imports drone/...: they meet only through the root package's wire contract",
		pkgs:    []string{"server/..."},
		allowed: func(pkg, imp string) bool { return !within(imp, "drone") },
	},
	{
		name: "web imports only plane, templ and the standard library: views take plain data, never echo, sql or NATS",
		pkgs: []string{"web/..."},
		allowed: func(pkg, imp string) bool {
			switch {
			case imp == "database/sql" || strings.HasPrefix(imp, "database/sql/"):
				return false
			case isStd(imp), imp == module, within(imp, "web"):
				return true
			}
			return imp == "github.com/a-h/templ" || strings.HasPrefix(imp, "github.com/a-h/templ/")
		},
	},
	{
		name:    "dns and auth import no repo package but plane",
		pkgs:    []string{"dns/...", "auth/..."},
		allowed: repoOnly("."),
	},
	{
		name:    "server/sqlite and server/postgres import only plane, plane/migrations and the SQL they share (server/sqlstore) of the repo",
		pkgs:    []string{"server/sqlite/...", "server/postgres/..."},
		allowed: repoOnly(".", "migrations", "server/sqlstore"),
	},
	{
		name:       "server/sqlstore (the store's SQL, for both databases) imports only plane of the repo; its contract tests open both stores",
		pkgs:       []string{"server/sqlstore/..."},
		allowed:    repoOnly("."),
		sourceOnly: true,
	},
	{
		name:    "server/scheduler, server/bus and server/webhook import only plane of the repo",
		pkgs:    []string{"server/scheduler/...", "server/bus/...", "server/webhook/..."},
		allowed: repoOnly("."),
	},
	{
		name:    "server/dispatch imports only plane and natsjs (the JetStream settings) of the repo",
		pkgs:    []string{"server/dispatch/..."},
		allowed: repoOnly(".", "natsjs"),
	},
	{
		name:    "drone/docker, drone/proxy, drone/cert and drone/store import only plane (and the dns client) of the repo",
		pkgs:    []string{"drone/docker/...", "drone/proxy/...", "drone/cert/...", "drone/store/..."},
		allowed: repoOnly(".", "dns"),
	},
	{
		name: "the HTTP handlers (server) call the controller core, never the store or the dispatcher directly",
		pkgs: []string{"server"},
		allowed: func(pkg, imp string) bool {
			return !within(imp, "server/sqlite") && !within(imp, "server/postgres") && !within(imp, "server/sqlstore") && !within(imp, "server/dispatch")
		},
		sourceOnly: true,
	},
	{
		name: "server/controller (the use-cases) imports plane, auth, the scheduler and the event bus of the repo: no HTTP, no SQL",
		pkgs: []string{"server/controller/..."},
		allowed: func(pkg, imp string) bool {
			return repoOnly(".", "auth", "server/scheduler", "server/bus")(pkg, imp) && !strings.HasPrefix(imp, "github.com/labstack/") &&
				imp != "database/sql" && !strings.HasPrefix(imp, "github.com/nats-io/")
		},
	},
	{
		name:    "api (the API's answers and its Go client) imports only plane of the repo: clients need not link the server",
		pkgs:    []string{"api/..."},
		allowed: repoOnly("."),
	},
	{
		name:    "natsjs (the JetStream settings of the wire contract) imports only plane of the repo",
		pkgs:    []string{"natsjs/..."},
		allowed: repoOnly("."),
	},
	{
		name:    "migrations and assets import no repo package",
		pkgs:    []string{"migrations/...", "assets/..."},
		allowed: repoOnly(),
	},
	{
		name:    "nothing imports cmd/...: wiring depends on everything, nothing on wiring",
		pkgs:    []string{"..."},
		allowed: func(pkg, imp string) bool { return !within(imp, "cmd") },
	},
}

// rulesFor returns the rules that cover folder pkg.
func rulesFor(pkg string) []layoutRule {
	var rules []layoutRule
	for _, r := range layoutRules {
		for _, p := range r.pkgs {
			if p == "..." || covers(p, pkg) {
				rules = append(rules, r)
				break
			}
		}
	}
	return rules
}

// checkImports returns one message per import of f that breaks a rule.
func checkImports(f goFile) []string {
	var problems []string
	for _, r := range rulesFor(f.pkg) {
		if r.sourceOnly && f.test {
			continue
		}
		for _, imp := range f.imports {
			if imp == importPath(f.pkg) {
				continue // an external test package (x_test) imports the package it tests
			}
			if f.test && isTestHelper(imp) {
				continue // tests may use the repo's test helpers, such as dockertest
			}
			if !r.allowed(f.pkg, imp) {
				problems = append(problems, fmt.Sprintf("%s imports %q, breaking the rule %q", f.name, imp, r.name))
			}
		}
	}
	return problems
}

// parseGoFile reads the imports of one file from src ([]byte or string).
// Generated files report generated == true.
func parseGoFile(fset *token.FileSet, name, pkg string, src any) (f goFile, generated bool, err error) {
	af, err := parser.ParseFile(fset, name, src, parser.ImportsOnly|parser.ParseComments)
	if err != nil {
		return goFile{}, false, err
	}
	f = goFile{name: filepath.ToSlash(name), pkg: pkg, test: strings.HasSuffix(name, "_test.go")}
	for _, is := range af.Imports {
		imp, err := strconv.Unquote(is.Path.Value)
		if err != nil {
			return goFile{}, false, fmt.Errorf("%s: import %s: %v", name, is.Path.Value, err)
		}
		f.imports = append(f.imports, imp)
	}
	return f, ast.IsGenerated(af), nil
}

// moduleFiles parses every non-generated Go file of the module under root,
// skipping what the go tool skips (testdata, hidden and _ folders, nested
// modules) plus node_modules and playwright.
func moduleFiles(tb testing.TB, root string) []goFile {
	tb.Helper()
	fset := token.NewFileSet()
	var files []goFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "." {
				return nil
			}
			name := d.Name()
			if name == "testdata" || name == "node_modules" || name == "playwright" || name == "vendor" ||
				strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || !d.Type().IsRegular() {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f, generated, err := parseGoFile(fset, rel, path.Dir(rel), src)
		if err != nil {
			return err
		}
		if !generated {
			files = append(files, f)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("walking the module: %v", err)
	}
	return files
}

func TestLayoutImports(t *testing.T) {
	files := moduleFiles(t, ".")
	perPkg := map[string]int{}
	for _, f := range files {
		perPkg[f.pkg]++
		for _, p := range checkImports(f) {
			t.Error(p)
		}
	}

	// The walk must have seen the packages that exist, or the test would pass
	// on nothing.
	known := []string{".", "api", "natsjs", "server", "server/controller", "server/bus", "server/webhook",
		"server/sqlite", "server/postgres", "server/sqlstore", "server/scheduler", "server/dispatch", "web",
		"assets", "migrations", "drone", "drone/dronetest", "drone/docker", "drone/docker/dockertest", "drone/proxy", "drone/cert",
		"drone/store", "dns", "auth", "cmd/plane"}
	for _, pkg := range known {
		entries, err := os.ReadDir(pkg)
		if err != nil {
			continue // not written yet
		}
		hasGo := slices.ContainsFunc(entries, func(e fs.DirEntry) bool {
			return !e.IsDir() && strings.HasSuffix(e.Name(), ".go")
		})
		if hasGo && perPkg[pkg] == 0 {
			t.Errorf("folder %s holds Go files, but the layout check parsed none of them", pkg)
		}
	}
	for _, pkg := range []string{".", "server", "drone", "cmd/plane"} {
		if perPkg[pkg] == 0 {
			t.Errorf("the layout check found no Go file in %s", pkg)
		}
	}
	if perPkg["."] < 5 {
		t.Errorf("the layout check found %d files in the root package, want its sources", perPkg["."])
	}
	t.Logf("files per folder: %v", perPkg)
}

// TestLayoutRulesCheck shows that the checker flags forbidden imports and
// lets allowed ones through, on files held in memory.
func TestLayoutRulesCheck(t *testing.T) {
	tests := []struct {
		name    string
		file    string // slash path from the module root
		imports []string
		rule    string // part of the broken rule's name; "" when the file is fine
	}{
		// Forbidden.
		{"root imports a repo package", "backend.go", []string{"plane/server"}, "root package"},
		{"root imports a third-party package", "wire.go", []string{"github.com/nats-io/nats.go"}, "root package"},
		{"root test imports a third-party package", "wire_test.go", []string{"github.com/google/go-cmp/cmp"}, "root package"},
		{"drone imports server", "drone/agent.go", []string{"plane/server/sqlite"}, "drone/... never imports server"},
		{"drone subpackage imports server", "drone/docker/x.go", []string{"plane/server"}, "drone/... never imports server"},
		{"server imports drone", "server/x.go", []string{"plane/drone"}, "server/... never imports drone"},
		{"dispatch imports drone", "server/dispatch/x.go", []string{"plane/drone/docker"}, "server/... never imports drone"},
		{"dispatch imports sqlite", "server/dispatch/x.go", []string{"plane/server/sqlite"}, "server/dispatch imports only"},
		{"scheduler imports auth", "server/scheduler/x.go", []string{"plane/auth"}, "server/scheduler, server/bus and server/webhook"},
		{"scheduler imports natsjs", "server/scheduler/x.go", []string{"plane/natsjs"}, "server/scheduler, server/bus and server/webhook"},
		{"webhook imports the store", "server/webhook/x.go", []string{"plane/server/sqlstore"}, "server/scheduler, server/bus and server/webhook"},
		{"web imports echo", "web/page.go", []string{"github.com/labstack/echo/v4"}, "web imports only"},
		{"web imports database/sql", "web/page.go", []string{"database/sql"}, "web imports only"},
		{"web imports nats", "web/components/x.go", []string{"github.com/nats-io/nats.go"}, "web imports only"},
		{"web imports server", "web/page.go", []string{"plane/server"}, "web imports only"},
		{"auth imports server", "auth/x.go", []string{"plane/server"}, "dns and auth"},
		{"dns imports auth", "dns/x.go", []string{"plane/auth"}, "dns and auth"},
		{"sqlite imports auth", "server/sqlite/x.go", []string{"plane/auth"}, "server/sqlite and server/postgres import only"},
		{"postgres imports the shared SQL", "server/postgres/x.go", []string{"plane/server/sqlstore", "plane/migrations"}, ""},
		{"the shared SQL imports sqlite", "server/sqlstore/x.go", []string{"plane/server/sqlite"}, "server/sqlstore (the store's SQL"},
		{"the contract tests open both stores", "server/sqlstore/x_test.go", []string{"plane/server/sqlite", "plane/server/postgres"}, ""},
		{"a handler calls the shared SQL", "server/ui_images.go", []string{"plane/server/sqlstore"}, "the HTTP handlers (server) call the controller core"},
		{"docker imports drone", "drone/docker/x.go", []string{"plane/drone"}, "drone/docker, drone/proxy"},
		{"proxy imports auth", "drone/proxy/x.go", []string{"plane/auth"}, "drone/docker, drone/proxy"},
		{"store imports docker", "drone/store/x.go", []string{"plane/drone/docker"}, "drone/docker, drone/proxy"},
		{"dockertest imports drone", "drone/docker/dockertest/x.go", []string{"plane/drone"}, "drone/docker, drone/proxy"},
		{"migrations imports plane", "migrations/x.go", []string{"plane"}, "migrations and assets"},
		{"assets imports web", "assets/x.go", []string{"plane/web"}, "migrations and assets"},
		{"server imports cmd", "server/x.go", []string{"plane/cmd/plane"}, "nothing imports cmd"},
		{"test imports a server helper from drone", "drone/x_test.go", []string{"plane/server/sqlite"}, "drone/... never imports server"},
		{"non-test file imports a test helper", "server/x.go", []string{"plane/drone/docker/dockertest"}, "server/... never imports drone"},

		// Allowed.
		{"root imports stdlib", "spawn.go", []string{"encoding/json", "unicode/utf8", "crypto/rand"}, ""},
		{"root test imports root", "spawn_test.go", []string{"plane", "testing", "go/parser"}, ""},
		{"server imports its parts", "server/server.go", []string{"plane", "plane/auth", "plane/web", "plane/assets", "plane/server/controller", "plane/server/bus", "github.com/labstack/echo/v4"}, ""},
		{"a handler calls the dispatcher", "server/backend.go", []string{"plane/server/dispatch"}, "the HTTP handlers (server) call the controller core"},
		{"a handler calls the store", "server/ui_images.go", []string{"plane/server/sqlite"}, "the HTTP handlers (server) call the controller core"},
		{"a handler test drives the real store", "server/dashboard_test.go", []string{"plane/server/sqlite", "plane/server/dispatch"}, ""},
		{"sqlite imports migrations", "server/sqlite/sqlite.go", []string{"plane", "plane/migrations", "database/sql", "github.com/mattn/go-sqlite3"}, ""},
		{"sqlite external test", "server/sqlite/x_test.go", []string{"plane", "plane/server/sqlite"}, ""},
		{"dispatch imports nats", "server/dispatch/x.go", []string{"plane", "github.com/nats-io/nats.go/jetstream"}, ""},
		{"drone imports its parts", "drone/agent.go", []string{"plane", "plane/drone/docker", "plane/drone/store", "plane/drone/proxy"}, ""},
		{"docker imports dns client", "drone/cert/x.go", []string{"plane", "plane/dns"}, ""},
		{"dockertest imports its parent", "drone/docker/dockertest/x.go", []string{"plane/drone/docker", "testing"}, ""},
		{"docker test imports dockertest", "drone/docker/x_test.go", []string{"plane/drone/docker", "plane/drone/docker/dockertest"}, ""},
		{"web imports templ", "web/page.go", []string{"plane", "github.com/a-h/templ", "github.com/a-h/templ/runtime", "net/url"}, ""},
		{"web imports its components", "web/page.go", []string{"plane/web/components"}, ""},
		{"auth imports jwt", "auth/token.go", []string{"plane", "github.com/golang-jwt/jwt/v5"}, ""},
		{"migrations embeds", "migrations/migrations.go", []string{"embed"}, ""},
		{"cmd imports everything", "cmd/plane/main.go", []string{"plane", "plane/server", "plane/drone", "plane/server/sqlite", "plane/drone/docker/dockertest"}, ""},
	}
	fset := token.NewFileSet()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var src strings.Builder
			src.WriteString("// Package x is a layout test case.\npackage x\n\nimport (\n")
			for _, imp := range tt.imports {
				fmt.Fprintf(&src, "\t%q\n", imp)
			}
			src.WriteString(")\n")
			f, generated, err := parseGoFile(fset, tt.file, path.Dir(tt.file), src.String())
			if err != nil {
				t.Fatal(err)
			}
			if generated {
				t.Fatal("a hand-written file was taken as generated")
			}
			if !slices.Equal(f.imports, tt.imports) {
				t.Fatalf("parsed imports %q, want %q", f.imports, tt.imports)
			}
			problems := checkImports(f)
			if tt.rule == "" {
				for _, p := range problems {
					t.Errorf("unexpected: %s", p)
				}
				return
			}
			if len(problems) == 0 {
				t.Fatalf("%s importing %q passed, want it flagged by %q", tt.file, tt.imports, tt.rule)
			}
			found := false
			for _, p := range problems {
				if strings.Contains(p, tt.rule) && strings.Contains(p, tt.file) && strings.Contains(p, strconv.Quote(tt.imports[0])) {
					found = true
				}
			}
			if !found {
				t.Errorf("problems %q name no rule %q with file %s and import %q", problems, tt.rule, tt.file, tt.imports[0])
			}
		})
	}
}

// TestLayoutSkipsGenerated checks that generated files, such as templ's
// *_templ.go, are left out, and that files of other folders are found.
func TestLayoutSkipsGenerated(t *testing.T) {
	root := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("doc.go", "package plane\n")
	write("web/page_templ.go", "// Code generated by templ - DO NOT EDIT.\n\npackage web\n\nimport \"github.com/labstack/echo/v4\"\n")
	write("web/page.go", "package web\n\nimport \"plane/server\"\n")
	write("web/testdata/x.go", "package x\n\nimport \"plane/server\"\n")
	write("playwright/node_modules/x.go", "package x\n")
	write(".hidden/x.go", "package x\n")
	write("tools/go.mod", "module tools\n")
	write("tools/x.go", "package x\n\nimport \"plane/cmd/plane\"\n")

	files := moduleFiles(t, root)
	var names []string
	var problems []string
	for _, f := range files {
		names = append(names, f.name)
		problems = append(problems, checkImports(f)...)
	}
	if want := []string{"doc.go", "web/page.go"}; !slices.Equal(names, want) {
		t.Errorf("parsed %q, want %q", names, want)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], `web/page.go imports "plane/server"`) {
		t.Errorf("problems = %q, want one about web/page.go importing plane/server", problems)
	}
}
