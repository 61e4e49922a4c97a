// Package dockerimg builds, on the local Docker engine, the images the
// docker driver's tests and the demo run: a static Go binary on an empty
// root (Exec), the empty root alone (Empty, the runtime of exec archive
// services), the host's node interpreter with the libraries it links
// (Node), and a Debian root file system with python3 (Python). No registry
// is needed: every image is imported from a root file system tar the
// package writes itself.
//
// Images are found again by content: each is tagged
// andromeda-test/<kind>:<hash of what went in>, so a second call finds the
// tag and returns at once, in the same process or a later one, as long as
// the engine keeps its images. The Python root file system, which takes
// minutes to make, is also kept as a tar under the user cache directory,
// so that a fresh engine imports it instead of building it again. Builds
// of one kind are serialized across processes by a lock file there.
//
// It holds no driver code and no test of the driver; callers remove the
// containers they run, never these cached images.
package dockerimg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"
)

// Image is a locally built test or demo image.
type Image struct {
	// ID is the engine's image id, "sha256:...".
	ID string
	// Ref is its local tag, andromeda-test/<kind>:<content hash>.
	Ref string
}

// Repo is the repository every image of this package is tagged in, as
// Repo + "/" + kind.
const Repo = "andromeda-test"

// Label keys set on every image of this package: LabelKind holds its kind
// (exec, empty, node, python) and LabelContent the hash its tag carries.
const (
	LabelKind    = "andromeda.test-image"
	LabelContent = "andromeda.test-content"
)

// Progress receives one line per build step (building, importing, found
// cached), for a long build to show it is alive. Set it before the first
// call; it is not safe to change while builds run. Default: discarded.
var Progress io.Writer = io.Discard

// defaultPath is the PATH every image gets, as the engine's own default.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// memo remembers, within one process, the tag an input was found or built
// under, so that repeated calls skip the work that computes the hash.
var memo = struct {
	sync.Mutex
	refs map[string]string
}{refs: map[string]string{}}

func progressf(format string, args ...any) {
	fmt.Fprintf(Progress, "dockerimg: "+format+"\n", args...)
}

// remembered returns the image a previous call of this process made for
// key, if the engine still has it.
func remembered(ctx context.Context, cli *client.Client, key string) (Image, bool) {
	memo.Lock()
	ref, ok := memo.refs[key]
	memo.Unlock()
	if !ok {
		return Image{}, false
	}
	img, err := lookup(ctx, cli, ref)
	if err != nil || img.ID == "" {
		return Image{}, false
	}
	return img, true
}

func remember(key, ref string) {
	memo.Lock()
	memo.refs[key] = ref
	memo.Unlock()
}

// lookup returns the image tagged ref, or a zero Image and no error when
// the engine has none.
func lookup(ctx context.Context, cli *client.Client, ref string) (Image, error) {
	res, err := cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return Image{}, nil
	}
	if err != nil {
		return Image{}, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return Image{ID: res.ID, Ref: ref}, nil
}

// contentTag is the tag for a sha256 sum of what went into an image.
func contentTag(sum []byte) string { return hex.EncodeToString(sum)[:20] }

// recipe is how an image is made once its root file system tar exists.
type recipe struct {
	kind    string   // exec, empty, node, python
	tag     string   // the content hash
	changes []string // Dockerfile instructions applied on import (CMD, ENV)
}

func (r recipe) ref() string { return Repo + "/" + r.kind + ":" + r.tag }

// hashRecipe adds the instructions of r to h, so that an image with the
// same files but another command gets another tag.
func hashRecipe(h io.Writer, kind string, changes []string) {
	fmt.Fprintf(h, "dockerimg/v1\x00%s\x00", kind)
	for _, c := range changes {
		fmt.Fprintf(h, "%s\x00", c)
	}
}

// importTar imports the root file system tar that write writes as r's
// image, or returns the one already tagged r.ref(). It holds r.kind's lock
// while it looks and imports, so two processes do not import the same
// content twice.
func importTar(ctx context.Context, cli *client.Client, r recipe, write func(io.Writer) error) (Image, error) {
	unlock, err := lockKind(ctx, r.kind)
	if err != nil {
		return Image{}, err
	}
	defer unlock()
	ref := r.ref()
	if img, err := lookup(ctx, cli, ref); err != nil || img.ID != "" {
		if img.ID != "" {
			progressf("%s: found %s", r.kind, ref)
		}
		return img, err
	}
	start := time.Now()
	progressf("%s: importing %s", r.kind, ref)
	changes := append([]string{
		fmt.Sprintf("LABEL %s=%s %s=%s", LabelKind, r.kind, LabelContent, r.tag),
	}, r.changes...)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(write(pw)) }()
	defer pr.Close()
	res, err := cli.ImageImport(ctx, client.ImageImportSource{Source: pr, SourceName: "-"}, ref,
		client.ImageImportOptions{Message: "built by dockerimg", Changes: changes})
	if err != nil {
		return Image{}, fmt.Errorf("import %s: %w", ref, err)
	}
	err = readMessages(res)
	res.Close()
	if err != nil {
		return Image{}, fmt.Errorf("import %s: %w", ref, err)
	}
	img, err := lookup(ctx, cli, ref)
	if err != nil {
		return Image{}, err
	}
	if img.ID == "" {
		return Image{}, fmt.Errorf("import %s: the engine reported no error but has no image of that tag", ref)
	}
	progressf("%s: imported %s as %s in %s", r.kind, ref, img.ID, time.Since(start).Round(time.Millisecond))
	return img, nil
}

// importRootfs imports fs as an image of kind with changes, tagged by the
// hash of its tar and changes, unless the engine has that tag already.
func importRootfs(ctx context.Context, cli *client.Client, kind string, fs *rootfs, changes []string) (Image, error) {
	h := sha256.New()
	hashRecipe(h, kind, changes)
	if err := fs.write(h); err != nil {
		return Image{}, fmt.Errorf("%s image: %w", kind, err)
	}
	r := recipe{kind: kind, tag: contentTag(h.Sum(nil)), changes: changes}
	img, err := importTar(ctx, cli, r, fs.write)
	if err != nil {
		return Image{}, fmt.Errorf("%s image: %w", kind, err)
	}
	return img, nil
}

// readMessages reads the engine's JSON progress stream to its end and
// returns the error it reports, if any.
func readMessages(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the engine's answer: %w", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}

// CacheDir is the directory this package keeps lock files and the Python
// root file system tar in: andromeda-test under os.UserCacheDir, or under
// the temporary directory when the user has no cache directory.
func CacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, Repo)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cache directory: %w", err)
	}
	return dir, nil
}

// lockKind takes the cross-process lock of kind's builds, waiting for
// another process's build until ctx ends. The returned func releases it.
func lockKind(ctx context.Context, kind string) (func(), error) {
	dir, err := CacheDir()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, kind+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s builds: %w", kind, err)
	}
	waited := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s builds: %w", kind, err)
		}
		if !waited {
			progressf("%s: waiting for another process's build (lock %s)", kind, path)
			waited = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s builds: %w", kind, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
