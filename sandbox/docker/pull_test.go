package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/andromeda-runner/andromeda/sandbox"
)

// logBuffer collects a logger's text lines; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the lines logged with msg.
func (b *logBuffer) lines(msg string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range strings.Split(b.buf.String(), "\n") {
		if strings.Contains(l, "msg=\""+msg+"\"") {
			out = append(out, l)
		}
	}
	return out
}

// pullFixture is a driver pulling from a test registry that serves a new
// image, built from the conformance guest, as andromeda/worker.
type pullFixture struct {
	reg  *testRegistry
	img  testImage
	d    *Driver
	logs *logBuffer
}

// newPullFixture starts the registry serving an image (with a second
// layer of extra random bytes when extra is not zero) and a driver whose
// configuration edit changes (Registries lists the registry unless edit
// says otherwise), and removes the image from the engine when t ends,
// whether it was pulled or not.
func newPullFixture(t *testing.T, extra int, edit func(*Config, *testRegistry, testImage)) pullFixture {
	t.Helper()
	if testEnv.guestErr != nil {
		t.Fatalf("the guest binary: %v", testEnv.guestErr)
	}
	f := pullFixture{reg: newTestRegistry(t), logs: &logBuffer{}}
	f.img = buildTestImage(t, "andromeda/worker", testEnv.guest, extra)
	f.reg.add(f.img)
	cfg := testConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(f.logs, nil))
	cfg.Registries = []string{f.reg.host + "/"}
	if edit != nil {
		edit(&cfg, f.reg, f.img)
	}
	f.d = newDriver(t, cfg)
	cli := f.cli(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := cli.ImageRemove(ctx, f.img.configDigest, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove the pulled image %s: %v", f.img.configDigest, err)
		}
	})
	if f.present(t, f.img.configDigest) {
		t.Fatalf("image %s is on the engine before the test pulled it", f.img.configDigest)
	}
	return f
}

func (f pullFixture) cli(t testing.TB) *client.Client {
	t.Helper()
	cli, err := f.d.client()
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// present reports whether the engine has the image id (or reference).
func (f pullFixture) present(t testing.TB, id string) bool {
	t.Helper()
	_, err := f.cli(t).ImageInspect(context.Background(), id)
	if err != nil && !cerrdefs.IsNotFound(err) {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return err == nil
}

// refused deploys ref as service and wants it refused with ErrImage and a
// reason saying every string of want; it returns the error.
func (f pullFixture) refused(t *testing.T, service, ref string, want ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	dep, err := f.d.Deploy(ctx, sandbox.Spec{Service: service, Image: ref})
	if err == nil {
		dep.Stop(context.Background())
		t.Fatalf("Deploy(%s) = nil, want it refused saying %q", ref, want)
	}
	t.Logf("Deploy(%s) = %v", ref, err)
	if !errors.Is(err, ErrImage) {
		t.Errorf("Deploy() = %v, want errors.Is ErrImage", err)
	}
	for _, w := range append([]string{ref}, want...) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Deploy() = %v, want it to say %q", err, w)
		}
	}
	return err
}

// nothingLeft checks that no container of service is left and that the
// engine has none of the images ids, once the registry's requests ended.
func (f pullFixture) nothingLeft(t *testing.T, service string, ids ...string) {
	t.Helper()
	if !f.reg.idle(5 * time.Second) {
		t.Errorf("the engine still reads from the registry 5 s after the deploy failed")
	}
	if left := containers(t, f.d, LabelService+"="+service); len(left) > 0 {
		t.Errorf("containers left behind: %v", left)
	}
	for _, id := range ids {
		if f.present(t, id) {
			t.Errorf("image %s is on the engine after the failed pull", id)
		}
	}
}

// staysAbsent checks, for wait, that the engine does not get the image id:
// a pull the driver stopped must not finish on the engine behind its back.
func (f pullFixture) staysAbsent(t *testing.T, id string, wait time.Duration) {
	t.Helper()
	for end := time.Now().Add(wait); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if f.present(t, id) {
			t.Errorf("image %s appeared on the engine after the driver stopped its pull", id)
			return
		}
	}
}

// TestPullPinned: an image pinned by digest under a listed registry and
// absent from the engine is pulled, with its progress logged, and runs;
// a PullMaxSize equal to the sum of its layers' sizes lets it through.
func TestPullPinned(t *testing.T) {
	start := time.Now()
	f := newPullFixture(t, 256<<10, func(cfg *Config, _ *testRegistry, img testImage) {
		cfg.PullMaxSize = layersSize(img)
		cfg.PullTimeout = 15 * time.Second
	})
	ref := f.img.ref(f.reg.host)
	var mu sync.Mutex
	var steps []string // what the pull says of itself (sandbox.Progress)
	progress := sandbox.WithProgress(context.Background(), func(s string) {
		mu.Lock()
		defer mu.Unlock()
		steps = append(steps, s)
	})
	dep := deployCtx(t, progress, f.d, sandbox.Spec{Service: "pull-pinned", Image: ref})
	pulled := time.Since(start)
	mu.Lock()
	if len(steps) < 2 || steps[0] != "pulling image "+ref || !strings.HasPrefix(steps[len(steps)-1], "pulled image "+ref+" in ") {
		t.Errorf("the pull said %q; want it to say when it began and when it ended", steps)
	}
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	exit, err := dep.Invoke(ctx, input(t, "r1", map[string]any{"do": "echo", "data": "pulled"}))
	if err != nil || exit.Outcome != sandbox.OK || !strings.Contains(string(exit.Output), `"pulled"`) {
		t.Fatalf("Invoke(echo) = %+v, %v; want the echo of the pulled worker", exit, err)
	}
	if pl := dep.(sandbox.Placed).Placement(); pl.Image != f.img.configDigest {
		t.Errorf("Placement().Image = %s, want the pulled image %s", pl.Image, f.img.configDigest)
	}
	img, err := f.cli(t).ImageInspect(ctx, ref)
	if err != nil {
		t.Fatalf("inspect %s after the pull: %v", ref, err)
	}
	if img.ID != f.img.configDigest || !slices.Contains(img.RepoDigests, ref) {
		t.Errorf("the pulled image: ID %s, RepoDigests %v; want ID %s with repo digest %s", img.ID, img.RepoDigests, f.img.configDigest, ref)
	}
	for _, l := range f.img.layerDigests {
		if n := f.reg.blobGets(l); n != 1 {
			t.Errorf("layer %s was fetched %d times, want once", l, n)
		}
	}
	for _, msg := range []string{"docker driver: pulling image", "docker driver: pull progress", "docker driver: pulled image"} {
		lines := f.logs.lines(msg)
		if len(lines) == 0 || !strings.Contains(lines[0], "image="+ref) {
			t.Errorf("log lines %q: %q, want at least one naming image=%s", msg, lines, ref)
		}
	}
	t.Logf("pulled %d bytes of layers and deployed in %v; %d registry requests", layersSize(f.img), pulled.Round(time.Millisecond), f.reg.requests.Load())

	// Deployed again, the image is found on the engine: no second pull.
	before := f.reg.requests.Load()
	deploy(t, f.d, sandbox.Spec{Service: "pull-pinned-again", Image: ref})
	if after := f.reg.requests.Load(); after != before {
		t.Errorf("the second deploy made %d registry requests, want none: the image is on the engine", after-before)
	}
}

// layersSize is the sum of img's layer sizes.
func layersSize(img testImage) int64 {
	var n int64
	for _, l := range img.layers {
		n += int64(len(l))
	}
	return n
}

// TestPullTooLarge: a pull whose layers add up to more than PullMaxSize
// is stopped, the deploy refused with the size and the bound, and nothing
// is left behind: one layer a byte too large, or two layers each within
// the bound but not together.
func TestPullTooLarge(t *testing.T) {
	for _, c := range []struct {
		name  string
		extra int
		max   func(testImage) int64
	}{
		{"one layer", 0, func(img testImage) int64 { return layersSize(img) - 1 }},
		{"two layers", 512 << 10, func(img testImage) int64 { return int64(max(len(img.layers[0]), len(img.layers[1]))) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			var bound int64
			f := newPullFixture(t, c.extra, func(cfg *Config, _ *testRegistry, img testImage) {
				bound = c.max(img)
				cfg.PullMaxSize = bound
			})
			f.refused(t, "pull-too-large", f.img.ref(f.reg.host),
				"pull", "pull_max_size", strconv.FormatInt(layersSize(f.img), 10), strconv.FormatInt(bound, 10))
			f.nothingLeft(t, "pull-too-large", f.img.configDigest)
			f.staysAbsent(t, f.img.configDigest, time.Second)
		})
	}
}

// TestPullTimeout: a registry that stalls stops the pull at PullTimeout,
// in the middle of the layer or before the engine has anything to report
// (the manifest hangs); the deploy is refused saying so, and nothing is
// left behind, even once the registry sends the rest of the layer (the
// engine's pull was cancelled, not just left).
func TestPullTimeout(t *testing.T) {
	const timeout = 2 * time.Second
	for _, c := range []struct {
		name  string
		stall func(*testRegistry, testImage)
	}{
		{"layer", func(reg *testRegistry, img testImage) { reg.stallBlob(img.layerDigest, len(img.layer)/3) }},
		{"manifest", func(reg *testRegistry, img testImage) { reg.hangPath("/v2/" + img.name + "/manifests/" + img.digest) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // both wait for the timeout
			service := "pull-timeout-" + c.name
			f := newPullFixture(t, 0, func(cfg *Config, reg *testRegistry, img testImage) {
				cfg.PullTimeout = timeout
				c.stall(reg, img)
			})
			start := time.Now()
			f.refused(t, service, f.img.ref(f.reg.host), "pull", "pull_timeout "+timeout.String())
			took := time.Since(start)
			if took < timeout || took > timeout+3*time.Second {
				t.Errorf("the deploy failed after %v, want about the pull timeout %v", took, timeout)
			}
			// The engine does not end a stalled request when its pull is
			// cancelled: it stays blocked in the read until the registry
			// sends more or closes. Answering it must not complete the
			// pull.
			f.reg.resume()
			f.nothingLeft(t, service, f.img.configDigest)
			f.staysAbsent(t, f.img.configDigest, time.Second)
		})
	}
}

// TestPullCancelled: a deploy whose own context ends during a stalled
// pull fails at once, without waiting for PullTimeout and without blaming
// it, and leaves nothing behind.
func TestPullCancelled(t *testing.T) {
	f := newPullFixture(t, 0, func(cfg *Config, reg *testRegistry, img testImage) {
		cfg.PullTimeout = 30 * time.Second
		reg.stallBlob(img.layerDigest, len(img.layer)/3)
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	dep, err := f.d.Deploy(ctx, sandbox.Spec{Service: "pull-cancelled", Image: f.img.ref(f.reg.host)})
	took := time.Since(start)
	if err == nil {
		dep.Stop(context.Background())
		t.Fatalf("Deploy() = nil, want the deploy's deadline")
	}
	t.Logf("Deploy() = %v after %v", err, took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("the deploy failed after %v, want about its context's 1 s", took)
	}
	if strings.Contains(err.Error(), "pull_timeout") {
		t.Errorf("Deploy() = %v, want the deploy's own deadline named, not pull_timeout (30 s, not reached)", err)
	}
	f.reg.resume()
	f.nothingLeft(t, "pull-cancelled", f.img.configDigest)
	f.staysAbsent(t, f.img.configDigest, time.Second)
}

// TestPullWrongDigest: a pinned digest the registry does not have, or a
// registry that answers it with another manifest, is refused: the engine
// checks the manifest against the pin.
func TestPullWrongDigest(t *testing.T) {
	t.Run("unknown", func(t *testing.T) {
		f := newPullFixture(t, 0, nil)
		other := make([]byte, 32)
		rand.Read(other)
		ref := f.reg.host + "/" + f.img.name + "@sha256:" + hex.EncodeToString(other)
		f.refused(t, "pull-unknown-digest", ref, "pull", "manifest unknown")
		f.nothingLeft(t, "pull-unknown-digest", f.img.configDigest)
	})
	t.Run("tampered", func(t *testing.T) {
		f := newPullFixture(t, 0, nil)
		// The registry answers the pin with the manifest of another image
		// whose blobs it serves too: only the digest check can tell.
		evil := buildTestImage(t, f.img.name, testEnv.guest, 0)
		f.reg.add(evil)
		f.reg.serveManifest(f.img.name, f.img.digest, evil.manifest)
		t.Cleanup(func() {
			f.cli(t).ImageRemove(context.Background(), evil.configDigest, client.ImageRemoveOptions{Force: true})
		})
		f.refused(t, "pull-tampered", f.img.ref(f.reg.host), "pull", "verification failed")
		f.nothingLeft(t, "pull-tampered", f.img.configDigest, evil.configDigest)
	})
}

// TestPullUnlisted: a pinned reference under no prefix of Registries is
// refused without a connection to its registry, even when the registry
// has the image; a prefix matches whole path components only.
func TestPullUnlisted(t *testing.T) {
	for _, c := range []struct {
		name       string
		registries func(host string) []string
		want       string
	}{
		{"other prefixes", func(host string) []string {
			return []string{host + "/team/", host + "/andromeda/work", host + "0/", "127.0.0.1/"}
		}, "not under a registry"},
		{"no registries", func(string) []string { return nil }, "lists no registries"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newPullFixture(t, 0, func(cfg *Config, reg *testRegistry, _ testImage) {
				cfg.Registries = c.registries(reg.host)
			})
			f.refused(t, "pull-unlisted", f.img.ref(f.reg.host), "not on the engine", c.want)
			if n, r := f.reg.conns.Load(), f.reg.requests.Load(); n != 0 || r != 0 {
				t.Errorf("the registry had %d connections and %d requests, want none", n, r)
			}
			f.nothingLeft(t, "pull-unlisted", f.img.configDigest)
		})
	}
}
