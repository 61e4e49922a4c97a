package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/gobuild"
)

// spanFlow is a flow of three mirror modules, each a service placed on a
// node of its own (fa on n1, fb on n2, fc on n3): every message crosses
// nodes twice.
const spanFlow = "id: span\nversion: 1.0.0\nmodules:\n  - {id: a, service: fa}\n  - {id: b, service: fb}\n  - {id: c, service: fc}\n" +
	"wires:\n  - {from: a, to: b}\n  - {from: b, to: c}\n"

// spanMessage is a message for spanFlow: the mirror returns its message
// as its output, so a emits to b, b to c, and c ends with a noop.
var spanMessage = json.RawMessage(`{"emit":[{"port":"out","message":{"emit":[{"port":"out","message":{"noop":"end"}}]}}]}`)

// buildMirror builds the node tests' mirror reactor (it returns its
// message as its output) for wasm.
func buildMirror(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "mirror.wasm")
	if err := gobuild.Wasm(context.Background(), filepath.Join("..", "..", "node", "testdata", "mirror"), out, gobuild.Reactor); err != nil {
		t.Fatal(err)
	}
	mirror, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return mirror
}

// startSpan submits the mirror as fa, fb and fc to n1, n2 and n3, applies
// and starts spanFlow through n3 (so n3 runs it), and fires it through n1
// every so often until stop, keeping the flow runs answered (queued).
func startSpan(t *testing.T, c *cluster, mirror []byte) *fireLoad {
	t.Helper()
	ctx := context.Background()
	const triggers = "triggers:\n  - {kind: manual}\nresources: {memory: 32Mi, timeout: 5s}\n"
	for i, name := range []string{"fa", "fb", "fc"} {
		if _, err := c.hosts[i].api.Submit(ctx, answerArchive(t, mirror, name, triggers)); err != nil {
			t.Fatalf("submit %s to %s: %v", name, c.hosts[i].name, err)
		}
	}
	n1, n3 := c.hosts[0], c.hosts[2]
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, err := n3.api.ApplyFlow(ctx, "application/yaml", []byte(spanFlow), false)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("apply span through n3: %v", err)
		}
	}
	if f, err := n3.api.StartFlow(ctx, "span"); err != nil || f.Node != "n3" {
		t.Fatalf("start span through n3 = %+v, %v; want it running on n3", f, err)
	}
	every := 250 * time.Millisecond
	if os.Getenv("ANDROMEDA_SOAK") == "1" {
		every = 2 * time.Second // the runs kept (1,000 a service) cover the soak
	}
	return startLoad(every, func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if r, err := n1.api.FireFlow(ctx, "span", api.FlowFireRequest{Message: spanMessage}); err == nil {
			return r.ID
		}
		return ""
	})
}

// checkSpan checks, through h, that each message answered ran once
// through a, b and c, ok, each module's run recorded once, and that c took
// them in the order they were fired (one caller: the queue's order).
func checkSpan(t *testing.T, h *host, fired []answered) {
	t.Helper()
	ctx := context.Background()
	if len(fired) == 0 {
		t.Error("no flow message answered: the load did not run")
		return
	}
	want := map[string]bool{}
	var order []string
	for _, a := range fired {
		want[a.id] = true
		order = append(order, a.id)
	}
	var runs []api.FlowRun
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		var err error
		runs, err = h.api.FlowRuns(ctx, "span", 1000)
		done := 0
		for _, r := range runs {
			if want[r.ID] {
				done++
			}
		}
		if err == nil && done == len(fired) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("span: %d of the %d messages answered have a flow run recorded after 60 s (%v)", done, len(fired), err)
		}
	}
	seen := map[string]int{}
	for _, r := range runs {
		seen[r.ID]++
		if want[r.ID] && (r.Outcome != "ok" || len(r.Steps) != 3) {
			t.Errorf("flow run %s = %s (%s) in %d steps; want ok in three", r.ID, r.Outcome, r.Error, len(r.Steps))
		}
	}
	for id, k := range seen {
		if k > 1 {
			t.Errorf("flow run %s recorded %d times", id, k)
		}
	}
	for _, svc := range []string{"fa", "fb", "fc"} {
		list, err := readRuns(h, svc)
		if err != nil {
			t.Fatal(err)
		}
		per := map[string]int{}
		by := map[string]int{}
		var cOrder []api.Run
		for _, r := range list {
			if r.Trigger.Flow == nil || !want[r.Trigger.Flow.Run] {
				continue
			}
			per[r.Trigger.Flow.Run]++
			by[r.Node]++
			cOrder = append(cOrder, r)
		}
		for id := range want {
			if per[id] != 1 {
				t.Errorf("%s recorded %d runs of flow run %s, want 1", svc, per[id], id)
			}
		}
		if svc == "fc" {
			slices.SortFunc(cOrder, func(a, b api.Run) int { return a.Start.Compare(b.Start) })
			var got []string
			for _, r := range cOrder {
				got = append(got, r.Trigger.Flow.Run)
			}
			if !slices.Equal(got, order) {
				t.Errorf("c took the %d messages in another order than they were fired", len(order))
				logDivergence(t, cOrder, order, fired)
			}
		}
		t.Logf("span: %s ran %d messages, by node %v", svc, len(per), by)
	}
	flows, err := h.api.Flow(ctx, "span")
	t.Logf("span: %d messages fired through n1, each run once through three nodes' modules; held now by %s (%v)", len(fired), flows.Node, err)
}

// readRuns lists service's last 1,000 runs, asked again while a leader
// election makes reads fail for a moment.
func readRuns(h *host, service string) ([]api.Run, error) {
	var err error
	for range 20 {
		var runs []api.Run
		if runs, err = h.api.Runs(context.Background(), service, 1000); err == nil {
			return runs, nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return nil, fmt.Errorf("runs of %s: %w", service, err)
}

// logDivergence logs where c's runs, in the order they started, first
// differ from the order the messages were fired, with a few runs around.
func logDivergence(t *testing.T, runs []api.Run, order []string, fired []answered) {
	t.Helper()
	at := map[string]time.Time{}
	for _, a := range fired {
		at[a.id] = a.at
	}
	i := 0
	for i < len(runs) && i < len(order) && runs[i].Trigger.Flow.Run == order[i] {
		i++
	}
	for k := max(0, i-3); k < min(len(runs), i+6); k++ {
		r := runs[k]
		want := ""
		if k < len(order) {
			want = order[k]
		}
		t.Logf("c's run %d: flow run %s (fired %s) on %s, started %s, %s; fired in this place: %s",
			k, r.Trigger.Flow.Run, at[r.Trigger.Flow.Run].Format("15:04:05.000"), r.Node, r.Start.Format("15:04:05.000"), r.Outcome, want)
	}
}
