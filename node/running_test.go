package node_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

// spinService writes a wasm command service that loops until it is
// stopped, with a manual trigger (unless manual is false) and a 30 s
// timeout.
func spinService(t testing.TB, name string, manual bool) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, filepath.Join("..", "sandbox", "wasm", "testdata", "spin.wasm"), filepath.Join(dir, "spin.wasm"))
	trigger := "{kind: manual}"
	if !manual {
		trigger = "{kind: cron, every: 1h}"
	}
	m := "name: " + name + "\nversion: 1.0.0\nruntime: {driver: wasm, language: wasm, entry: spin.wasm}\nmode: command\n" +
		"triggers:\n  - " + trigger + "\nresources: {memory: 16Mi, timeout: 30s, concurrency: 2}\ncapabilities: {network: none}\n"
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRunsInFlight: a submitter sees and kills the runs of its own
// services only; a kill is recorded cancelled, naming who killed it,
// and the record is what the cancel answers; the run API refuses what it
// cannot do with the field and the rule.
func TestRunsInFlight(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	tokA, err := n.op.CreateToken(ctx, "alice", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	tokB, _ := n.op.CreateToken(ctx, "bob", api.RoleSubmitter)
	alice, bob := api.NewClient(n.Addr(), tokA.Secret), api.NewClient(n.Addr(), tokB.Secret)
	if _, err := alice.Submit(ctx, pack(t, spinService(t, "spin", true))); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.Submit(ctx, pack(t, spinService(t, "cron-only", false))); err != nil {
		t.Fatal(err)
	}

	started, finished, err := n.op.FireDetached(ctx, "spin", api.FireRequest{Message: json.RawMessage(`{}`)})
	if err != nil || finished != nil || started.ID == "" {
		t.Fatalf("FireDetached = %+v, %+v, %v", started, finished, err)
	}
	if rs, err := alice.Running(ctx, ""); err != nil || len(rs) != 1 || rs[0].ID != started.ID || rs[0].Owner != "alice" {
		t.Errorf("alice's runs in flight = %+v, %v", rs, err)
	}
	if rs, err := bob.Running(ctx, ""); err != nil || len(rs) != 0 {
		t.Errorf("bob's runs in flight = %+v, %v", rs, err)
	}
	if _, err := bob.Running(ctx, "spin"); status(err) != 404 {
		t.Errorf("bob's runs in flight of spin = %v, want 404", err)
	}
	if _, err := bob.Cancel(ctx, started.ID); status(err) != 404 {
		t.Errorf("bob cancels alice's run: %v, want 404", err)
	}
	// Still running: the wait ends on its timeout with the run in flight.
	if _, inFlight, done, err := alice.WaitRun(ctx, started.ID, 50*time.Millisecond); err != nil || done || inFlight.ID != started.ID {
		t.Errorf("WaitRun = %+v, %v, %v", inFlight, done, err)
	}
	res, err := alice.Cancel(ctx, started.ID)
	if err != nil || res.Recorded == nil || res.Recorded.Outcome != "cancelled" || !strings.Contains(res.Recorded.Error, "cancelled by alice") ||
		res.Run.Status != api.RunCancelling || res.Run.CancelledBy != "alice" || res.RecordedAt.Before(res.Run.CancelledAt) {
		t.Fatalf("Cancel = %+v, %v", res, err)
	}
	r, err := n.op.RunByID(ctx, started.ID)
	if err != nil || r.Outcome != "cancelled" || r.Error != res.Recorded.Error {
		t.Errorf("recorded run = %+v, %v", r, err)
	}
	if _, err := alice.Cancel(ctx, started.ID); status(err) != 409 || !strings.Contains(err.Error(), "outcome cancelled") {
		t.Errorf("second cancel = %v, want 409 naming the outcome", err)
	}
	if _, err := n.op.Cancel(ctx, "06h3a2nyj3pfa646574g"); status(err) != 404 {
		t.Errorf("cancel of an unknown run = %v, want 404", err)
	}
	// A cancelled run is not a failure of the service.
	if svc, err := n.op.Service(ctx, "spin"); err != nil || svc.Health == nil || svc.Health.ConsecutiveFailures != 0 {
		t.Errorf("health after a kill = %+v, %v", svc.Health, err)
	}

	for _, tc := range []struct {
		name   string
		req    api.FireRequest
		status int
		detail string
	}{
		{"cron-only", api.FireRequest{Detach: true}, 409, "no manual trigger"},
		{"spin", api.FireRequest{Args: []string{"a", "b\x00"}}, 400, "args[1]: must not contain a NUL character"},
		{"spin", api.FireRequest{Args: make([]string, 4097), Detach: true}, 400, "args: at most 4096 arguments"},
		{"spin", api.FireRequest{Args: []string{strings.Repeat("x", 129<<10)}}, 400, "args: at most 131072 bytes"},
		{"nope", api.FireRequest{Args: []string{"a"}}, 404, "nope"},
	} {
		var err error
		if tc.req.Detach {
			_, _, err = n.op.FireDetached(ctx, tc.name, tc.req)
		} else {
			_, err = n.op.FireWith(ctx, tc.name, tc.req)
		}
		if status(err) != tc.status || !strings.Contains(err.Error(), tc.detail) {
			t.Errorf("fire %s %+v = %v, want %d with %q", tc.name, tc.req.Args, err, tc.status, tc.detail)
		}
	}
	if rs, err := n.op.Running(ctx, ""); err != nil || len(rs) != 0 {
		t.Errorf("runs in flight at the end = %+v, %v", rs, err)
	}
}
