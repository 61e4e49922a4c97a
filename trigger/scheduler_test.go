package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cron "github.com/netresearch/go-cron"
)

// t0 is where fake clocks start: a whole second, so that cron expressions
// with seconds have easy answers.
var t0 = time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)

// recorder collects the events a Scheduler fires.
type recorder struct {
	mu     sync.Mutex
	events []Event
	ch     chan Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan Event, 1024)} }

func (r *recorder) fire(ev Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	r.ch <- ev
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// next waits for the next event, failing the test after a generous timeout.
func (r *recorder) next(t *testing.T) Event {
	t.Helper()
	select {
	case ev := <-r.ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return Event{}
	}
}

// waitTimer waits until the scheduler has armed its timer on clock. It
// polls TimerCount: FakeClock.BlockUntil can miss the wake-up of a timer
// armed between its check and its wait (its notice is a send that is
// dropped when nobody receives yet), and then never returns.
func waitTimer(t *testing.T, clock *cron.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for clock.TimerCount() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("scheduler armed no timer within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func stop(t *testing.T, s *Scheduler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Errorf("Stop() = %v", err)
	}
}

func cronEvery(d time.Duration) Spec { return Spec{Kind: KindCron, Every: d} }

func TestEveryFakeClock(t *testing.T) {
	clock := cron.NewFakeClock(t0)
	rec := newRecorder()
	s := NewScheduler(Config{Clock: clock}, rec.fire)
	msg := json.RawMessage(`{"n":1}`)
	if err := s.Set("svc", []Spec{{Kind: KindCron, Every: 10 * time.Second, Message: msg}}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer stop(t, s)

	for k := 1; k <= 3; k++ {
		waitTimer(t, clock)
		clock.Advance(10 * time.Second)
		ev := rec.next(t)
		want := t0.Add(time.Duration(k) * 10 * time.Second)
		if !ev.At.Equal(want) || ev.Service != "svc" || ev.Trigger != "triggers[0]" || ev.Kind != KindCron {
			t.Errorf("tick %d = %+v, want svc triggers[0] cron at %v", k, ev, want)
		}
		if string(ev.Message) != string(msg) {
			t.Errorf("tick %d message = %s, want %s", k, ev.Message, msg)
		}
	}

	// Wake 35s late: ticks at +40s, +50s and +60s are due; the latest is
	// delivered, the other two counted as missed, and the grid is kept.
	waitTimer(t, clock)
	clock.Advance(35 * time.Second)
	ev := rec.next(t)
	if want := t0.Add(60 * time.Second); !ev.At.Equal(want) {
		t.Errorf("late tick at %v, want %v", ev.At, want)
	}
	waitTimer(t, clock)
	if got, want := s.Next("svc"), t0.Add(70*time.Second); len(got) != 1 || !got[0].Equal(want) {
		t.Errorf("Next = %v, want [%v]", got, want)
	}
	st := s.Stats()
	if st.Fired != 4 || st.Missed != 2 || st.Late != 1 || st.Scheduled != 1 {
		t.Errorf("Stats() = %+v, want fired 4, missed 2, late 1, scheduled 1", st)
	}
	es := s.Entries()
	if len(es) != 1 || es[0].Fired != 4 || es[0].Missed != 2 || !es[0].Last.Equal(t0.Add(60*time.Second)) {
		t.Errorf("Entries() = %+v, want one entry fired 4 missed 2 last +60s", es)
	}
}

func TestCronFakeClock(t *testing.T) {
	clock := cron.NewFakeClock(t0.Add(time.Second))
	rec := newRecorder()
	s := NewScheduler(Config{Clock: clock}, rec.fire)
	if err := s.Set("svc", []Spec{{Kind: KindManual}, {Kind: KindCron, Schedule: "*/5 * * * * *"}}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer stop(t, s)
	for _, want := range []time.Time{t0.Add(5 * time.Second), t0.Add(10 * time.Second)} {
		waitTimer(t, clock)
		clock.Set(want)
		ev := rec.next(t)
		if !ev.At.Equal(want) || ev.Trigger != "triggers[1]" {
			t.Errorf("event = %+v, want triggers[1] at %v", ev, want)
		}
	}
}

func TestNext(t *testing.T) {
	now := t0.Add(time.Second) // 12:00:01 UTC, a Friday
	tests := []struct {
		name string
		spec Spec
		want time.Time
	}{
		{"every", cronEvery(90 * time.Second), now.Add(90 * time.Second)},
		{"every descriptor", Spec{Kind: KindCron, Schedule: "@every 250ms"}, now.Add(250 * time.Millisecond)},
		{"seconds", Spec{Kind: KindCron, Schedule: "*/5 * * * * *"}, t0.Add(5 * time.Second)},
		{"minutes", Spec{Kind: KindCron, Schedule: "0 30 * * * *"}, t0.Add(30 * time.Minute)},
		{"hourly", Spec{Kind: KindCron, Schedule: "@hourly"}, t0.Add(time.Hour)},
		{"time zone", Spec{Kind: KindCron, Schedule: "CRON_TZ=Asia/Tokyo 0 0 9 * * *"}, time.Date(2025, 3, 15, 0, 0, 0, 0, time.UTC)},
		{"dom or dow", Spec{Kind: KindCron, Schedule: "0 0 0 1 * MON"}, time.Date(2025, 3, 17, 0, 0, 0, 0, time.UTC)},
		{"anchor in the past", Spec{Kind: KindCron, Every: time.Minute, Anchor: t0.Add(-time.Hour + 30*time.Second)}, t0.Add(30 * time.Second)},
		{"anchor in the future", Spec{Kind: KindCron, Every: time.Minute, Anchor: t0.Add(time.Hour)}, t0.Add(time.Hour + time.Minute)},
		{"manual", Spec{Kind: KindManual}, time.Time{}},
		{"event", Spec{Kind: KindEvent, Topic: "orders"}, time.Time{}},
		{"http", Spec{Kind: KindHTTP, Path: "/hook"}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewScheduler(Config{Clock: cron.NewFakeClock(now)}, func(Event) {})
			if err := s.Set("svc", []Spec{tt.spec}); err != nil {
				t.Fatal(err)
			}
			got := s.Next("svc")
			if len(got) != 1 || !got[0].Equal(tt.want) {
				t.Errorf("Next after Set(%v) = %v, want [%v]", tt.spec, got, tt.want)
			}
		})
	}
}

func TestSetInvalid(t *testing.T) {
	good := []Spec{cronEvery(time.Minute), {Kind: KindCron, Schedule: "0 * * * * *"}}
	tests := []struct {
		name  string
		spec  Spec
		field string
	}{
		{"bad expression", Spec{Kind: KindCron, Schedule: "61 * * * * *"}, "triggers[2].schedule"},
		{"too few fields", Spec{Kind: KindCron, Schedule: "* * *"}, "triggers[2].schedule"},
		{"no seconds", Spec{Kind: KindCron, Schedule: "*/5 * * * *"}, "triggers[2].schedule"},
		{"bad descriptor", Spec{Kind: KindCron, Schedule: "@fortnightly"}, "triggers[2].schedule"},
		{"bad every descriptor", Spec{Kind: KindCron, Schedule: "@every soon"}, "triggers[2].schedule"},
		{"negative every descriptor", Spec{Kind: KindCron, Schedule: "@every -1s"}, "triggers[2].schedule"},
		{"never fires", Spec{Kind: KindCron, Schedule: "0 0 0 30 2 *"}, "triggers[2].schedule"},
		{"negative every", Spec{Kind: KindCron, Every: -time.Second}, "triggers[2].every"},
		{"both", Spec{Kind: KindCron, Every: time.Second, Schedule: "@hourly"}, "triggers[2]: "},
		{"neither", Spec{Kind: KindCron}, "triggers[2]: "},
		{"unknown kind", Spec{Kind: "sometimes"}, "triggers[2].kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := cron.NewFakeClock(t0)
			s := NewScheduler(Config{Clock: clock}, func(Event) {})
			if err := s.Set("svc", []Spec{cronEvery(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			before, beforeEntries := s.Next("svc"), s.Entries()
			clock.Advance(time.Second) // so that any change would show in Next

			err := s.Set("svc", append(append([]Spec(nil), good...), tt.spec))
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Set(%v) = %v, want ErrInvalidSpec naming %q", tt.spec, err, tt.field)
			}
			if !strings.HasPrefix(err.Error(), "set svc: ") {
				t.Errorf("Set error %q does not name the operation and service", err)
			}
			after := s.Next("svc")
			if len(after) != len(before) || !after[0].Equal(before[0]) {
				t.Errorf("Next after a bad Set = %v, want unchanged %v", after, before)
			}
			if got := s.Entries(); len(got) != 1 || got[0].Spec.Every != beforeEntries[0].Spec.Every {
				t.Errorf("Entries after a bad Set = %+v, want unchanged %+v", got, beforeEntries)
			}
		})
	}

	s := NewScheduler(Config{}, func(Event) {})
	if err := s.Set("", good); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("Set(\"\") = %v, want ErrInvalidSpec", err)
	}
	// Every bad field is named, not only the first.
	err := s.Set("svc", []Spec{{Kind: KindCron, Schedule: "nope"}, {Kind: KindCron, Every: -1}})
	if err == nil || !strings.Contains(err.Error(), "triggers[0].schedule") || !strings.Contains(err.Error(), "triggers[1].every") {
		t.Errorf("Set with two bad specs = %v, want both named", err)
	}
}

func TestSetKeepsPhase(t *testing.T) {
	clock := cron.NewFakeClock(t0)
	s := NewScheduler(Config{Clock: clock}, func(Event) {})
	set := func(specs ...Spec) {
		t.Helper()
		if err := s.Set("svc", specs); err != nil {
			t.Fatal(err)
		}
	}
	set(cronEvery(10*time.Second), Spec{Kind: KindManual})
	clock.Advance(4 * time.Second)

	// The same spec with a new message keeps its ticks.
	set(Spec{Kind: KindCron, Every: 10 * time.Second, Message: json.RawMessage(`"v2"`)}, Spec{Kind: KindManual})
	if got := s.Next("svc"); len(got) != 2 || !got[0].Equal(t0.Add(10*time.Second)) || !got[1].IsZero() {
		t.Errorf("Next after an unchanged Set = %v, want [+10s, zero]", got)
	}
	if es := s.Entries(); len(es) != 1 || string(es[0].Spec.Message) != `"v2"` {
		t.Errorf("Entries = %+v, want the new message", es)
	}
	// A changed interval starts again from now; a new trigger is added.
	set(cronEvery(5*time.Second), Spec{Kind: KindCron, Schedule: "@hourly"})
	want := []time.Time{t0.Add(9 * time.Second), t0.Add(time.Hour)}
	if got := s.Next("svc"); len(got) != 2 || !got[0].Equal(want[0]) || !got[1].Equal(want[1]) {
		t.Errorf("Next after a changed Set = %v, want %v", got, want)
	}
	if st := s.Stats(); st.Scheduled != 2 {
		t.Errorf("Stats().Scheduled = %d, want 2", st.Scheduled)
	}
	// An empty Set removes the service.
	set()
	if got := s.Next("svc"); got != nil {
		t.Errorf("Next after Set(nil) = %v, want nil", got)
	}
	if st := s.Stats(); st.Scheduled != 0 {
		t.Errorf("Stats().Scheduled = %d, want 0", st.Scheduled)
	}
}

func TestEntries(t *testing.T) {
	s := NewScheduler(Config{Clock: cron.NewFakeClock(t0)}, func(Event) {})
	for _, name := range []string{"b", "a"} {
		if err := s.Set(name, []Spec{{Kind: KindHTTP}, cronEvery(time.Minute), {Kind: KindCron, Schedule: "@daily"}}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, e := range s.Entries() {
		got = append(got, e.Service+" "+e.Trigger+" "+e.Spec.String())
	}
	want := []string{
		"a triggers[1] every 1m0s", "a triggers[2] @daily",
		"b triggers[1] every 1m0s", "b triggers[2] @daily",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Entries() = %q, want %q", got, want)
	}
}

// The tests below run on the real clock with short intervals. They assert
// what must hold however slow the machine is, with generous ceilings.

func TestEveryFiresRepeatedly(t *testing.T) {
	rec := newRecorder()
	s := NewScheduler(Config{}, rec.fire)
	const every = 50 * time.Millisecond
	if err := s.Set("svc", []Spec{cronEvery(every)}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	for range 5 {
		rec.next(t)
	}
	stop(t, s)
	evs := rec.all()
	for i := 1; i < len(evs); i++ {
		d := evs[i].At.Sub(evs[i-1].At)
		if d <= 0 || d%every != 0 {
			t.Errorf("tick %d came %v after tick %d, want a positive multiple of %v", i, d, i-1, every)
		}
	}
	if st := s.Stats(); st.Fired != uint64(len(evs)) {
		t.Errorf("Stats().Fired = %d, want %d", st.Fired, len(evs))
	}
}

func TestCronSecondsFires(t *testing.T) {
	rec := newRecorder()
	s := NewScheduler(Config{}, rec.fire)
	if err := s.Set("svc", []Spec{{Kind: KindCron, Schedule: "*/1 * * * * *"}}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	a, b := rec.next(t), rec.next(t)
	stop(t, s)
	if a.At.Nanosecond() != 0 || b.At.Sub(a.At) < time.Second || b.At.Sub(a.At)%time.Second != 0 {
		t.Errorf("ticks at %v and %v, want whole seconds at least 1s apart", a.At, b.At)
	}
}

func TestSetReplaces(t *testing.T) {
	rec := newRecorder()
	s := NewScheduler(Config{}, rec.fire)
	s.Start()
	defer stop(t, s)
	if err := s.Set("svc", []Spec{{Kind: KindCron, Every: 20 * time.Millisecond, Message: json.RawMessage(`"old"`)}}); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	if err := s.Set("svc", []Spec{{Kind: KindManual}, {Kind: KindCron, Every: 30 * time.Millisecond, Message: json.RawMessage(`"new"`)}}); err != nil {
		t.Fatal(err)
	}
	replaced := time.Now()
	// Ticks scheduled before the Set may still be on their way; every tick
	// scheduled after it is the new trigger's.
	for n := 0; n < 3; {
		ev := rec.next(t)
		if !ev.At.After(replaced) {
			continue
		}
		n++
		if ev.Trigger != "triggers[1]" || string(ev.Message) != `"new"` {
			t.Errorf("tick at %v after Set = %s %s, want triggers[1] \"new\"", ev.At, ev.Trigger, ev.Message)
		}
	}
}

func TestRemoveStopsFiring(t *testing.T) {
	rec := newRecorder()
	s := NewScheduler(Config{}, rec.fire)
	s.Start()
	defer stop(t, s)
	for _, name := range []string{"gone", "kept"} {
		if err := s.Set(name, []Spec{cronEvery(20 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
	}
	rec.next(t)
	s.Remove("gone")
	s.Remove("never was")
	removed := time.Now()
	if got := s.Next("gone"); got != nil {
		t.Errorf("Next(removed) = %v, want nil", got)
	}
	kept := 0
	for kept < 5 {
		ev := rec.next(t)
		switch {
		case ev.Service == "kept":
			kept++
		case ev.At.After(removed):
			t.Errorf("removed service fired at %v, after Remove at %v", ev.At, removed)
		}
	}
}

func TestStopWaits(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 100)
	var mu sync.Mutex
	returned := 0
	s := NewScheduler(Config{}, func(Event) {
		started <- struct{}{}
		<-release
		mu.Lock()
		returned++
		mu.Unlock()
	})
	if err := s.Set("svc", []Spec{cronEvery(10 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no tick within 5s")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop with a callback blocked = %v, want context.DeadlineExceeded", err)
	}
	running := s.Stats().Running
	if running == 0 {
		t.Fatal("Stats().Running = 0 with a callback blocked")
	}
	close(release)
	stop(t, s)
	mu.Lock()
	got := returned
	mu.Unlock()
	if got != running {
		t.Errorf("after Stop %d callbacks returned, want all %d", got, running)
	}
	// Stop waited for them: nothing is running now, without a sleep.
	if st := s.Stats(); st.Fired != uint64(running) || st.Running != 0 {
		t.Errorf("Stats() after Stop = %+v, want fired %d and none running", st, running)
	}
	// Stop again is fine; Start resumes.
	stop(t, s)
	for len(started) > 0 {
		<-started
	}
	s.Start()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no tick within 5s after restart")
	}
	stop(t, s)
}

// TestConcurrentUse: eight goroutines each own a service and Set, query
// and Remove it over and over while the scheduler fires. Each sees its own
// service exactly as its last Set or Remove left it, whatever the others
// do; afterwards the scheduler holds exactly the triggers of the last
// Sets, each of them still fires, and every tick it counted reached the
// callback. None of this needs -race to fail.
func TestConcurrentUse(t *testing.T) {
	const services, rounds = 8, 200
	var calls atomic.Uint64
	ticks := make(chan Event, 1024)
	s := NewScheduler(Config{}, func(ev Event) {
		calls.Add(1)
		select {
		case ticks <- ev:
		default: // the test reads ticks only at the end
		}
	})
	s.Start()
	defer stop(t, s)
	every := func(i int) time.Duration { return time.Duration(1+i%3) * time.Millisecond }
	specs := func(i int) []Spec {
		return []Spec{cronEvery(every(i)), {Kind: KindCron, Schedule: "* * * * * *"}, {Kind: KindManual}}
	}
	// own returns the entries of service name.
	own := func(name string) []Entry {
		var out []Entry
		for _, e := range s.Entries() {
			if e.Service == name {
				out = append(out, e)
			}
		}
		return out
	}
	var wg sync.WaitGroup
	for g := range services {
		wg.Go(func() {
			name := string(rune('a' + g))
			for i := range rounds {
				if err := s.Set(name, specs(i)); err != nil {
					t.Errorf("Set(%s) = %v", name, err)
					return
				}
				if next := s.Next(name); len(next) != 3 || next[0].IsZero() || next[1].IsZero() || !next[2].IsZero() {
					t.Errorf("Next(%s) after Set = %v, want two ticks and a zero for the manual trigger", name, next)
					return
				}
				es := own(name)
				if len(es) != 2 || es[0].Trigger != "triggers[0]" || es[0].Spec.Every != every(i) || es[1].Trigger != "triggers[1]" || es[1].Spec.Schedule != "* * * * * *" {
					t.Errorf("Entries of %s after Set(every %v) = %+v", name, every(i), es)
					return
				}
				if i%10 == 0 {
					s.Remove(name)
					if next, es := s.Next(name), own(name); next != nil || len(es) != 0 {
						t.Errorf("after Remove(%s): Next = %v, entries %+v; want none", name, next, es)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	settled := time.Now()

	// The last Set of each service stands, and nothing else is queued.
	es := s.Entries()
	if len(es) != 2*services {
		t.Fatalf("Entries() after the churn = %d entries, want %d: %+v", len(es), 2*services, es)
	}
	for i, e := range es {
		if want := string(rune('a' + i/2)); e.Service != want || e.Trigger != Name(i%2) || i%2 == 0 && e.Spec.Every != every(rounds-1) {
			t.Errorf("Entries()[%d] = %s %s %v, want %s %s as last Set", i, e.Service, e.Trigger, e.Spec, want, Name(i%2))
		}
	}
	if st := s.Stats(); st.Scheduled != 2*services {
		t.Errorf("Stats().Scheduled = %d, want %d", st.Scheduled, 2*services)
	}
	// Each service's interval trigger still fires.
	pending := map[string]bool{}
	for g := range services {
		pending[string(rune('a'+g))] = true
	}
	deadline := time.After(5 * time.Second)
	for len(pending) > 0 {
		select {
		case ev := <-ticks:
			if ev.Trigger == "triggers[0]" && ev.At.After(settled) {
				delete(pending, ev.Service)
			}
		case <-deadline:
			t.Fatalf("no tick within 5s after the churn from %v", pending)
		}
	}
	// Stop waits for the callbacks: each tick counted was delivered.
	stop(t, s)
	if st := s.Stats(); st.Fired != calls.Load() || st.Running != 0 {
		t.Errorf("Stats() after Stop = fired %d, running %d; the callback ran %d times", st.Fired, st.Running, calls.Load())
	}
}

// TestPrewarmFakeClock checks prewarms: Config.Prewarm is called Lead
// before each tick with the tick's event, once per tick and never for a
// tick already due; a Lead not shorter than the interval prewarms right
// after the previous tick; without Config.Prewarm a Lead does nothing; a
// negative Lead is refused with its field.
func TestPrewarmFakeClock(t *testing.T) {
	clock := cron.NewFakeClock(t0)
	rec, warm := newRecorder(), newRecorder()
	s := NewScheduler(Config{Clock: clock, Prewarm: warm.fire}, rec.fire)
	if err := s.Set("svc", []Spec{{Kind: KindCron, Every: 10 * time.Second, Lead: 2 * time.Second, Message: json.RawMessage(`{"n":1}`)}}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer stop(t, s)
	quiet := func(r *recorder, what string) {
		t.Helper()
		select {
		case ev := <-r.ch:
			t.Fatalf("unexpected %s: %+v", what, ev)
		case <-time.After(20 * time.Millisecond):
		}
	}

	for k := 1; k <= 2; k++ {
		tick := t0.Add(time.Duration(k) * 10 * time.Second)
		waitTimer(t, clock)
		clock.Advance(8 * time.Second)
		ev := warm.next(t)
		if !ev.At.Equal(tick) || ev.Service != "svc" || ev.Trigger != "triggers[0]" || string(ev.Message) != `{"n":1}` {
			t.Errorf("prewarm %d = %+v, want svc triggers[0] at %v", k, ev, tick)
		}
		quiet(rec, "tick before its time")
		waitTimer(t, clock)
		clock.Advance(2 * time.Second)
		if ev := rec.next(t); !ev.At.Equal(tick) {
			t.Errorf("tick %d at %v, want %v", k, ev.At, tick)
		}
		quiet(warm, "second prewarm of a tick")
	}

	// A late wake-up: the tick at +30s is due before its prewarm was
	// called; it runs without one, and the next tick gets its own.
	waitTimer(t, clock)
	clock.Advance(15 * time.Second) // +35s
	if ev := rec.next(t); !ev.At.Equal(t0.Add(30 * time.Second)) {
		t.Errorf("late tick at %v, want +30s", ev.At)
	}
	quiet(warm, "prewarm of a tick already due")
	waitTimer(t, clock)
	clock.Advance(3 * time.Second) // +38s
	if ev := warm.next(t); !ev.At.Equal(t0.Add(40 * time.Second)) {
		t.Errorf("prewarm after a late tick at %v, want +40s", ev.At)
	}
	if st := s.Stats(); st.Prewarms != 3 || st.Fired != 3 {
		t.Errorf("Stats() = %+v, want 3 prewarms and 3 ticks", st)
	}

	// A lead as long as the interval: the prewarm comes with the previous
	// tick's delivery.
	if err := s.Set("fast", []Spec{{Kind: KindCron, Every: time.Second, Lead: 5 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	if ev := warm.next(t); ev.Service != "fast" || !ev.At.Equal(t0.Add(39*time.Second)) {
		t.Errorf("prewarm of a new fast trigger = %+v, want fast at +39s", ev)
	}
	s.Remove("svc")
	waitTimer(t, clock)
	clock.Advance(time.Second) // +39s
	if ev := rec.next(t); ev.Service != "fast" || !ev.At.Equal(t0.Add(39*time.Second)) {
		t.Errorf("fast tick = %+v, want +39s", ev)
	}
	if ev := warm.next(t); ev.Service != "fast" || !ev.At.Equal(t0.Add(40*time.Second)) {
		t.Errorf("prewarm after the fast tick = %+v, want +40s", ev)
	}

	if err := s.Set("bad", []Spec{{Kind: KindCron, Every: time.Second, Lead: -time.Second}}); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "triggers[0].lead") {
		t.Errorf("a negative lead: %v, want an invalid spec naming triggers[0].lead", err)
	}
}

// TestLeadWithoutPrewarm checks that a Lead does nothing when the
// Scheduler has no Config.Prewarm: ticks come as scheduled.
func TestLeadWithoutPrewarm(t *testing.T) {
	clock := cron.NewFakeClock(t0)
	rec := newRecorder()
	s := NewScheduler(Config{Clock: clock}, rec.fire)
	if err := s.Set("svc", []Spec{{Kind: KindCron, Every: 10 * time.Second, Lead: 2 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer stop(t, s)
	waitTimer(t, clock)
	clock.Advance(10 * time.Second)
	if ev := rec.next(t); !ev.At.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("tick at %v, want +10s", ev.At)
	}
	if st := s.Stats(); st.Prewarms != 0 || st.Fired != 1 {
		t.Errorf("Stats() = %+v, want no prewarm and one tick", st)
	}
}
