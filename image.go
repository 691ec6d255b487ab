package plane

import (
	"context"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
)

// PullPolicy says when a drone pulls an image before starting it.
type PullPolicy string

const (
	PullIfNotPresent PullPolicy = "if_not_present"
	PullAlways       PullPolicy = "always"
	PullNever        PullPolicy = "never"
)

// Valid reports whether p is a known policy.
func (p PullPolicy) Valid() bool {
	return p == PullIfNotPresent || p == PullAlways || p == PullNever
}

// DefaultImagePort is the port a backend listens on unless its image says otherwise.
const DefaultImagePort = 8080

// Image is a container image registered in a project under a short name, with
// defaults for the backends started from it.
type Image struct {
	ID          int64             `json:"-"`
	ProjectID   int64             `json:"-"`
	Name        string            `json:"name"`
	Ref         string            `json:"ref"`
	Port        int               `json:"port"`
	PullPolicy  PullPolicy        `json:"pull_policy"`
	Public      bool              `json:"public"`
	AllowBearer bool              `json:"allow_bearer"`
	Env         map[string]string `json:"env"`
	Limits                        // defaults of the backends started from it
	// WarmPool is how many started, ready, unclaimed backends of the image
	// every ready drone keeps, for spawns to claim at once (0: none).
	WarmPool  int       `json:"warm_pool"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ImageInput is the body of POST /api/v1/images and PATCH /api/v1/images/{name}.
// Nil fields are absent: defaults on create, unchanged on update.
type ImageInput struct {
	Name        *string            `json:"name,omitempty"`
	Ref         *string            `json:"ref,omitempty"`
	Port        *int               `json:"port,omitempty"`
	PullPolicy  *PullPolicy        `json:"pull_policy,omitempty"`
	Public      *bool              `json:"public,omitempty"`
	AllowBearer *bool              `json:"allow_bearer,omitempty"`
	Env         *map[string]string `json:"env,omitempty"`
	WarmPool    *int               `json:"warm_pool,omitempty"`
	LimitsInput
}

// DecodeImageInput reads one JSON image input.
func DecodeImageInput(r io.Reader) (ImageInput, error) {
	var in ImageInput
	err := DecodeJSON(r, MaxSpawnBodyBytes, &in)
	return in, err
}

// DefaultIdleSeconds is the idle limit of images that do not set one.
const DefaultIdleSeconds = 300

// NewImage builds an image from a create input, with defaults, and validates it.
func NewImage(projectID int64, in ImageInput) (*Image, error) {
	img := &Image{ProjectID: projectID, Port: DefaultImagePort, PullPolicy: PullIfNotPresent, Limits: Limits{MaxIdleSeconds: DefaultIdleSeconds}, Env: map[string]string{}}
	if in.Name == nil {
		return nil, FieldErrorf("name", "is required")
	}
	if in.Ref == nil {
		return nil, FieldErrorf("ref", "is required")
	}
	if err := img.Apply(in); err != nil {
		return nil, err
	}
	return img, nil
}

// Apply sets the fields present in in and validates the result; on error img
// is unchanged.
func (img *Image) Apply(in ImageInput) error {
	next := *img
	if in.Name != nil {
		next.Name = *in.Name
	}
	if in.Ref != nil {
		next.Ref = *in.Ref
	}
	if in.Port != nil {
		next.Port = *in.Port
	}
	if in.PullPolicy != nil {
		next.PullPolicy = *in.PullPolicy
	}
	if in.Public != nil {
		next.Public = *in.Public
	}
	if in.AllowBearer != nil {
		next.AllowBearer = *in.AllowBearer
	}
	if in.Env != nil {
		next.Env = *in.Env
		if next.Env == nil {
			next.Env = map[string]string{}
		}
	}
	if in.WarmPool != nil {
		next.WarmPool = *in.WarmPool
	}
	next.Limits = next.Limits.With(in.LimitsInput)
	if err := next.Validate(); err != nil {
		return err
	}
	*img = next
	return nil
}

// Validate checks every field.
func (img *Image) Validate() error {
	if err := ValidateImageName(img.Name); err != nil {
		return err
	}
	if err := ValidateImageRef(img.Ref); err != nil {
		return err
	}
	if img.Port < 1 || img.Port > 65535 {
		return FieldErrorf("port", "must be between 1 and 65535 (got %d)", img.Port)
	}
	if !img.PullPolicy.Valid() {
		return FieldErrorf("pull_policy", "must be if_not_present, always or never (got %q)", img.PullPolicy)
	}
	if err := ValidateEnv("env", img.Env); err != nil {
		return err
	}
	if img.WarmPool < 0 || img.WarmPool > MaxWarmPool {
		return FieldErrorf("warm_pool", "must be between 0 and %d (got %d)", MaxWarmPool, img.WarmPool)
	}
	return img.Limits.Validate()
}

var imageNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidateImageName checks an image's short name in its project.
func ValidateImageName(name string) error {
	if name == "" {
		return FieldErrorf("name", "is required")
	}
	if !imageNameRE.MatchString(name) {
		return FieldErrorf("name", "%q must be 1-63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", truncate(name, 64))
	}
	return nil
}

// imageRefRE follows the grammar of distribution/reference: optional
// registry host[:port], path components, optional :tag, optional @digest.
var imageRefRE = regexp.MustCompile(`^` +
	`(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?/)?` +
	`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
	`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?` +
	`(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`)

// ValidateImageRef checks a container image reference such as
// "plane-demo:latest" or "registry.example.com:5000/team/app@sha256:…".
func ValidateImageRef(ref string) error {
	if ref == "" {
		return FieldErrorf("ref", "is required")
	}
	if len(ref) > 255 || !imageRefRE.MatchString(ref) {
		return FieldErrorf("ref", "%q is not a valid image reference (like name:tag or registry/name:tag)", truncate(ref, 80))
	}
	return nil
}

// ImageService stores a project's images.
type ImageService interface {
	FindImage(ctx context.Context, projectID int64, name string) (*Image, error)
	FindImages(ctx context.Context, projectID int64) ([]*Image, error)
	// CreateImage stores img and sets its ID; ECONFLICT when the name is taken.
	CreateImage(ctx context.Context, img *Image) error
	// UpdateImage applies in to the named image and returns it.
	UpdateImage(ctx context.Context, projectID int64, name string, in ImageInput) (*Image, error)
	DeleteImage(ctx context.Context, projectID int64, name string) error
	// FindWarmPoolImages returns the images of every project whose
	// WarmPool is above 0, by ID.
	FindWarmPoolImages(ctx context.Context) ([]*Image, error)
}

// HasImageRef reports whether ref is among local, a drone's images as
// Docker names them (repo:tag): "demo" is "demo:latest", and
// "docker.io/library/demo" is "demo". A reference by digest is never listed
// so, and is not found.
func HasImageRef(local []string, ref string) bool {
	want := normalizeImageRef(ref)
	return slices.ContainsFunc(local, func(l string) bool { return normalizeImageRef(l) == want })
}

// normalizeImageRef spells ref as Docker lists a local image: without the
// default registry and namespace, with a tag (latest when it has none).
func normalizeImageRef(ref string) string {
	ref = strings.TrimPrefix(ref, "docker.io/")
	ref = strings.TrimPrefix(ref, "library/")
	last := ref[strings.LastIndex(ref, "/")+1:]
	if !strings.ContainsAny(last, ":@") {
		ref += ":latest"
	}
	return ref
}
