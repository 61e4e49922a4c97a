package docker

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Media types of the images the test registry serves: a Docker image
// manifest (schema 2), its image config and a gzip'd layer.
const (
	mediaManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaConfig   = "application/vnd.docker.container.image.v1+json"
	mediaLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// testImage is an image built in memory for the test registry: a gzip'd
// layer holding a static worker binary at /bin/guest (its command), maybe
// a second layer of random data, the image config and the schema 2
// manifest whose digest pins it.
type testImage struct {
	name         string   // the repository, as andromeda/worker
	layers       [][]byte // the gzip'd layer tars, the worker's first
	layerDigests []string // sha256 of each layer
	layer        []byte   // the worker's layer, layers[0]
	layerDigest  string   // its digest
	config       []byte
	configDigest string // sha256 of config: the image's ID on the engine
	manifest     []byte
	digest       string // sha256 of manifest
}

// layerEntry is a directory (a name ending in /) or a file of a layer.
type layerEntry struct {
	name string
	mode int64
	data []byte
}

// gzipLayer returns the gzip'd tar of entries and the digest of the tar
// itself (the layer's diff ID).
func gzipLayer(t testing.TB, entries []layerEntry) (gz []byte, diffID string) {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: imageTime, Typeflag: tar.TypeReg, Size: int64(len(e.data))}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("test image: %v", err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatalf("test image: %v", err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("test image: %v", err)
	}
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	zw.Write(raw.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatalf("test image: %v", err)
	}
	return out.Bytes(), digestOf(raw.Bytes())
}

// imageTime is the time of every file and of the config of test images.
var imageTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// buildTestImage builds the image of repository name from the static
// binary bin, with a second layer holding extra random bytes when extra is
// not zero. The worker's layer also holds a file of random bytes, so that
// every image is new to the engine (its ID and its layers): no test finds
// another test's image or layer already there.
func buildTestImage(t testing.TB, name, bin string, extra int) testImage {
	t.Helper()
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatalf("test image: %v", err)
	}
	nonce := make([]byte, 16)
	rand.Read(nonce)
	gz, diffID := gzipLayer(t, []layerEntry{
		{"bin/", 0o755, nil},
		{"bin/guest", 0o755, exe},
		{"etc/", 0o755, nil},
		{"etc/andromeda-test-nonce", 0o644, []byte(hex.EncodeToString(nonce) + "\n")},
		{"runtime/", 0o755, nil},
		{"service/", 0o755, nil},
		{"tmp/", 0o1777, nil},
	})
	img := testImage{name: name, layers: [][]byte{gz}}
	diffIDs := []string{diffID}
	if extra > 0 {
		data := make([]byte, extra)
		rand.Read(data)
		gz, diffID := gzipLayer(t, []layerEntry{{"data/", 0o755, nil}, {"data/extra", 0o644, data}})
		img.layers = append(img.layers, gz)
		diffIDs = append(diffIDs, diffID)
	}
	var descs []any
	for _, l := range img.layers {
		img.layerDigests = append(img.layerDigests, digestOf(l))
		descs = append(descs, map[string]any{"mediaType": mediaLayer, "size": len(l), "digest": digestOf(l)})
	}
	img.layer, img.layerDigest = img.layers[0], img.layerDigests[0]
	img.config = mustJSON(t, map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      imageTime.Format(time.RFC3339),
		"config": map[string]any{
			"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Cmd": []string{"/bin/guest"},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	img.configDigest = digestOf(img.config)
	img.manifest = mustJSON(t, map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaManifest,
		"config":        map[string]any{"mediaType": mediaConfig, "size": len(img.config), "digest": img.configDigest},
		"layers":        descs,
	})
	img.digest = digestOf(img.manifest)
	return img
}

// ref is the image's reference on the registry at host, pinned by the
// manifest's digest.
func (img testImage) ref(host string) string { return host + "/" + img.name + "@" + img.digest }

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testRegistry is a read-only registry of the Distribution API v2 over
// plain HTTP on 127.0.0.1 (which the engine allows without TLS): GET /v2/,
// GET and HEAD of manifests by name and reference and of blobs by digest.
// It counts the connections and requests it gets, and can stall a blob: it
// sends part of it and then blocks until the client goes away or the
// registry closes or resumes it. It is closed when the test ends.
type testRegistry struct {
	host     string // 127.0.0.1:<port>
	conns    atomic.Int64
	requests atomic.Int64
	active   atomic.Int64 // requests being served

	mu        sync.Mutex
	manifests map[string][]byte // by name + "@" + reference
	blobs     map[string][]byte // by digest
	stall     map[string]int    // by digest: the bytes sent before the blob stalls
	hang      map[string]bool   // by URL path: requests answered with nothing
	resumed   chan struct{}     // closed: stalled and hung requests go on
	served    map[string]int    // by "GET digest": the blob requests

	stop chan struct{}
}

// newTestRegistry starts a registry that serves nothing yet.
func newTestRegistry(t testing.TB) *testRegistry {
	t.Helper()
	r := &testRegistry{
		manifests: map[string][]byte{},
		blobs:     map[string][]byte{},
		stall:     map[string]int{},
		hang:      map[string]bool{},
		served:    map[string]int{},
		resumed:   make(chan struct{}),
		stop:      make(chan struct{}),
	}
	srv := httptest.NewUnstartedServer(r)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			r.conns.Add(1)
		}
	}
	srv.Start()
	r.host = srv.Listener.Addr().String()
	t.Cleanup(func() {
		close(r.stop)
		srv.Close()
	})
	return r
}

// add serves img: its manifest by digest and by tag latest, its blobs.
func (r *testRegistry) add(img testImage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.manifests[img.name+"@"+img.digest] = img.manifest
	r.manifests[img.name+"@latest"] = img.manifest
	r.blobs[img.configDigest] = img.config
	for i, l := range img.layers {
		r.blobs[img.layerDigests[i]] = l
	}
}

// serveManifest serves body as the manifest of name at reference ref,
// whatever its digest.
func (r *testRegistry) serveManifest(name, ref string, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.manifests[name+"@"+ref] = body
}

// stallBlob makes GETs of the blob digest send its first n bytes and then
// block until the client goes away or resume is called.
func (r *testRegistry) stallBlob(digest string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stall[digest] = n
}

// hangPath makes requests of path (as /v2/<name>/manifests/<ref>) get no
// answer at all, not even a status, until the client goes away or
// resume is called; then they get their answer.
func (r *testRegistry) hangPath(path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hang[path] = true
}

// resume lets the stalled blobs send the rest of their bytes and the hung
// requests get their answer, to a client still waiting.
func (r *testRegistry) resume() { close(r.resumed) }

// blobGets returns how many GETs of the blob digest the registry had.
func (r *testRegistry) blobGets(digest string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.served["GET "+digest]
}

// idle waits up to wait for the requests being served to end, and
// reports whether they did.
func (r *testRegistry) idle(wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for r.active.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// ServeHTTP serves the read-only part of the Distribution API v2.
func (r *testRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	r.active.Add(1)
	defer r.active.Add(-1)
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		registryError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the test registry is read-only")
		return
	}
	p := req.URL.Path
	r.mu.Lock()
	hang := r.hang[p]
	r.mu.Unlock()
	if hang {
		select {
		case <-req.Context().Done():
			return
		case <-r.stop:
			return
		case <-r.resumed:
		}
	}
	if p == "/v2/" || p == "/v2" {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}")
		return
	}
	if name, ref, ok := cutPath(p, "/manifests/"); ok {
		r.mu.Lock()
		body, found := r.manifests[name+"@"+ref]
		r.mu.Unlock()
		if !found {
			registryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
			return
		}
		w.Header().Set("Content-Type", mediaManifest)
		w.Header().Set("Docker-Content-Digest", digestOf(body))
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if req.Method == http.MethodGet {
			w.Write(body)
		}
		return
	}
	if _, digest, ok := cutPath(p, "/blobs/"); ok {
		r.mu.Lock()
		body, found := r.blobs[digest]
		stall, stalls := r.stall[digest]
		r.served[req.Method+" "+digest]++
		r.mu.Unlock()
		if !found {
			registryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Docker-Content-Digest", digest)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if req.Method == http.MethodHead {
			return
		}
		if !stalls {
			w.Write(body)
			return
		}
		w.Write(body[:min(stall, len(body))])
		w.(http.Flusher).Flush()
		select {
		case <-req.Context().Done():
		case <-r.stop:
		case <-r.resumed:
			w.Write(body[min(stall, len(body)):])
		}
		return
	}
	registryError(w, http.StatusNotFound, "NAME_UNKNOWN", "not a path of the read-only registry API")
}

// cutPath splits /v2/<name><sep><rest> into name and rest.
func cutPath(p, sep string) (name, rest string, ok bool) {
	if !strings.HasPrefix(p, "/v2/") {
		return "", "", false
	}
	i := strings.LastIndex(p, sep)
	if i <= len("/v2/") {
		return "", "", false
	}
	name, rest = p[len("/v2/"):i], p[i+len(sep):]
	return name, rest, rest != "" && !strings.Contains(rest, "/")
}

// registryError writes an error of the Distribution API.
func registryError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, message)
}
