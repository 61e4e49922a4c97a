package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/andromeda-runner/andromeda/store"
)

// A record JetStream refuses (its subject is outside the runs stream) fails
// its own caller only, while records appended beside it are stored.
func TestAppendRunErrorsAreEach(t *testing.T) {
	ctx := context.Background()
	s := open(t, store.Config{})
	const n = 64
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			svc := "good"
			if i%8 == 3 {
				svc = "bad.subject" // runs.bad.subject: no stream takes it
			}
			errs[i] = s.AppendRun(ctx, store.Run{ID: fmt.Sprintf("r%02d", i), Service: svc, Outcome: "ok"})
		})
	}
	wg.Wait()
	var want []string
	for i, err := range errs {
		bad := i%8 == 3
		if bad && err == nil {
			t.Errorf("record %d to an unknown subject: AppendRun returned nil, want an error", i)
		}
		if !bad {
			if err != nil {
				t.Errorf("record %d failed beside a failing one: %v", i, err)
			}
			want = append(want, fmt.Sprintf("r%02d", i))
		}
	}
	runs, err := s.Runs(ctx, "good", store.MaxListRuns)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range runs {
		got = append(got, r.ID)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
}

// Every run AppendRun returned nil for, from many concurrent callers, is
// listed afterwards, once, including after the store is closed and reopened
// on the same bus.
func TestAppendRunConcurrentAllListed(t *testing.T) {
	ctx := context.Background()
	s := open(t, store.Config{})
	const callers, each = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				if err := s.AppendRun(ctx, store.Run{ID: fmt.Sprintf("c%02d-%02d", c, i), Service: "svc", Outcome: "ok"}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	runs, err := s.Runs(ctx, "svc", store.MaxListRuns)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range runs {
		seen[r.ID]++
	}
	for c := range callers {
		for i := range each {
			id := fmt.Sprintf("c%02d-%02d", c, i)
			if seen[id] != 1 {
				t.Errorf("run %s listed %d times, want 1", id, seen[id])
			}
		}
	}
	if len(runs) != callers*each {
		t.Errorf("listed %d runs, want %d", len(runs), callers*each)
	}
}
