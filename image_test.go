package plane_test

import (
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"

	"plane"
)

var digest64 = "sha256:" + strings.Repeat("0123456789abcdef", 4)

func TestNewImageDefaults(t *testing.T) {
	img, err := plane.NewImage(7, plane.ImageInput{Name: ptr("demo"), Ref: ptr("plane-demo:latest")})
	if err != nil {
		t.Fatalf("NewImage: %v", err)
	}
	want := &plane.Image{
		ProjectID:  7,
		Name:       "demo",
		Ref:        "plane-demo:latest",
		Port:       8080,
		PullPolicy: plane.PullIfNotPresent,
		Limits:     plane.Limits{MaxIdleSeconds: 300},
		Env:        map[string]string{},
	}
	if !reflect.DeepEqual(img, want) {
		t.Errorf("NewImage = %+v, want %+v", img, want)
	}
	if plane.DefaultImagePort != 8080 || plane.DefaultIdleSeconds != 300 {
		t.Errorf("defaults: port %d, idle %d; want 8080 and 300", plane.DefaultImagePort, plane.DefaultIdleSeconds)
	}
}

func TestNewImageEveryField(t *testing.T) {
	env := map[string]string{"MODE": "demo"}
	in := plane.ImageInput{
		Name: ptr("demo"), Ref: ptr("registry.example.com:5000/team/app:v1"), Port: ptr(3000),
		PullPolicy: ptr(plane.PullNever), Public: ptr(true), Env: &env,
		LimitsInput: plane.LimitsInput{MaxIdleSeconds: ptr(0), LifetimeSeconds: ptr(3600), CPUMillis: ptr(250), MemoryMB: ptr(64)},
	}
	img, err := plane.NewImage(1, in)
	if err != nil {
		t.Fatalf("NewImage: %v", err)
	}
	want := &plane.Image{
		ProjectID: 1, Name: "demo", Ref: "registry.example.com:5000/team/app:v1", Port: 3000,
		PullPolicy: plane.PullNever, Public: true, Env: map[string]string{"MODE": "demo"},
		Limits: plane.Limits{LifetimeSeconds: 3600, CPUMillis: 250, MemoryMB: 64},
	}
	if !reflect.DeepEqual(img, want) {
		t.Errorf("NewImage = %+v, want %+v", img, want)
	}
}

func TestNewImageInvalid(t *testing.T) {
	base := func(edit func(in *plane.ImageInput)) plane.ImageInput {
		in := plane.ImageInput{Name: ptr("demo"), Ref: ptr("plane-demo:latest")}
		edit(&in)
		return in
	}
	tests := []struct {
		name     string
		in       plane.ImageInput
		field    string
		contains string
	}{
		{"no name", base(func(in *plane.ImageInput) { in.Name = nil }), "name", "is required"},
		{"no ref", base(func(in *plane.ImageInput) { in.Ref = nil }), "ref", "is required"},
		{"empty name", base(func(in *plane.ImageInput) { in.Name = ptr("") }), "name", "is required"},
		{"empty ref", base(func(in *plane.ImageInput) { in.Ref = ptr("") }), "ref", "is required"},
		{"bad name", base(func(in *plane.ImageInput) { in.Name = ptr("-demo") }), "name", "starting with a letter or digit"},
		{"bad ref", base(func(in *plane.ImageInput) { in.Ref = ptr("Plane-Demo") }), "ref", "not a valid image reference"},
		{"port 0", base(func(in *plane.ImageInput) { in.Port = ptr(0) }), "port", "between 1 and 65535"},
		{"port 65536", base(func(in *plane.ImageInput) { in.Port = ptr(65536) }), "port", "between 1 and 65535"},
		{"pull policy", base(func(in *plane.ImageInput) { in.PullPolicy = ptr(plane.PullPolicy("sometimes")) }), "pull_policy", "sometimes"},
		{"empty pull policy", base(func(in *plane.ImageInput) { in.PullPolicy = ptr(plane.PullPolicy("")) }), "pull_policy", ""},
		{"reserved env", base(func(in *plane.ImageInput) { in.Env = &map[string]string{"PLANE_BACKEND_KEY": "x"} }), "env", "set by Plane"},
		{"negative idle", base(func(in *plane.ImageInput) { in.MaxIdleSeconds = ptr(-1) }), "max_idle_seconds", "negative"},
		{"lifetime too long", base(func(in *plane.ImageInput) { in.LifetimeSeconds = ptr(plane.MaxLifetimeSeconds + 1) }), "lifetime_seconds", "at most"},
		{"cpu too large", base(func(in *plane.ImageInput) { in.CPUMillis = ptr(plane.MaxCPUMillis + 1) }), "cpu_millis", "at most"},
		{"memory 5", base(func(in *plane.ImageInput) { in.MemoryMB = ptr(5) }), "memory_mb", "at least 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := plane.NewImage(1, tt.in)
			if img != nil {
				t.Errorf("NewImage returned an image with an error: %+v", img)
			}
			assertInvalid(t, err, tt.field, tt.contains)
		})
	}
}

// snapshot copies an image deeply enough to compare it after Apply.
func snapshot(img *plane.Image) plane.Image {
	c := *img
	c.Env = maps.Clone(img.Env)
	return c
}

func TestImageApply(t *testing.T) {
	img, err := plane.NewImage(1, plane.ImageInput{Name: ptr("demo"), Ref: ptr("plane-demo:latest")})
	if err != nil {
		t.Fatal(err)
	}

	// A partial update changes only the fields present.
	if err := img.Apply(plane.ImageInput{Port: ptr(9000), Env: &map[string]string{"A": "1"}, Public: ptr(true)}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := plane.Image{ProjectID: 1, Name: "demo", Ref: "plane-demo:latest", Port: 9000, PullPolicy: plane.PullIfNotPresent,
		Public: true, Limits: plane.Limits{MaxIdleSeconds: 300}, Env: map[string]string{"A": "1"}}
	if !reflect.DeepEqual(*img, want) {
		t.Fatalf("after Apply: %+v, want %+v", *img, want)
	}

	// An env pointing to a nil map clears it to an empty, non-nil map.
	var nilEnv map[string]string
	if err := img.Apply(plane.ImageInput{Env: &nilEnv}); err != nil {
		t.Fatalf("Apply(nil env): %v", err)
	}
	if img.Env == nil || len(img.Env) != 0 {
		t.Errorf("after Apply(nil env): Env = %#v, want an empty map", img.Env)
	}

	// An empty input changes nothing.
	before := snapshot(img)
	if err := img.Apply(plane.ImageInput{}); err != nil {
		t.Fatalf("Apply(empty): %v", err)
	}
	if !reflect.DeepEqual(*img, before) {
		t.Errorf("Apply(empty) changed the image: %+v, want %+v", *img, before)
	}
}

// TestImageApplyUnchangedOnError applies inputs that mix valid and invalid
// fields: the image must keep every old value.
func TestImageApplyUnchangedOnError(t *testing.T) {
	tests := []struct {
		name  string
		in    plane.ImageInput
		field string
	}{
		{"bad port with good name", plane.ImageInput{Name: ptr("renamed"), Port: ptr(0)}, "port"},
		{"bad ref with good env", plane.ImageInput{Ref: ptr("UPPER"), Env: &map[string]string{"B": "2"}}, "ref"},
		{"bad env with good policy", plane.ImageInput{PullPolicy: ptr(plane.PullAlways), Env: &map[string]string{"PORT": "1"}}, "env"},
		{"bad memory with good public", plane.ImageInput{Public: ptr(true), LimitsInput: plane.LimitsInput{MemoryMB: ptr(1), CPUMillis: ptr(100)}}, "memory_mb"},
		{"bad name with good limits", plane.ImageInput{Name: ptr(""), LimitsInput: plane.LimitsInput{MaxIdleSeconds: ptr(5), LifetimeSeconds: ptr(10)}}, "name"},
		{"bad pull policy", plane.ImageInput{PullPolicy: ptr(plane.PullPolicy("ALWAYS")), Port: ptr(81)}, "pull_policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"A": "1"}
			img, err := plane.NewImage(3, plane.ImageInput{Name: ptr("demo"), Ref: ptr("plane-demo:latest"), Env: &env, LimitsInput: plane.LimitsInput{CPUMillis: ptr(200)}})
			if err != nil {
				t.Fatal(err)
			}
			before := snapshot(img)
			assertInvalid(t, img.Apply(tt.in), tt.field, "")
			if !reflect.DeepEqual(*img, before) {
				t.Errorf("Apply with an error changed the image:\n got %+v\nwant %+v", *img, before)
			}
		})
	}
}

func TestPullPolicyValid(t *testing.T) {
	for _, tt := range []struct {
		p    plane.PullPolicy
		want bool
	}{
		{plane.PullIfNotPresent, true}, {plane.PullAlways, true}, {plane.PullNever, true},
		{"", false}, {"Always", false}, {"if-not-present", false},
	} {
		if got := tt.p.Valid(); got != tt.want {
			t.Errorf("PullPolicy(%q).Valid() = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestValidateImageName(t *testing.T) {
	for _, tt := range []struct {
		name  string
		valid bool
	}{
		{"demo", true}, {"a", true}, {"0", true}, {"my_app.v2-beta", true}, {strings.Repeat("a", 63), true},
		{"", false}, {strings.Repeat("a", 64), false}, {"Demo", false}, {"-demo", false}, {".demo", false},
		{"_demo", false}, {"de mo", false}, {"demo/x", false}, {"demo:latest", false}, {"démo", false},
	} {
		err := plane.ValidateImageName(tt.name)
		if tt.valid != (err == nil) {
			t.Errorf("ValidateImageName(%q) = %v, want valid = %v", tt.name, err, tt.valid)
		}
		if err != nil {
			assertInvalid(t, err, "name", "")
		}
		// Projects follow the same rules.
		if perr := plane.ValidateProjectName(tt.name); (perr == nil) != (err == nil) {
			t.Errorf("ValidateProjectName(%q) = %v, but ValidateImageName = %v", tt.name, perr, err)
		} else if perr != nil {
			assertInvalid(t, perr, "name", "")
		}
	}
}

func TestValidateImageRef(t *testing.T) {
	valid := []string{
		"plane-demo:latest",
		"nginx",
		"nginx:1.25-alpine",
		"registry.example.com:5000/team/app:v1",
		"app@" + digest64,
		"app:v1@" + digest64,
		"registry.example.com/team/app@" + digest64,
		"localhost/x/y:z",
		"localhost:5000/app",
		"docker.io/library/nginx:latest",
		"Registry.Example.COM/app", // hosts are case-insensitive
		"[::1]:5000/app:v1",
		"a_b", "a__b", "a-b", "a---b", "a.b",
		"app:" + strings.Repeat("t", 128),
		"app:_tag",
		"app:V1.0-RC_1",
		strings.Repeat("a", 255),
	}
	for _, ref := range valid {
		if err := plane.ValidateImageRef(ref); err != nil {
			t.Errorf("ValidateImageRef(%.80q) = %v, want nil", ref, err)
		}
	}

	invalid := []struct {
		ref      string
		contains string
	}{
		{"", "is required"},
		{"Plane-Demo:latest", "not a valid image reference"},
		{"NGINX", "not a valid image reference"},
		{"registry.example.com/Team/app", "not a valid image reference"},
		{"plane demo", "not a valid image reference"},
		{" nginx", "not a valid image reference"},
		{"nginx ", "not a valid image reference"},
		{"nginx\n", "not a valid image reference"},
		{"nginx\x00", "not a valid image reference"},
		{"a::b", "not a valid image reference"},
		{"app/", "not a valid image reference"},
		{"/app", "not a valid image reference"},
		{"a//b", "not a valid image reference"},
		{"app:", "not a valid image reference"},
		{"app:-tag", "not a valid image reference"},
		{"app:.tag", "not a valid image reference"},
		{"app:" + strings.Repeat("t", 129), "not a valid image reference"},
		{"app@", "not a valid image reference"},
		{"app@sha256:abc", "not a valid image reference"},
		{"app@sha256:" + strings.Repeat("g", 64), "not a valid image reference"},
		{"app@" + digest64 + ":v1", "not a valid image reference"},
		{"_app", "not a valid image reference"},
		{"app_", "not a valid image reference"},
		{"app-", "not a valid image reference"},
		{"a.-b", "not a valid image reference"},
		{"a___b", "not a valid image reference"},
		{"http://registry/app", "not a valid image reference"},
		{"registry:port/app", "not a valid image reference"},
		{"-registry.com/app", "not a valid image reference"},
		{"ápp", "not a valid image reference"},
		{strings.Repeat("a", 256), "not a valid image reference"},
		{"registry.example.com/" + strings.Repeat("a", 255-len("registry.example.com/")+1), "not a valid image reference"},
	}
	for _, tt := range invalid {
		t.Run(fmt.Sprintf("%.40q", tt.ref), func(t *testing.T) {
			err := plane.ValidateImageRef(tt.ref)
			assertInvalid(t, err, "ref", tt.contains)
			if len(err.Error()) > 200 {
				t.Errorf("message is %d bytes long: long references should be cut", len(err.Error()))
			}
		})
	}
}

func TestHasImageRef(t *testing.T) {
	local := []string{"demo:latest", "ghcr.io/acme/app:v2", "registry.example.com:5000/team/svc:1.0"}
	for _, tc := range []struct {
		ref  string
		want bool
	}{
		{"demo", true},
		{"demo:latest", true},
		{"docker.io/library/demo", true},
		{"library/demo:latest", true},
		{"demo:v1", false},
		{"ghcr.io/acme/app:v2", true},
		{"ghcr.io/acme/app", false}, // latest is not v2
		{"registry.example.com:5000/team/svc:1.0", true},
		{"registry.example.com:5000/team/svc", false}, // the port's colon is not a tag
		{"demo@sha256:" + strings.Repeat("a", 64), false},
		{"", false},
	} {
		if got := plane.HasImageRef(local, tc.ref); got != tc.want {
			t.Errorf("HasImageRef(%q) = %v, want %v", tc.ref, got, tc.want)
		}
	}
}
