package store_test

import (
	"context"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/store"
)

// listFixture is a store holding 2,500 runs of three services, recorded
// interleaved, one second apart: busy (1,900 recorded, its oldest 400
// dropped by the per-service bound, which leaves gaps all through the
// stream's oldest sequences), a (700) and b (300).
type listFixture struct {
	s      *store.Store
	b      *bus.Bus
	base   time.Time   // Start of the first run recorded
	stored []store.Run // every run kept, newest first
}

func newListFixture(t *testing.T) *listFixture {
	t.Helper()
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	s, err := store.Open(ctx, b, store.Config{RunsPerService: 1500})
	if err != nil {
		t.Fatal(err)
	}
	// Starts lie in the past, as they do for records stored after their
	// runs began.
	f := &listFixture{s: s, b: b, base: time.Now().Add(-24 * time.Hour).Truncate(time.Second).UTC()}
	// Of every 29 runs, 19 are busy's, 7 a's and 3 b's.
	pattern := slices.Concat(slices.Repeat([]string{"busy"}, 19), slices.Repeat([]string{"a"}, 7), slices.Repeat([]string{"b"}, 3))
	n := map[string]int{}
	var all []store.Run
	for i := range 100 * len(pattern) {
		svc := pattern[(i*7)%len(pattern)] // 7 is prime to 29: services interleave
		r := store.Run{ID: fmt.Sprintf("%s-%04d", svc, n[svc]), Service: svc, Outcome: "ok", Start: f.base.Add(time.Duration(i) * time.Second)}
		n[svc]++
		if err := s.AppendRun(ctx, r); err != nil {
			t.Fatal(err)
		}
		all = append(all, r)
	}
	for i := len(all) - 1; i >= 0; i-- {
		if r := all[i]; r.Service != "busy" || r.ID >= "busy-0400" {
			f.stored = append(f.stored, r)
		}
	}
	if len(f.stored) != 2500 {
		t.Fatalf("fixture keeps %d runs, want 2500", len(f.stored))
	}
	return f
}

// want returns the ids of the stored runs that keep, newest first.
func (f *listFixture) want(keep func(store.Run) bool) []string {
	var ids []string
	for _, r := range f.stored {
		if keep(r) {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

// page lists one page of the services named, or of all of them.
func (f *listFixture) page(services []string, q store.RunQuery) (store.RunList, error) {
	if services == nil {
		return f.s.ListRuns(context.Background(), q)
	}
	return f.s.ListServiceRuns(context.Background(), q, services...)
}

// all follows Next from q to the last page and returns every id in order
// with the number of pages.
func (f *listFixture) all(t *testing.T, services []string, q store.RunQuery) ([]string, int) {
	t.Helper()
	var ids []string
	pages := 0
	for {
		l, err := f.page(services, q)
		if err != nil {
			t.Fatalf("page %d of %v %+v: %v", pages+1, services, q, err)
		}
		pages++
		if len(l.Runs) > q.Limit {
			t.Fatalf("page %d holds %d runs, limit %d", pages, len(l.Runs), q.Limit)
		}
		for _, r := range l.Runs {
			ids = append(ids, r.ID)
		}
		if l.Next == "" {
			return ids, pages
		}
		if l.Next == q.Cursor || pages > 10000 {
			t.Fatalf("page %d: Next %q does not move on", pages, l.Next)
		}
		q.Cursor = l.Next
	}
}

func TestListRunsPaging(t *testing.T) {
	f := newListFixture(t)
	in := func(svcs ...string) func(store.Run) bool {
		return func(r store.Run) bool { return slices.Contains(svcs, r.Service) }
	}
	every := func(store.Run) bool { return true }
	window := func(from, to int) func(store.Run) bool { // seconds after base, [from, to)
		return func(r store.Run) bool {
			return !r.Start.Before(f.base.Add(time.Duration(from)*time.Second)) && r.Start.Before(f.base.Add(time.Duration(to)*time.Second))
		}
	}
	and := func(a, b func(store.Run) bool) func(store.Run) bool {
		return func(r store.Run) bool { return a(r) && b(r) }
	}
	at := func(s int) time.Time { return f.base.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		name     string
		services []string // nil: every service
		q        store.RunQuery
		keep     func(store.Run) bool
		pages    int // 0: not checked
	}{
		{"all services", nil, store.RunQuery{Limit: 1000}, every, 3},
		{"all services, small pages", nil, store.RunQuery{Limit: 7}, every, 358},
		{"one service with gaps", []string{"busy"}, store.RunQuery{Limit: 333}, in("busy"), 5},
		{"one service, whole", []string{"b"}, store.RunQuery{Limit: 1000}, in("b"), 1},
		{"two services merged", []string{"a", "b"}, store.RunQuery{Limit: 128}, in("a", "b"), 8},
		{"window", nil, store.RunQuery{Limit: 97, Since: at(1000), Until: at(2000)}, window(1000, 2000), 11},
		{"window of one service", []string{"busy"}, store.RunQuery{Limit: 50, Since: at(600), Until: at(700)}, and(in("busy"), window(600, 700)), 0},
		{"since only", []string{"a", "b"}, store.RunQuery{Limit: 1000, Since: at(2800)}, and(in("a", "b"), window(2800, 1<<30)), 1},
		{"until only, in the gaps", nil, store.RunQuery{Limit: 100, Until: at(500)}, window(0, 500), 0},
		{"empty window", nil, store.RunQuery{Limit: 10, Since: at(5000)}, func(store.Run) bool { return false }, 1},
		{"no such service", []string{"nope"}, store.RunQuery{Limit: 10}, func(store.Run) bool { return false }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, pages := f.all(t, tc.services, tc.q)
			want := f.want(tc.keep)
			if !slices.Equal(got, want) {
				t.Fatalf("paged %d runs, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
			}
			if tc.pages != 0 && pages != tc.pages {
				t.Errorf("%d pages, want %d", pages, tc.pages)
			}
		})
	}

	// A window deep in the past, read under a small scan budget: pages end
	// early, some empty, each with a Next, and still nothing is lost.
	t.Run("scan budget", func(t *testing.T) {
		defer store.SetMaxScan(200)()
		q := store.RunQuery{Limit: 50, Until: at(300)}
		first, err := f.page(nil, q)
		if err != nil || len(first.Runs) != 0 || first.Next == "" {
			t.Fatalf("first page = %d runs, next %q, %v; want none and a next (the budget ran out)", len(first.Runs), first.Next, err)
		}
		got, _ := f.all(t, nil, q)
		if want := f.want(window(0, 300)); !slices.Equal(got, want) {
			t.Fatalf("paged %d runs, want %d", len(got), len(want))
		}
	})

	// Nothing leaks: every page deletes the consumers it made.
	st, err := f.b.JS.Stream(context.Background(), bus.StreamRuns)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(context.Background()); err != nil || info.State.Consumers != 0 {
		t.Fatalf("consumers left on the runs stream: %v, %v", info.State.Consumers, err)
	}
}

func TestListRunsCursor(t *testing.T) {
	ctx := context.Background()
	f := newListFixture(t)
	all := f.want(func(store.Run) bool { return true })

	// A cursor past the newest record reads from the newest; one at or
	// before the oldest reads nothing.
	for _, tc := range []struct {
		cursor string
		first  string // "" for an empty page
	}{
		{"before:999999999", all[0]},
		{"before:1", ""},
		{"before:2", ""}, // sequence 1 was one of busy's dropped runs
	} {
		l, err := f.s.ListRuns(ctx, store.RunQuery{Limit: 5, Cursor: tc.cursor})
		if err != nil {
			t.Fatalf("cursor %s: %v", tc.cursor, err)
		}
		if tc.first == "" && (len(l.Runs) != 0 || l.Next != "") || tc.first != "" && (len(l.Runs) != 5 || l.Runs[0].ID != tc.first || l.Next == "") {
			t.Errorf("cursor %s: %d runs, next %q; want first %q", tc.cursor, len(l.Runs), l.Next, tc.first)
		}
	}
	if _, err := f.s.ListRuns(ctx, store.RunQuery{Cursor: "before:x"}); err == nil {
		t.Error("ListRuns with a bad cursor: no error")
	}

	// Runs recorded while a client pages do not shift its pages: it sees
	// neither them nor a run twice.
	p1, err := f.s.ListRuns(ctx, store.RunQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := f.s.AppendRun(ctx, store.Run{ID: fmt.Sprintf("late-%d", i), Service: "a", Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	rest, _ := f.all(t, nil, store.RunQuery{Limit: 1000, Cursor: p1.Next})
	var got []string
	for _, r := range p1.Runs {
		got = append(got, r.ID)
	}
	got = append(got, rest...)
	// a has 700 runs kept of up to 1,500: the late ones drop none of them.
	if !slices.Equal(got, all) {
		t.Fatalf("paged %d runs around new ones, want %d; first difference at %d", len(got), len(all), firstDiff(got, all))
	}
}

func TestParseCursor(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64 // 0: an error
	}{
		{"before:7", 7},
		{"before:18446744073709551615", 1<<64 - 1},
		{"", 0},
		{"before:", 0},
		{"before:0", 0},
		{"before:-1", 0},
		{"before:x", 0},
		{"after:7", 0},
		{"7", 0},
		{" before:7", 0},
	} {
		got, err := store.ParseCursor(tc.in)
		if got != tc.want || (err != nil) != (tc.want == 0) {
			t.Errorf("ParseCursor(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

// TestRunByID finds runs in any stored record, not only the newest
// thousand, by the node's time-sortable ids and by any other.
func TestRunByID(t *testing.T) {
	ctx := context.Background()
	f := newListFixture(t)
	// The oldest run busy keeps, behind 1,499 newer ones of its own.
	oldest := f.stored[slices.IndexFunc(f.stored, func(r store.Run) bool { return r.ID == "busy-0400" })]
	if r, err := f.s.Run(ctx, "busy", "busy-0400"); err != nil || r.ID != "busy-0400" || !r.Start.Equal(oldest.Start) {
		t.Fatalf("Run(busy-0400) = %+v, %v", r, err)
	}
	if _, err := f.s.Run(ctx, "busy", "busy-0399"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Run of a dropped run: %v, want ErrNotFound", err)
	}
	if _, err := f.s.Run(ctx, "a", "busy-0400"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Run of another service's run: %v, want ErrNotFound", err)
	}
	// Ids of the node's form (48 bits of milliseconds, 48 random bits):
	// one just recorded, one from an hour ago (recorded now, so it is
	// found from its time on), and one never recorded.
	enc := base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)
	id := func(at time.Time, rnd uint16) string {
		var b [12]byte
		binary.BigEndian.PutUint64(b[:8], uint64(at.UnixMilli())<<16|uint64(rnd))
		return enc.EncodeToString(b[:])
	}
	now, hourAgo, never := id(time.Now(), 1), id(time.Now().Add(-time.Hour), 2), id(time.Now(), 3)
	for _, rid := range []string{hourAgo, now} {
		if err := f.s.AppendRun(ctx, store.Run{ID: rid, Service: "a", Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, rid := range []string{now, hourAgo} {
		if r, err := f.s.Run(ctx, "a", rid); err != nil || r.ID != rid {
			t.Fatalf("Run(%s) = %+v, %v", rid, r, err)
		}
	}
	if _, err := f.s.Run(ctx, "a", never); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Run of an id never recorded: %v, want ErrNotFound", err)
	}
}

// TestLastRun: the latest record of a service, none for a service without.
func TestLastRun(t *testing.T) {
	ctx := context.Background()
	f := newListFixture(t)
	for _, id := range []string{"last-1", "last-2"} {
		if err := f.s.AppendRun(ctx, store.Run{ID: id, Service: "a", Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	if r, ok, err := f.s.LastRun(ctx, "a"); err != nil || !ok || r.ID != "last-2" {
		t.Fatalf("LastRun(a) = %s, %v, %v; want last-2", r.ID, ok, err)
	}
	if r, ok, err := f.s.LastRun(ctx, "nobody"); err != nil || ok {
		t.Fatalf("LastRun(nobody) = %s, %v, %v; want none", r.ID, ok, err)
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
