package node_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// klyntarTarGz is a tar.gz as tar czf makes it, not Andromeda's canonical
// packing: a directory entry, real times and modes, files in the given
// order.
func klyntarTarGz(t *testing.T, files map[string][]byte, order ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	now := time.Now()
	for _, name := range order {
		if strings.HasSuffix(name, "/") {
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o775, ModTime: now, Uname: "dev"})
			continue
		}
		b := files[name]
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o664, Size: int64(len(b)), ModTime: now, Uname: "dev"}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Close()
	return buf.Bytes()
}

// postSeed posts body to the seed's POST /service and returns the status,
// the body (OK or ERR) and the Andromeda-Reason header.
func postSeed(t *testing.T, n *testNode, body string) (int, string, string) {
	t.Helper()
	resp, err := http.Post(n.URL()+"/service", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out), resp.Header.Get("Andromeda-Reason")
}

func seedBody(t *testing.T, fields map[string]any) string {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// reasonOf is the detail of the decision's reason with rule, and whether
// there is one.
func reasonOf(d api.Decision, rule string) (string, bool) {
	for _, r := range d.Reasons {
		if r.Rule == rule {
			return r.Detail, true
		}
	}
	return "", false
}

// TestSeedServiceObject submits an unmodified KLYNTAR service object, an
// archive holding only a .wasm file, anonymously on POST /service: it is
// answered OK, admitted with a reason for each translated field and for the
// inferred runtime, and runs on wazero when fired by hand.
func TestSeedServiceObject(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, func(c *node.Config) { c.SeedEndpoint.Anonymous = true })
	tgz := klyntarTarGz(t, map[string][]byte{"bin/weather.wasm": noopWasm(t, "sunny on Andromeda")}, "bin/", "bin/weather.wasm")
	obj := map[string]any{
		"title":    "Weather Feed!",
		"desc":     "Fetches the weather for the symbiote",
		"archive":  base64.StdEncoding.EncodeToString(tgz),
		"keywords": []string{"Web3", "api"},
		"payment":  5, // not a field this node knows
		"symbiote": "QfzhbWJsPa9NjqxepcXSbp1X58pkQNACS2ReyRo2SMCK",
	}
	code, out, reason := postSeed(t, n, seedBody(t, obj))
	if code != 200 || out != "OK" || !strings.Contains(reason, "admitted weather-feed 0.0.0-seed-") {
		t.Fatalf("POST /service = %d %q %q, want 200 OK", code, out, reason)
	}
	svc, err := n.op.Service(ctx, "weather-feed")
	if err != nil {
		t.Fatal(err)
	}
	if svc.Owner != "anonymous" || svc.Status != "deployed" || svc.Decision.Verdict != "run" || svc.Decision.Driver != "wasm" {
		t.Fatalf("service = owner %q status %q decision %+v", svc.Owner, svc.Status, svc.Decision)
	}
	var m struct {
		Title, Description, Mode string
		Keywords                 []string
		Runtime                  struct{ Driver, Entry string }
	}
	if err := json.Unmarshal(svc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.Title != "Weather Feed!" || m.Description != obj["desc"] || m.Mode != "command" || m.Runtime.Driver != "wasm" || m.Runtime.Entry != "bin/weather.wasm" || strings.Join(m.Keywords, ",") != "web3,api" {
		t.Fatalf("manifest = %+v", m)
	}
	// Each translated field is a reason, ahead of admission's own.
	for rule, want := range map[string]string{
		"seed.archive":  "base64",
		"seed.title":    "name weather-feed",
		"seed.desc":     "manifest description",
		"seed.runtime":  "inferred: one .wasm file (bin/weather.wasm) → wasm command service",
		"seed.version":  svc.Version,
		"seed.keywords": "manifest keywords",
		"seed.origin":   "symbiote:QfzhbWJsPa9NjqxepcXSbp1X58pkQNACS2ReyRo2SMCK",
		"seed.manifest": "andromeda.json",
		"seed.digest":   svc.Digest,
		"seed.payment":  "not used by this node",
	} {
		if got, ok := reasonOf(svc.Decision, rule); !ok || !strings.Contains(got, want) {
			t.Errorf("reason %s = %q (present %v), want it to say %q", rule, got, ok, want)
		}
	}
	if r := svc.Decision.Reasons[0]; r.Rule != "seed.archive" {
		t.Errorf("first reason = %+v, want the seed's translation first", r)
	}
	// It runs, on wazero, fired by hand.
	run, err := n.op.Fire(ctx, "weather-feed", json.RawMessage(`{"city":"Andromeda"}`))
	if err != nil || run.Outcome != "noop" || run.Noop != "sunny on Andromeda" || run.Owner != "anonymous" {
		t.Fatalf("fire = %+v, %v; want a noop run saying sunny on Andromeda", run, err)
	}

	// The same object again is unchanged.
	if code, out, reason := postSeed(t, n, seedBody(t, obj)); code != 200 || out != "OK" || !strings.Contains(reason, "unchanged weather-feed "+svc.Version) {
		t.Fatalf("same object again = %d %q %q", code, out, reason)
	}
}

// noopWasm is a WASI command, assembled here, that writes {"noop":reason}
// to standard output and exits: a service whose run ends noop with that
// reason. reason must be short (the module is built with one-byte lengths).
func noopWasm(t *testing.T, reason string) []byte {
	t.Helper()
	msg, _ := json.Marshal(map[string]string{"noop": reason})
	if len(msg) > 100 {
		t.Fatal("noopWasm: reason too long")
	}
	section := func(id byte, content ...byte) []byte { return append([]byte{id, byte(len(content))}, content...) }
	name := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	// Memory: an iovec {16, len(msg)} at 0, nwritten at 8, the message at 16.
	data := cat([]byte{16, 0, 0, 0, byte(len(msg)), 0, 0, 0}, make([]byte, 8), msg)
	return cat(
		[]byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00},
		section(1, 2, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0), // fd_write's type, _start's
		section(2, cat([]byte{1}, name("wasi_snapshot_preview1"), name("fd_write"), []byte{0, 0})...),
		section(3, 1, 1),    // one function of type 1
		section(5, 1, 0, 1), // one memory of one page
		section(7, cat([]byte{2}, name("memory"), []byte{2, 0}, name("_start"), []byte{0, 1})...),
		// _start: fd_write(1, iovs 0, 1 iovec, nwritten 8); drop; end
		section(10, 1, 13, 0, 0x41, 1, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0, 0x1a, 0x0b),
		section(11, cat([]byte{1, 0, 0x41, 0, 0x0b, byte(len(data))}, data)...),
	)
}

// TestSeedServiceRefusals: a broken service object is answered ERR with a
// 4xx naming the field, and leaves nothing behind.
func TestSeedServiceRefusals(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, func(c *node.Config) {
		c.SeedEndpoint.Anonymous = true
		c.Upload.MaxArchive = "64Ki"
	})
	wasm := base64.StdEncoding.EncodeToString(klyntarTarGz(t, map[string][]byte{"a.wasm": noopWasm(t, "x")}, "a.wasm"))
	twoPy := base64.StdEncoding.EncodeToString(klyntarTarGz(t, map[string][]byte{"a.py": nil, "b.py": nil}, "a.py", "b.py"))
	big := make([]byte, 100<<10)
	for i := range big {
		big[i] = byte(i * 7919 >> 3)
	}
	for _, tc := range []struct {
		name   string
		body   string
		code   int
		reason string
	}{
		{"bad base64", `{"title":"T","desc":"d","archive":"not base64!"}`, 400, "archive: must be standard base64"},
		{"both", `{"title":"T","desc":"d","archive":"` + wasm + `","location":"https://x.example/a.tar.gz"}`, 400, "location, archive: give one of them, not both"},
		{"neither", `{"title":"T","desc":"d"}`, 400, "archive: required"},
		{"no desc", `{"title":"T","archive":"` + wasm + `"}`, 400, "desc: required"},
		{"title not a string", `{"title":7,"desc":"d","archive":"` + wasm + `"}`, 400, "title: must be a string"},
		{"two origins", `{"title":"T","desc":"d","archive":"` + wasm + `","symbiote":"a","hostchain":"btc"}`, 400, "hostchain, symbiote: give at most one origin"},
		{"not a tar.gz", `{"title":"T","desc":"d","archive":"` + base64.StdEncoding.EncodeToString([]byte("plain text")) + `"}`, 400, "archive"},
		{"runtime not inferable", `{"title":"T","desc":"d","archive":"` + twoPy + `"}`, 400, "archive: cannot infer the runtime: 2 .py files and no requirements.txt; add an andromeda.yaml"},
		{"archive too large", `{"title":"T","desc":"d","archive":"` + base64.StdEncoding.EncodeToString(big) + `"}`, 413, "archive: the archive is 102400 bytes, more than the 65536"},
		{"not an object", `["title"]`, 400, ""},
	} {
		code, out, reason := postSeed(t, n, tc.body)
		if code != tc.code || out != "ERR" || !strings.Contains(reason, tc.reason) {
			t.Errorf("%s: POST /service = %d %q %q, want %d ERR saying %q", tc.name, code, out, reason, tc.code, tc.reason)
		}
	}
	if svcs, err := n.op.Services(ctx); err != nil || len(svcs) != 0 {
		t.Errorf("after refusals: services %+v, %v; want none", svcs, err)
	}
	for _, sub := range []string{"services", "tmp"} {
		if entries, _ := os.ReadDir(filepath.Join(n.cfg.Data, sub)); len(entries) != 0 {
			t.Errorf("after refusals: %s holds %d entries", sub, len(entries))
		}
	}

	// Without seed_endpoint.anonymous a token is needed, as everywhere.
	closed := startNode(t)
	if code, out, _ := postSeed(t, closed, `{"title":"T","desc":"d","archive":"`+wasm+`"}`); code != 401 || out != "ERR" {
		t.Errorf("anonymous on a closed endpoint = %d %q, want 401 ERR", code, out)
	}
}

// TestSeedServiceOwnManifest: an archive that carries its own manifest is
// that service; the object fills what the manifest leaves empty, and an
// archive it fills nothing of is admitted byte for byte.
func TestSeedServiceOwnManifest(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, func(c *node.Config) { c.SeedEndpoint.Anonymous = true })

	bare := pack(t, echoService(t, "echo-own"))
	body := seedBody(t, map[string]any{"title": "Echo, as KLYNTAR calls it", "desc": "Echoes.", "archive": base64.StdEncoding.EncodeToString(bare)})
	if code, out, reason := postSeed(t, n, body); code != 200 || out != "OK" {
		t.Fatalf("POST /service = %d %q %q", code, out, reason)
	}
	svc, err := n.op.Service(ctx, "echo-own")
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Title, Description, Version string }
	json.Unmarshal(svc.Manifest, &m)
	if m.Title != "Echo, as KLYNTAR calls it" || m.Description != "Echoes." || m.Version != "1.0.0" {
		t.Fatalf("manifest = %+v", m)
	}
	bareInfo, _ := archive.Inspect(bytes.NewReader(bare), archive.Limits{})
	if svc.Digest == bareInfo.Digest {
		t.Errorf("digest %s: the rewritten manifest should make it another archive", svc.Digest)
	}
	for rule, want := range map[string]string{
		"seed.name":     "echo-own 1.0.0, from the archive's own andromeda.yaml",
		"seed.title":    "(the archive's andromeda.yaml had none)",
		"seed.desc":     "manifest description",
		"seed.runtime":  "from the archive's andromeda.yaml: driver wasm, entry echo.wasm",
		"seed.manifest": "rewritten as andromeda.json",
		"seed.digest":   svc.Digest,
	} {
		if got, ok := reasonOf(svc.Decision, rule); !ok || !strings.Contains(got, want) {
			t.Errorf("reason %s = %q (present %v), want it to say %q", rule, got, ok, want)
		}
	}

	// A manifest with its own title and description keeps them, and the
	// archive is admitted as sent.
	dir := echoService(t, "echo-titled")
	setManifest(t, dir, func(s string) string { return s + "title: Echo\ndescription: The manifest's own.\n" })
	titled := pack(t, dir)
	info, _ := archive.Inspect(bytes.NewReader(titled), archive.Limits{})
	body = seedBody(t, map[string]any{"title": "Another title", "desc": "The manifest's own.", "archive": base64.StdEncoding.EncodeToString(titled)})
	if code, out, reason := postSeed(t, n, body); code != 200 || out != "OK" {
		t.Fatalf("POST /service = %d %q %q", code, out, reason)
	}
	svc, err = n.op.Service(ctx, "echo-titled")
	if err != nil || svc.Digest != info.Digest {
		t.Fatalf("service = %s, %v; want the archive as sent, %s", svc.Digest, err, info.Digest)
	}
	for rule, want := range map[string]string{
		"seed.title":  `title "Another title" not used: the archive's andromeda.yaml has its own, "Echo"`,
		"seed.desc":   "desc agrees",
		"seed.digest": "the object's archive as it came",
	} {
		if got, ok := reasonOf(svc.Decision, rule); !ok || !strings.Contains(got, want) {
			t.Errorf("reason %s = %q (present %v), want it to say %q", rule, got, ok, want)
		}
	}
	if _, ok := reasonOf(svc.Decision, "seed.manifest"); ok {
		t.Errorf("reasons %+v: nothing was rewritten", svc.Decision.Reasons)
	}
}

// TestSeedServiceLocation: a location without a digest (KLYNTAR objects
// carry none) is fetched from an allowed host and admitted by what it held,
// with a reason saying it was unpinned; a host not allowed is refused
// before anything is fetched.
func TestSeedServiceLocation(t *testing.T) {
	ctx := context.Background()
	tgz := klyntarTarGz(t, map[string][]byte{"svc.wasm": noopWasm(t, "fetched")}, "svc.wasm")
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(tgz)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	n := startNode(t, withPolicy(t, "allowed_sources: [\""+u.Host+"\"]\n"), func(c *node.Config) { c.SeedEndpoint.Anonymous = true })
	n.SetHTTPClient(srv.Client())

	body := seedBody(t, map[string]any{"title": "Remote", "desc": "From afar.", "location": srv.URL + "/svc.tar.gz"})
	if code, out, reason := postSeed(t, n, body); code != 200 || out != "OK" {
		t.Fatalf("POST /service = %d %q %q", code, out, reason)
	}
	svc, err := n.op.Service(ctx, "remote")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := reasonOf(svc.Decision, "seed.location"); !strings.Contains(got, "unpinned") || !strings.Contains(got, srv.URL) {
		t.Errorf("reason seed.location = %q", got)
	}
	if run, err := n.op.Fire(ctx, "remote", nil); err != nil || run.Noop != "fetched" {
		t.Errorf("fire = %+v, %v", run, err)
	}
	before := hits.Load()
	body = seedBody(t, map[string]any{"title": "Elsewhere", "desc": "", "location": "https://elsewhere.invalid/svc.tar.gz"})
	if code, out, reason := postSeed(t, n, body); code != 422 || out != "ERR" || !strings.Contains(reason, "allowed_sources") || hits.Load() != before {
		t.Errorf("disallowed location = %d %q %q (fetches %d → %d)", code, out, reason, before, hits.Load())
	}
}

// TestSeedServiceProcess: KLYNTAR objects whose archives hold a node or a
// python service, without a manifest, are inferred, admitted and run on the
// process driver.
func TestSeedServiceProcess(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, func(c *node.Config) { c.SeedEndpoint.Anonymous = true })
	var enabled bool
	var why string
	for _, d := range n.Node.Node(ctx).Drivers {
		if d.Name == "process" {
			enabled, why = d.Enabled, d.Reason
		}
	}
	sandboxtest.Require(t, enabled, "the process driver is disabled on this host: "+why)

	for _, tc := range []struct {
		title, name string
		files       map[string][]byte
		order       []string
		runtime     string
	}{
		{"Node Echo", "node-echo", map[string][]byte{
			"service.js": []byte("exports.decide = async (ctx) => ({ noop: 'node saw ' + ctx.message.city });\n"),
		}, []string{"service.js"}, "one .js file (service.js) → node on the process driver, entry service.js"},
		{"Py Echo", "py-echo", map[string][]byte{
			"requirements.txt": nil,
			"main.py":          []byte("from util import say\n\ndef handle(input):\n    return {'noop': say(input['message']['city'])}\n"),
			"util.py":          []byte("def say(city):\n    return 'python saw ' + city\n"),
		}, []string{"requirements.txt", "main.py", "util.py"}, "requirements.txt → python on the process driver, entry main.py"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := seedBody(t, map[string]any{"title": tc.title, "desc": "", "archive": base64.StdEncoding.EncodeToString(klyntarTarGz(t, tc.files, tc.order...))})
			if code, out, reason := postSeed(t, n, body); code != 200 || out != "OK" {
				t.Fatalf("POST /service = %d %q %q", code, out, reason)
			}
			svc, err := n.op.Service(ctx, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := reasonOf(svc.Decision, "seed.runtime"); !strings.Contains(got, tc.runtime) {
				t.Errorf("reason seed.runtime = %q, want it to say %q", got, tc.runtime)
			}
			run, err := n.op.Fire(ctx, tc.name, json.RawMessage(`{"city":"Andromeda"}`))
			if err != nil || run.Outcome != "noop" || !strings.HasSuffix(run.Noop, "saw Andromeda") {
				t.Fatalf("fire = %+v, %v", run, err)
			}
		})
	}
}
