package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/store"
)

func open(t testing.TB, cfg store.Config) *store.Store {
	t.Helper()
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	s, err := store.Open(ctx, b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRegistry(t *testing.T) {
	ctx := context.Background()
	s := open(t, store.Config{})
	if _, err := s.Service(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Service(nope) err = %v, want ErrNotFound", err)
	}
	for _, n := range []string{"beta", "alpha"} {
		if err := s.PutService(ctx, store.Service{Name: n, Version: "1.0.0", Manifest: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "alpha" || list[1].Name != "beta" {
		t.Fatalf("Services = %+v, want alpha, beta", list)
	}
	if err := s.AppendRun(ctx, store.Run{ID: "r1", Service: "alpha", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteService(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Service(ctx, "alpha"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: err = %v, want ErrNotFound", err)
	}
	if runs, _ := s.Runs(ctx, "alpha", 10); len(runs) != 0 {
		t.Fatalf("runs after delete = %d, want 0", len(runs))
	}
	if err := s.DeleteService(ctx, "alpha"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete err = %v, want ErrNotFound", err)
	}
}

func TestArtifacts(t *testing.T) {
	ctx := context.Background()
	s := open(t, store.Config{})
	data := []byte(strings.Repeat("archive", 100000))
	if err := s.PutArtifact(ctx, "sha256:abc", data); err != nil {
		t.Fatal(err)
	}
	if err := s.PutArtifact(ctx, "sha256:abc", data); err != nil {
		t.Fatalf("second put: %v", err)
	}
	got, err := s.Artifact(ctx, "sha256:abc")
	if err != nil || string(got) != string(data) {
		t.Fatalf("Artifact = %d bytes, %v; want %d bytes", len(got), err, len(data))
	}
	if _, err := s.Artifact(ctx, "sha256:def"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing artifact err = %v", err)
	}
}

func TestStateCAS(t *testing.T) {
	ctx := context.Background()
	s := open(t, store.Config{MaxStateBytes: 1024})
	snap, err := s.State(ctx, "svc")
	if err != nil || snap.Revision != 0 || len(snap.Values) != 0 {
		t.Fatalf("empty state = %+v, %v", snap, err)
	}
	set := func(k, v string) *contract.StateChange {
		return &contract.StateChange{Set: map[string]json.RawMessage{k: json.RawMessage(v)}}
	}
	s1, err := s.ApplyState(ctx, "svc", "run1", snap, set("a", `1`))
	if err != nil {
		t.Fatal(err)
	}
	// A second writer from the same (stale) snapshot conflicts.
	if _, err := s.ApplyState(ctx, "svc", "run1", snap, set("a", `2`)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale create err = %v, want ErrConflict", err)
	}
	s2, err := s.ApplyState(ctx, "svc", "run1", s1, &contract.StateChange{Set: map[string]json.RawMessage{"b": json.RawMessage(`"x"`)}, Delete: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyState(ctx, "svc", "run1", s1, set("c", `3`)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update err = %v, want ErrConflict", err)
	}
	got, _ := s.State(ctx, "svc")
	if got.Revision != s2.Revision || string(got.Values["b"]) != `"x"` || got.Values["a"] != nil {
		t.Fatalf("state = %+v, want b=x at rev %d", got, s2.Revision)
	}
	if _, err := s.ApplyState(ctx, "svc", "run1", got, set("big", `"`+strings.Repeat("x", 2000)+`"`)); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("oversized state err = %v, want ErrTooLarge", err)
	}
	if _, err := s.ApplyState(ctx, "svc", "run1", got, set("bad", `{`)); err == nil {
		t.Fatal("invalid JSON value accepted")
	}
	after, _ := s.State(ctx, "svc")
	if after.Revision != got.Revision {
		t.Fatal("a refused write changed the state")
	}
}

func TestRunsBounded(t *testing.T) {
	ctx := context.Background()
	s := open(t, store.Config{RunsPerService: 5, MaxRunBytes: 4096})
	for i := range 12 {
		r := store.Run{ID: fmt.Sprintf("a%02d", i), Service: "a", Outcome: "noop", Noop: "quiet"}
		if err := s.AppendRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if err := s.AppendRun(ctx, store.Run{ID: fmt.Sprintf("b%02d", i), Service: "b", Outcome: "ok"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	runs, err := s.Runs(ctx, "a", 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	if got, want := strings.Join(ids, ","), "a11,a10,a09,a08,a07"; got != want {
		t.Fatalf("Runs(a) = %s, want %s (newest first, 5 kept)", got, want)
	}
	if runs, _ := s.Runs(ctx, "a", 2); len(runs) != 2 || runs[0].ID != "a11" {
		t.Fatalf("Runs(a, 2) = %+v", runs)
	}
	recent, err := s.RecentRuns(ctx, 3)
	if err != nil || len(recent) != 3 || recent[0].ID != "a11" || recent[1].ID != "a10" || recent[2].ID != "b09" {
		t.Fatalf("RecentRuns = %+v, %v", recent, err)
	}
	// A duplicate append (same run id) is stored once.
	if err := s.AppendRun(ctx, store.Run{ID: "a11", Service: "a", Outcome: "noop"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.RunCount(ctx, "a"); n != 5 {
		t.Fatalf("RunCount(a) = %d, want 5", n)
	}
	// An oversized record keeps its outcome and drops its output.
	big := store.Run{ID: "big", Service: "a", Outcome: "ok", Output: &contract.Output{Actions: []contract.Action{{Kind: "log", Params: json.RawMessage(`"` + strings.Repeat("x", 10000) + `"`)}}}}
	if err := s.AppendRun(ctx, big); err != nil {
		t.Fatal(err)
	}
	r, err := s.Run(ctx, "a", "big")
	if err != nil || !r.Truncated || r.Output != nil || r.Outcome != "ok" {
		t.Fatalf("big run = %+v, %v; want truncated ok", r, err)
	}
	// So does one whose emits alone are too many and too long: what
	// became of them goes too, or the record would never be stored.
	emitted := store.Run{ID: "emitted", Service: "a", Outcome: "ok"}
	for range contract.MaxEmits {
		emitted.Emitted = append(emitted.Emitted, store.Emitted{Topic: strings.Repeat("t", 400), Error: "topic: at most 128 characters"})
	}
	if err := s.AppendRun(ctx, emitted); err != nil {
		t.Fatalf("a run with 256 long emits: %v", err)
	}
	if r, err := s.Run(ctx, "a", "emitted"); err != nil || !r.Truncated || r.Emitted != nil || r.Outcome != "ok" {
		t.Fatalf("emitted run = %+v, %v; want truncated ok, without its emits", r, err)
	}
}

func TestRunsConcurrentNothingLost(t *testing.T) {
	ctx := context.Background()
	s := open(t, store.Config{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := s.AppendRun(ctx, store.Run{ID: fmt.Sprintf("w%d-%d", w, i), Service: "svc", Outcome: "ok", Start: time.Now()}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if n, err := s.RunCount(ctx, "svc"); err != nil || n != 400 {
		t.Fatalf("RunCount = %d, %v; want 400", n, err)
	}
	runs, err := s.Runs(ctx, "svc", 1000)
	if err != nil || len(runs) != 400 {
		t.Fatalf("Runs = %d, %v; want 400", len(runs), err)
	}
}

// BenchmarkAppendRun measures how many run records per second the store
// sustains with every record acknowledged (nothing lost).
func BenchmarkAppendRun(b *testing.B) {
	ctx := context.Background()
	run := store.Run{Service: "bench", Version: "1.0.0", Outcome: "noop", Noop: "spread below threshold",
		Trigger: contract.Trigger{Kind: "cron", Name: "triggers[0]"}, Start: time.Now(), Duration: 1200 * time.Microsecond,
		Usage: store.Usage{WallNS: 1200000, PeakMemory: 2 << 20}}
	b.Run("sync", func(b *testing.B) {
		s := open(b, store.Config{RunsPerService: 1 << 20})
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			r := run
			r.ID = fmt.Sprintf("s%d", i)
			if err := s.AppendRun(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "runs/s")
	})
	b.Run("async", func(b *testing.B) {
		s := open(b, store.Config{RunsPerService: 1 << 20})
		b.ResetTimer()
		n := 0
		var pending []func() error
		for i := 0; b.Loop(); i++ {
			r := run
			r.ID = fmt.Sprintf("a%d", i)
			f, err := s.AppendRunAsync(r)
			if err != nil {
				b.Fatal(err)
			}
			pending = append(pending, func() error {
				select {
				case <-f.Ok():
					return nil
				case err := <-f.Err():
					return err
				}
			})
			n++
			if len(pending) >= 256 {
				for _, p := range pending {
					if err := p(); err != nil {
						b.Fatal(err)
					}
				}
				pending = pending[:0]
			}
		}
		for _, p := range pending {
			if err := p(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if got, _ := s.RunCount(ctx, "bench"); got != n {
			b.Fatalf("stored %d runs, appended %d", got, n)
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "runs/s")
	})
}

// TestLeaderLastValue: the read a listing falls back on before it calls a
// key unreadable asks the stream's leader and finds what the bucket holds,
// and says not found for a key it does not.
func TestLeaderLastValue(t *testing.T) {
	ctx := context.Background()
	s := open(t, store.Config{})
	if err := s.PutService(ctx, store.Service{Name: "alpha", Version: "1.0.0", Manifest: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	v, err := s.LeaderLastValue(ctx, bus.BucketServices, "alpha")
	if err != nil || !strings.Contains(string(v), `"name":"alpha"`) {
		t.Errorf("LeaderLastValue(alpha) = %s, %v", v, err)
	}
	if _, err := s.LeaderLastValue(ctx, bus.BucketServices, "nope"); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("LeaderLastValue(nope) = %v, want ErrMsgNotFound", err)
	}
}
