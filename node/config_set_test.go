package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/policy"
	"github.com/andromeda-runner/andromeda/sandbox"
)

// TestConfigSet: a config change is a new revision the next run sees (the
// price-watch example's noop reason names the threshold it was given),
// recorded on the service and on the run, listed by history with the
// submission before it; a run in flight keeps the config it started with;
// bad patches and a config the policy refuses change nothing; a service
// whose manifest is andromeda.toml runs (submitTOML); and the revision
// survives a restart.
func TestConfigSet(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	drv := realWasm(t)
	refuse := func(c *node.Config) {
		c.Data = data
		c.Policy.Rules = []policy.Rule{{Name: "no-forbidden", Expr: `!("forbidden" in service.config)`, Message: "config key forbidden is not allowed here"}}
	}
	n := startNodeWith(t, drv, refuse)
	if _, err := n.op.Submit(ctx, pack(t, example(t, "price-watch"))); err != nil {
		t.Fatal(err)
	}
	fire := func(c *api.Client) api.Run {
		t.Helper()
		r, err := c.Fire(ctx, "price-watch", json.RawMessage(`{"price": 101}`))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := fire(n.op); r.Outcome != "noop" || !strings.Contains(r.Noop, "the 2.0% threshold") || r.Revision != 1 {
		t.Fatalf("first run = %s %q revision %d; want noop below the manifest's 2%% threshold, revision 1", r.Outcome, r.Noop, r.Revision)
	}

	// A run in flight when the config changes keeps the config it got.
	seen, release := make(chan map[string]any, 4), make(chan struct{})
	drv.setAround(func(ctx context.Context, in contract.Input, invoke func() (sandbox.Exit, error)) (sandbox.Exit, error) {
		seen <- in.Config
		if in.Config["block"] == nil && len(seen) == 1 {
			<-release
		}
		return invoke()
	})
	inFlight := make(chan api.Run, 1)
	go func() { r, _ := n.op.Fire(ctx, "price-watch", json.RawMessage(`{"price": 101}`)); inFlight <- r }()
	before := <-seen

	sc, err := n.op.SetConfig(ctx, "price-watch", map[string]any{"threshold_pct": 7.5, "limits": map[string]any{"max": 3}})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Revision != 2 || !sc.Current || sc.Config["threshold_pct"] != 7.5 || sc.Config["endpoint"] == nil || !strings.HasPrefix(sc.Digest, "sha256:") {
		t.Fatalf("SetConfig = %+v; want revision 2 with threshold 7.5 merged into the manifest's config", sc)
	}
	close(release)
	if r := <-inFlight; r.Revision != 1 || !strings.Contains(r.Noop, "the 2.0% threshold") {
		t.Errorf("the run in flight = revision %d %q; want revision 1 and the old threshold", r.Revision, r.Noop)
	}
	if fmt.Sprint(before["threshold_pct"]) != "2" {
		t.Errorf("the run in flight was given %v, want the manifest's config", before)
	}
	drv.setAround(nil)

	r := fire(n.op)
	if r.Outcome != "noop" || !strings.Contains(r.Noop, "the 7.5% threshold") || r.Revision != 2 {
		t.Fatalf("run after config set = %s %q revision %d; want noop below 7.5%%, revision 2", r.Outcome, r.Noop, r.Revision)
	}
	svc, err := n.op.Service(ctx, "price-watch")
	var sm struct {
		Config map[string]any `json:"config"`
	}
	json.Unmarshal(svc.Manifest, &sm)
	if err != nil || svc.Revision != 2 || svc.ConfigDigest != sc.Digest || sm.Config["threshold_pct"] != 7.5 {
		t.Fatalf("service = revision %d digest %s manifest %s, %v; want revision 2 with the new config", svc.Revision, svc.ConfigDigest, svc.Manifest, err)
	}
	hist, err := n.op.ConfigHistory(ctx, "price-watch")
	if err != nil || len(hist) != 2 || hist[0].Change != "submit" || hist[1].Change != "config" || !hist[1].Current ||
		!reflect.DeepEqual(hist[1].Keys, []string{"limits", "threshold_pct"}) || hist[1].By != "operator" || hist[0].ConfigDigest == hist[1].ConfigDigest {
		t.Fatalf("history = %+v, %v; want the submission then the config change", hist, err)
	}
	old, err := n.op.ServiceConfig(ctx, "price-watch", 1)
	if err != nil || old.Current || old.Config["threshold_pct"] != float64(2) || old.Digest != hist[0].ConfigDigest {
		t.Fatalf("config of revision 1 = %+v, %v; want the manifest's", old, err)
	}

	// Bad patches and a refused config change nothing.
	for _, tc := range []struct {
		name, patch string
		status      int
		want        string
	}{
		{"not an object", `[1]`, 400, "config: must be a mapping, not a list"},
		{"duplicate key", `{"a": 1, "a": 2}`, 400, "config.a: duplicate key"},
		{"not finite", `{"a": 1e999}`, 400, "config.a: must be a finite number"},
		{"too large", `{"big": "` + strings.Repeat("x", 70<<10) + `"}`, 400, "config: must be at most 65536 bytes as JSON"},
		{"refused by policy", `{"forbidden": true}`, 422, "rules.no-forbidden: config key forbidden is not allowed here"},
	} {
		err := patchConfig(t, n, tc.patch)
		var ae *api.Error
		if !asAPIError(err, &ae) || ae.Status != tc.status || !strings.Contains(strings.Join(append(ae.Problems, ae.Message), "\n"), tc.want) {
			t.Errorf("%s: PATCH config = %v (%+v); want %d naming %q", tc.name, err, ae, tc.status, tc.want)
		}
	}
	if h, _ := n.op.ConfigHistory(ctx, "price-watch"); len(h) != 2 {
		t.Errorf("history after refused changes has %d revisions, want 2", len(h))
	}
	if r := fire(n.op); r.Revision != 2 || !strings.Contains(r.Noop, "the 7.5% threshold") {
		t.Errorf("run after refused changes = revision %d %q; want revision 2 unchanged", r.Revision, r.Noop)
	}
	if same, err := n.op.SetConfig(ctx, "price-watch", map[string]any{"threshold_pct": 7.5}); err != nil || same.Revision != 2 {
		t.Errorf("a patch that changes nothing = %+v, %v; want revision 2 and no new one", same, err)
	}

	submitTOML(t, n)

	// The revision and its config survive a restart, whose unpacked
	// archive holds the manifest's config; the TOML service comes back.
	n.Close()
	n2 := startNode(t, refuse)
	if r := fire(n2.op); r.Revision != 2 || !strings.Contains(r.Noop, "the 7.5% threshold") {
		t.Errorf("run after restart = revision %d %q; want revision 2 and the 7.5%% threshold", r.Revision, r.Noop)
	}
	if r, err := n2.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"toml"}`)); err != nil || r.Outcome != "ok" {
		t.Errorf("the TOML service after restart = %+v, %v; want ok", r, err)
	}
}

// patchConfig sends a raw merge patch to price-watch's config and returns
// the problem answered, or nil.
func patchConfig(t *testing.T, n *testNode, patch string) error {
	t.Helper()
	req, err := http.NewRequest("PATCH", n.op.Base+"/v1/services/price-watch/config", strings.NewReader(patch))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+n.op.Token)
	req.Header.Set("Content-Type", api.MergePatchType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 300 {
		return nil
	}
	e := &api.Error{}
	if err := json.NewDecoder(resp.Body).Decode(e); err != nil {
		t.Fatal(err)
	}
	e.Status = resp.StatusCode
	return e
}

// submitTOML: a service whose manifest is andromeda.toml is admitted and
// runs, as with andromeda.yaml; a directory with andromeda.toml and
// andromeda.yaml is refused, naming both.
func submitTOML(t *testing.T, n *testNode) {
	ctx := context.Background()
	dir := example(t, "greeter")
	y, err := os.ReadFile(filepath.Join(dir, "andromeda.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(y, &v); err != nil {
		t.Fatal(err)
	}
	v["version"] = "1.0.1-toml"
	tm, err := toml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "andromeda.yaml"))
	if err := os.WriteFile(filepath.Join(dir, "andromeda.toml"), tm, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := n.op.Submit(ctx, pack(t, dir))
	if err != nil || res.Service.Version != "1.0.1-toml" || res.Service.Revision != 1 {
		t.Fatalf("submit andromeda.toml = %+v, %v\n%s", res, err, tm)
	}
	r, err := n.op.Fire(ctx, "greeter", json.RawMessage(`{"name":"toml"}`))
	if err != nil || r.Outcome != "ok" || r.Revision != 1 {
		t.Fatalf("fire = %+v, %v; want ok at revision 1", r, err)
	}

	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), y, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = n.op.Submit(ctx, pack(t, dir))
	var ae *api.Error
	if !asAPIError(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "more than one manifest") || !strings.Contains(ae.Message, "andromeda.toml") {
		t.Fatalf("submit with andromeda.yaml and andromeda.toml = %v; want 400 naming both", err)
	}
}
