package node_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// The tests below run testdata/hook, a real wasm reactor whose output is
// the JSON object its request's body holds, on a real node, over real
// HTTP.

var (
	hookOnce sync.Once
	hookWasm string
	hookErr  error
)

// hookService returns a copy of testdata/hook with its main.wasm built and
// each pair of old, new replaced in its manifest.
func hookService(t *testing.T, pairs ...string) string {
	t.Helper()
	example(t, "greeter") // skips without the go toolchain
	hookOnce.Do(func() {
		var dir string
		if dir, hookErr = os.MkdirTemp("", "andromeda-hook-"); hookErr != nil {
			return
		}
		hookWasm = filepath.Join(dir, "main.wasm")
		hookErr = gobuild.Wasm(context.Background(), filepath.Join("testdata", "hook"), hookWasm, gobuild.Reactor)
	})
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	dir := t.TempDir()
	copyFile(t, filepath.Join("testdata", "hook", "andromeda.yaml"), filepath.Join(dir, "andromeda.yaml"))
	copyFile(t, hookWasm, filepath.Join(dir, "main.wasm"))
	editManifest(t, dir, pairs...)
	return dir
}

// hookAnswer is a webhook's answer.
type hookAnswer struct {
	status int
	header http.Header
	body   string
}

// call sends a request to addr and reads the hookAnswer; headers are name,
// value pairs.
func call(t *testing.T, addr, method, path, body string, headers ...string) hookAnswer {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return hookAnswer{resp.StatusCode, resp.Header, string(b)}
}

func sign(key, text string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(text))
	return hex.EncodeToString(m.Sum(nil))
}

// runCount is how many runs of service are recorded.
func runCount(t *testing.T, n *testNode, service string) int {
	t.Helper()
	runs, err := n.op.Runs(context.Background(), service, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(runs)
}

// hookNode starts a node holding the github and stamped secrets in its
// config, with 4 KiB webhook bodies, and deploys the hook service.
func hookNode(t *testing.T, d sandbox.Driver, pairs ...string) *testNode {
	t.Helper()
	n := startNodeWith(t, d, func(c *node.Config) {
		c.Secrets = map[string]string{"github": "gh-key", "stamped": "st-key"}
		c.HTTP.MaxHookBody = "4Ki"
	})
	if _, err := n.op.Submit(context.Background(), pack(t, hookService(t, pairs...))); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestHookRefusals: every request a webhook must refuse gets its status
// and reason, and runs nothing: no run is recorded.
func TestHookRefusals(t *testing.T) {
	n := hookNode(t, nil)
	addr := n.HooksAddr()
	now := strconv.FormatInt(time.Now().Unix(), 10)
	old := strconv.FormatInt(time.Now().Add(-2*time.Minute).Unix(), 10)
	body := `{"noop":"should not run"}`
	for _, tc := range []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		reason                   string
		header, value            string // a header the hookAnswer must carry
	}{
		{"unknown path", "POST", "/hooks/nope", body, nil, 404, "no webhook at /hooks/nope", "", ""},
		{"disallowed method", "GET", "/hooks/open", "", nil, 405, "GET is not allowed here; allowed: POST, PUT", "Allow", "POST, PUT"},
		{"default methods", "PUT", "/hooks/github", body, nil, 405, "", "Allow", "POST"},
		{"no auth in the manifest", "POST", "/hooks/closed", body, nil, 401, "this webhook has no auth", "", ""},
		{"secret not set", "POST", "/hooks/bearer", body, []string{"Authorization", "Bearer x"}, 503, "secret this webhook is checked with is not set", "Retry-After", "60"},
		{"oversized body", "POST", "/hooks/open", strings.Repeat("x", 4<<10+1), nil, 413, "request body larger than", "", ""},
		{"oversized signed body", "POST", "/hooks/github", strings.Repeat("x", 4<<10+1), []string{"X-Hub-Signature-256", "sha256=" + sign("gh-key", strings.Repeat("x", 4<<10+1))}, 413, "", "", ""},
		{"wrong hmac", "POST", "/hooks/github", body, []string{"X-Hub-Signature-256", "sha256=" + sign("other", body)}, 401, "signature does not match", "", ""},
		{"hmac of another body", "POST", "/hooks/github", body, []string{"X-Hub-Signature-256", "sha256=" + sign("gh-key", body+" ")}, 401, "signature does not match", "", ""},
		{"hmac without prefix", "POST", "/hooks/github", body, []string{"X-Hub-Signature-256", sign("gh-key", body)}, 401, "want \"sha256=\" followed by 64 hex digits", "", ""},
		{"missing signature", "POST", "/hooks/github", body, nil, 401, "missing signature header X-Hub-Signature-256", "", ""},
		{"expired timestamp", "POST", "/hooks/stamped", body, []string{"X-Timestamp", old, "X-Signature", sign("st-key", old+"."+body)}, 401, "timestamp outside the replay window of 1m0s", "", ""},
		{"future timestamp", "POST", "/hooks/stamped", body, []string{"X-Timestamp", strconv.FormatInt(time.Now().Add(2*time.Minute).Unix(), 10), "X-Signature", sign("st-key", old+"."+body)}, 401, "replay window", "", ""},
		{"timestamp not signed", "POST", "/hooks/stamped", body, []string{"X-Timestamp", now, "X-Signature", sign("st-key", body)}, 401, "signature does not match", "", ""},
		{"missing timestamp", "POST", "/hooks/stamped", body, []string{"X-Signature", sign("st-key", body)}, 401, "missing timestamp header X-Timestamp", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runCount(t, n, "hook")
			a := call(t, addr, tc.method, tc.path, tc.body, tc.headers...)
			if a.status != tc.status || !strings.Contains(a.header.Get("Andromeda-Reason"), tc.reason) {
				t.Errorf("%s %s = %d %q (%s), want %d with %q", tc.method, tc.path, a.status, a.header.Get("Andromeda-Reason"), a.body, tc.status, tc.reason)
			}
			if tc.header != "" && a.header.Get(tc.header) != tc.value {
				t.Errorf("%s %s: %s = %q, want %q", tc.method, tc.path, tc.header, a.header.Get(tc.header), tc.value)
			}
			if id := a.header.Get("Andromeda-Run"); id != "" {
				t.Errorf("%s %s names run %s; a refused request runs nothing", tc.method, tc.path, id)
			}
			if after := runCount(t, n, "hook"); after != before {
				t.Errorf("%s %s recorded %d runs; a refused request runs nothing", tc.method, tc.path, after-before)
			}
		})
	}
	// A bearer webhook with the wrong token, once its secret is set.
	if err := n.op.SetSecret(context.Background(), "deploy-token", []byte("s3cret")); err != nil {
		t.Fatal(err)
	}
	for _, auth := range []string{"", "Bearer wrong", "Bearer s3cret2", "Basic czNjcmV0"} {
		a := call(t, addr, "POST", "/hooks/bearer", body, "Authorization", auth)
		if a.status != 401 || !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("bearer webhook with Authorization %q = %d, WWW-Authenticate %q; want 401 with a Bearer challenge", auth, a.status, a.header.Get("WWW-Authenticate"))
		}
	}
	if got := runCount(t, n, "hook"); got != 0 {
		t.Errorf("%d runs recorded after refused requests only, want 0", got)
	}
}

// TestHookRuns: a request that passes its trigger's auth runs the service
// once, and is answered with the run's http output, its output, 204 for a
// noop, or 502 without internals for a run that failed, each naming the
// run; the run names its http trigger, method and path. A secret set at
// run time takes effect without a restart.
func TestHookRuns(t *testing.T) {
	n := hookNode(t, nil)
	ctx := context.Background()
	addr := n.HooksAddr()
	answerOut := `{"http": {"status": 201, "headers": {"X-Id": "7"}, "body": {"ok": true}}, "noop": "answered"}`
	now := strconv.FormatInt(time.Now().Unix(), 10)

	a := call(t, addr, "PUT", "/hooks/open?x=1", answerOut, "Content-Type", "application/json")
	if a.status != 201 || a.header.Get("X-Id") != "7" || a.header.Get("Content-Type") != "application/json" || a.body != `{"ok":true}` {
		t.Errorf("open webhook = %d %v %q; want 201 with X-Id and the JSON body", a.status, a.header, a.body)
	}
	id := a.header.Get("Andromeda-Run")
	r, err := n.op.Run(ctx, "hook", id)
	if err != nil {
		t.Fatalf("run %q named by the hookAnswer: %v", id, err)
	}
	svc, err := n.op.Service(ctx, "hook")
	if err != nil || len(svc.Triggers) != 5 || svc.Triggers[0].Spec != "http /hooks/open" {
		t.Errorf("service triggers = %+v, %v; want the first shown as http /hooks/open", svc.Triggers, err)
	}
	if r.Trigger.Kind != "http" || r.Trigger.Name != "triggers[0]" || r.Trigger.HTTP == nil || r.Trigger.HTTP.Path != "/hooks/open" || r.Trigger.HTTP.Method != "PUT" {
		t.Errorf("run trigger = %+v (http %+v); want http triggers[0] PUT /hooks/open", r.Trigger, r.Trigger.HTTP)
	}

	// What the service sees: the request, less its credentials.
	echo := `{"echo": true}`
	a = call(t, addr, "POST", "/hooks/github?a=1&a=2", echo, "Content-Type", "application/json", "X-Hub-Signature-256", "sha256="+sign("gh-key", echo), "Authorization", "Bearer not-for-the-service", "X-Custom", "c")
	if a.status != 200 {
		t.Fatalf("signed echo = %d %s %q", a.status, a.header.Get("Andromeda-Reason"), a.body)
	}
	var seen struct {
		Request contract.HTTPRequest `json:"request"`
		Trigger contract.Trigger     `json:"trigger"`
	}
	if err := json.Unmarshal([]byte(a.body), &seen); err != nil {
		t.Fatalf("echo body %q: %v", a.body, err)
	}
	rq := seen.Request
	if rq.Method != "POST" || rq.Path != "/hooks/github" || strings.Join(rq.Query["a"], ",") != "1,2" || string(rq.Body) != `{"echo":true}` || rq.Headers["X-Custom"][0] != "c" {
		t.Errorf("service saw %+v, want the request", rq)
	}
	if rq.Headers["Authorization"] != nil || rq.Headers["X-Hub-Signature-256"] != nil {
		t.Errorf("service saw credentials: %v", rq.Headers)
	}
	if seen.Trigger.HTTP == nil || seen.Trigger.HTTP.Path != "/hooks/github" {
		t.Errorf("service's trigger = %+v, want the http trigger with its path", seen.Trigger)
	}

	// A text body arrives as a string; a noop answers 204 with its reason.
	a = call(t, addr, "POST", "/hooks/open", "plain text", "Content-Type", "text/plain")
	if a.status != 204 || a.header.Get("Andromeda-Noop") != "body is not an output" || a.header.Get("Andromeda-Run") == "" {
		t.Errorf("noop = %d %v, want 204 with Andromeda-Noop and Andromeda-Run", a.status, a.header)
	}
	// An output without http is answered as itself.
	a = call(t, addr, "POST", "/hooks/open", `{"noop": "x", "state": null}`, "Content-Type", "application/json")
	if a.status != 204 {
		t.Errorf("noop output = %d, want 204", a.status)
	}
	// A text http body, with the service's own Content-Type.
	a = call(t, addr, "POST", "/hooks/stamped", `{"http": {"body": "pong", "headers": {"Content-Type": "text/x-pong"}}}`, "Content-Type", "application/json",
		"X-Timestamp", now, "X-Signature", sign("st-key", now+"."+`{"http": {"body": "pong", "headers": {"Content-Type": "text/x-pong"}}}`))
	if a.status != 200 || a.body != "pong" || a.header.Get("Content-Type") != "text/x-pong" {
		t.Errorf("stamped webhook = %d %q %q, want 200 pong text/x-pong", a.status, a.body, a.header.Get("Content-Type"))
	}
	// A run that fails is 502, naming the run and nothing of its error.
	bad := `{"actions": [{"kind": "launch-missiles"}]}`
	a = call(t, addr, "POST", "/hooks/open", bad, "Content-Type", "application/json")
	id = a.header.Get("Andromeda-Run")
	if a.status != 502 || id == "" || strings.Contains(a.body, "launch-missiles") || strings.Contains(a.header.Get("Andromeda-Reason"), "launch-missiles") {
		t.Errorf("failed run = %d %v %q; want 502 naming the run and no internals", a.status, a.header, a.body)
	}
	if r, err := n.op.Run(ctx, "hook", id); err != nil || r.Outcome != "rejected" {
		t.Errorf("failed run %s = %+v, %v; want it recorded rejected", id, r, err)
	}

	// A secret set at run time works at once, without a restart.
	out := `{"http": {"status": 202}}`
	if a = call(t, addr, "POST", "/hooks/bearer", out, "Authorization", "Bearer tok-1"); a.status != 503 {
		t.Fatalf("bearer webhook before its secret = %d, want 503", a.status)
	}
	if err := n.op.SetSecret(ctx, "deploy-token", []byte("tok-1")); err != nil {
		t.Fatal(err)
	}
	if a = call(t, addr, "POST", "/hooks/bearer", out, "Authorization", "Bearer tok-1", "Content-Type", "application/json"); a.status != 202 {
		t.Errorf("bearer webhook with its secret set = %d %q, want 202", a.status, a.header.Get("Andromeda-Reason"))
	}
	if err := n.op.SetSecret(ctx, "deploy-token", []byte("tok-2")); err != nil {
		t.Fatal(err)
	}
	if a = call(t, addr, "POST", "/hooks/bearer", out, "Authorization", "Bearer tok-1"); a.status != 401 {
		t.Errorf("bearer webhook with a replaced token = %d, want 401", a.status)
	}
	if err := n.op.DeleteSecret(ctx, "deploy-token"); err != nil {
		t.Fatal(err)
	}
	if a = call(t, addr, "POST", "/hooks/bearer", out, "Authorization", "Bearer tok-2"); a.status != 503 {
		t.Errorf("bearer webhook with its secret removed = %d, want 503", a.status)
	}
}

// TestHookBusy: a request over the service's concurrency bound is
// answered 429 with Retry-After, naming its run, recorded as skipped; the
// guest is never invoked for it.
func TestHookBusy(t *testing.T) {
	drv := realWasm(t)
	n := hookNode(t, drv, "concurrency: 4", "concurrency: 1")
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	entered := make(chan struct{}, 4)
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return invoke()
	})
	held := make(chan hookAnswer, 1)
	go func() { held <- call(t, n.HooksAddr(), "POST", "/hooks/open", `{"noop": "held"}`) }()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the first request did not reach the guest in 30 s")
	}
	a := call(t, n.HooksAddr(), "POST", "/hooks/open", `{"noop": "over"}`)
	id := a.header.Get("Andromeda-Run")
	if a.status != 429 || a.header.Get("Retry-After") == "" || id == "" {
		t.Fatalf("request over the bound = %d %v, want 429 with Retry-After and Andromeda-Run", a.status, a.header)
	}
	r, err := n.op.Run(context.Background(), "hook", id)
	if err != nil || r.Outcome != "skipped" || !strings.Contains(r.Noop, "concurrency limit reached") {
		t.Errorf("run %s = %+v, %v; want it recorded skipped over the concurrency limit", id, r, err)
	}
	if len(entered) != 0 {
		t.Error("the skipped request reached the guest")
	}
	free()
	if a := <-held; a.status != 204 {
		t.Errorf("held request = %d, want 204", a.status)
	}
}

// TestHooksListener: with http.hooks_listen the webhooks are served there
// and not on the API's listener, which answers their paths 404; the hooks
// listener serves no API.
func TestHooksListener(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.HTTP.HooksListen = "127.0.0.1:0" })
	if _, err := n.op.Submit(context.Background(), pack(t, hookService(t))); err != nil {
		t.Fatal(err)
	}
	if n.HooksAddr() == n.Addr() {
		t.Fatalf("hooks served on the API's address %s", n.Addr())
	}
	out := `{"http": {"status": 200, "body": "hi"}}`
	if a := call(t, n.HooksAddr(), "POST", "/hooks/open", out, "Content-Type", "application/json"); a.status != 200 || a.body != "hi" {
		t.Errorf("hook on its listener = %d %q, want 200 hi", a.status, a.body)
	}
	if a := call(t, n.Addr(), "POST", "/hooks/open", out); a.status != 404 {
		t.Errorf("hook on the API's listener = %d, want 404", a.status)
	}
	if a := call(t, n.HooksAddr(), "GET", "/v1/services", "", "Authorization", "Bearer "+n.op.Token); a.status != 404 {
		t.Errorf("API on the hooks listener = %d, want 404", a.status)
	}
	if got := runCount(t, n, "hook"); got != 1 {
		t.Errorf("%d runs, want 1", got)
	}
}

// TestHookPathConflict: a service may not mount a path another service
// mounts; an upgrade of the same service keeps its paths.
func TestHookPathConflict(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	if _, err := n.op.Submit(ctx, pack(t, hookService(t))); err != nil {
		t.Fatal(err)
	}
	_, err := n.op.Submit(ctx, pack(t, hookService(t, "name: hook", "name: other", "/hooks/open,", "/hooks/mine,", "/hooks/github", "/hooks/x", "/hooks/stamped", "/hooks/y", "/hooks/closed", "/hooks/z")))
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Message, "triggers[1].path: /hooks/bearer is mounted by service hook (triggers[1])") {
		t.Fatalf("submit of a service mounting a taken path = %v, want 409 naming the other service", err)
	}
	if _, err := n.op.Submit(ctx, pack(t, hookService(t, "version: 1.0.0", "version: 1.1.0"))); err != nil {
		t.Errorf("upgrade keeping its paths: %v", err)
	}
}

// TestSecretsAPI: the list names secrets and their sources, never their
// values; a name the config holds cannot be set or removed at run time;
// bad names and values are refused with the rule.
func TestSecretsAPI(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.Secrets = map[string]string{"from-config": "cfg-value"} })
	ctx := context.Background()
	if err := n.op.SetSecret(ctx, "stored", []byte("stored-value")); err != nil {
		t.Fatal(err)
	}
	list, err := n.op.Secrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(list)
	if len(list) != 2 || list[0].Name != "from-config" || list[0].Source != "config" || list[1].Name != "stored" || list[1].Source != "store" || list[1].Updated.IsZero() {
		t.Errorf("secrets = %s, want from-config (config) and stored (store)", b)
	}
	if strings.Contains(string(b), "value") {
		t.Errorf("secrets list shows values: %s", b)
	}
	for _, tc := range []struct {
		name, value string
		status      int
		msg         string
	}{
		{"from-config", "x", 409, "held in the node config"},
		{"Bad Name", "x", 400, "name: must name a secret"},
		{"empty", "", 400, "value: must not be empty"},
	} {
		err := n.op.SetSecret(ctx, tc.name, []byte(tc.value))
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != tc.status || !strings.Contains(ae.Message+strings.Join(ae.Problems, "; "), tc.msg) {
			t.Errorf("set %q = %v, want %d %q", tc.name, err, tc.status, tc.msg)
		}
	}
	var ae *api.Error
	if err := n.op.DeleteSecret(ctx, "from-config"); !errors.As(err, &ae) || ae.Status != 409 {
		t.Errorf("remove a config secret = %v, want 409", err)
	}
	if err := n.op.DeleteSecret(ctx, "stored"); err != nil {
		t.Error(err)
	}
	if err := n.op.DeleteSecret(ctx, "stored"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("remove a removed secret = %v, want 404", err)
	}
	sub, err := n.op.CreateToken(ctx, "alice", "submitter")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.NewClient(n.Addr(), sub.Secret).Secrets(ctx); !errors.As(err, &ae) || ae.Status != 403 {
		t.Errorf("a submitter listing secrets = %v, want 403", err)
	}
}
