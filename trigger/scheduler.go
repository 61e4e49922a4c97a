package trigger

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cron "github.com/netresearch/go-cron"
)

// Config configures a Scheduler. The zero value is valid: every zero field
// takes the default DefaultConfig shows.
type Config struct {
	// Location is the time zone of cron expressions without a CRON_TZ=
	// prefix, and of the times the Scheduler reports. Default time.UTC.
	Location *time.Location
	// Clock is the Scheduler's source of time and timers. Default
	// cron.RealClock{}; tests pass a *cron.FakeClock.
	Clock cron.Clock
	// LateAfter is how long after its scheduled time a tick may be delivered
	// before Stats counts it as late. Default 1s.
	LateAfter time.Duration
	// Prewarm, when set, is called Spec.Lead before each tick of a trigger
	// whose Lead is positive, with the Event the tick will deliver (At is
	// the tick's time), each call in its own goroutine like fire's. A tick
	// already due gets no prewarm. It must not panic.
	Prewarm func(Event)
}

// DefaultConfig returns the defaults: UTC, the real clock, late after 1s.
func DefaultConfig() Config {
	return Config{Location: time.UTC, Clock: cron.RealClock{}, LateAfter: time.Second}
}

// maxCatchUp bounds how many missed ticks of one cron expression a single
// wake-up of the scheduler walks (and counts); see Stats.Missed.
const maxCatchUp = 1 << 20

// parser reads Spec.Schedule: six fields with seconds (the manifest's rule),
// descriptors, and crontab(5)'s OR of day-of-month and day-of-week.
var parser = cron.NewParser(cron.Second | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor | cron.DowOrDom)

// Scheduler fires the time-based (KindCron) triggers of services. It calls
// the fire function given to NewScheduler once per tick, each call in its
// own goroutine: the Scheduler never waits for a callback and holds no lock
// while one runs, so two firings of one trigger may run at once (the node
// bounds concurrency). fire must not panic; a panic in it ends the process
// like any goroutine's.
//
// Interval triggers (Spec.Every, or "@every d") tick at Anchor + k×Every,
// computed from the anchor rather than from the previous delivery, so lateness
// never accumulates into drift. Cron expressions tick as the expression says,
// to the second. When the Scheduler wakes late (a paused process, a suspended
// machine, an overloaded host) and several ticks of one trigger are due, it
// delivers only the latest of them and counts the others as missed (per
// trigger in Entries, in total in Stats); no tick is dropped without a count.
//
// All methods are safe for concurrent use. Set, Remove and the queries work
// before Start and after Stop; ticks are only delivered between the two.
type Scheduler struct {
	fire      func(Event)
	prewarm   func(Event) // nil: no prewarms
	loc       *time.Location
	clock     cron.Clock
	lateAfter time.Duration
	// precise is set on the real clock: the loop sleeps the last
	// preciseWindow before a tick with sleepPrecise instead of a Go timer.
	precise bool

	mu       sync.Mutex
	services map[string][]*entry // by trigger index; nil where not scheduled
	queue    queue               // scheduled entries, earliest next first
	stop     chan struct{}       // nil when not running
	done     chan struct{}       // closed when the loop of stop returns
	wake     chan struct{}       // capacity 1: the schedule changed

	callMu sync.Mutex
	calls  int             // callbacks running
	idle   []chan struct{} // closed when calls drops to zero

	fired, missed, late, prewarms atomic.Uint64
}

// NewScheduler returns a stopped Scheduler that calls fire for each tick.
// Zero fields of cfg take their defaults. It panics if fire is nil.
func NewScheduler(cfg Config, fire func(Event)) *Scheduler {
	if fire == nil {
		panic("trigger: NewScheduler with nil fire")
	}
	def := DefaultConfig()
	if cfg.Location == nil {
		cfg.Location = def.Location
	}
	if cfg.Clock == nil {
		cfg.Clock = def.Clock
	}
	if cfg.LateAfter <= 0 {
		cfg.LateAfter = def.LateAfter
	}
	return &Scheduler{
		fire:      fire,
		prewarm:   cfg.Prewarm,
		loc:       cfg.Location,
		clock:     cfg.Clock,
		lateAfter: cfg.LateAfter,
		precise:   isRealClock(cfg.Clock),
		services:  make(map[string][]*entry),
		wake:      make(chan struct{}, 1),
	}
}

// Start starts delivering ticks. Ticks that fell due while the Scheduler was
// stopped are handled as for a late wake-up: the latest is delivered, the
// others counted as missed. Calling Start on a running Scheduler does nothing.
func (s *Scheduler) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil {
		return
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.run(s.stop, s.done)
}

// Stop stops delivering ticks and waits until the callbacks already started
// have returned, or until ctx is done, whichever comes first; in the latter
// case it returns ctx's error and the callbacks keep running. The triggers
// stay set: Start resumes them. Safe to call more than once.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	stop, done := s.stop, s.done
	s.stop, s.done = nil, nil
	s.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}

	s.callMu.Lock()
	if s.calls == 0 {
		s.callMu.Unlock()
		return nil
	}
	idle := make(chan struct{})
	s.idle = append(s.idle, idle)
	s.callMu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop scheduler: %w", ctx.Err())
	}
}

// Set replaces all the time-based triggers of service with those in specs,
// atomically. specs is the service's whole trigger list: index i is
// triggers[i], and specs of the kinds manual, event and http are accepted and
// not scheduled. All specs are validated first; if any is invalid Set returns
// an error wrapping ErrInvalidSpec that names each bad field
// ("triggers[1].schedule") and changes nothing.
//
// A trigger whose Kind, Every, Schedule and Anchor are unchanged from the
// previous Set keeps its place in its schedule (only its Message is
// replaced), so a node that reconciles by calling Set again and again does not
// postpone its interval triggers. A new interval trigger with a zero Anchor
// is anchored at the time of the Set and first fires one interval later.
// An empty specs removes the service.
func (s *Scheduler) Set(service string, specs []Spec) error {
	if service == "" {
		return fmt.Errorf("set: service: %w: empty name", ErrInvalidSpec)
	}
	if len(specs) == 0 {
		s.Remove(service)
		return nil
	}
	now := s.clock.Now()
	fresh := make([]*entry, len(specs))
	var errs []error
	for i, sp := range specs {
		e, err := s.newEntry(service, i, sp, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fresh[i] = e
	}
	if len(errs) > 0 {
		return fmt.Errorf("set %s: %w", service, errors.Join(errs...))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.services[service]
	for i, e := range fresh {
		if e == nil {
			continue
		}
		if i < len(old) && old[i] != nil && old[i].same(e.spec) {
			kept := old[i]
			kept.spec.Message, kept.spec.Lead, kept.lead = e.spec.Message, e.spec.Lead, e.lead
			if kept.index >= 0 {
				heap.Fix(&s.queue, kept.index)
			}
			fresh[i], old[i] = kept, nil
			continue
		}
		if !e.next.IsZero() {
			heap.Push(&s.queue, e)
		}
	}
	s.unqueue(old)
	s.services[service] = fresh
	s.signal()
	return nil
}

// Remove removes all the triggers of service. Callbacks already started keep
// running. Removing an unknown service does nothing.
func (s *Scheduler) Remove(service string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.services[service]
	if !ok {
		return
	}
	s.unqueue(old)
	delete(s.services, service)
	s.signal()
}

// Next returns the next fire time of each trigger of service, indexed like
// the specs given to Set: index i is triggers[i]. The time is zero for
// triggers the Scheduler does not schedule (manual, event, http) and for
// schedules that never fire again. It returns nil for an unknown service.
func (s *Scheduler) Next(service string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	es, ok := s.services[service]
	if !ok {
		return nil
	}
	out := make([]time.Time, len(es))
	for i, e := range es {
		if e != nil {
			out[i] = s.report(e.next)
		}
	}
	return out
}

// Entry describes one scheduled trigger, for listings.
type Entry struct {
	Service string
	Trigger string // "triggers[i]"
	Spec    Spec
	// Next is the next scheduled tick; zero if the schedule never fires again.
	Next time.Time
	// Last is the scheduled time of the last tick delivered; zero before the first.
	Last time.Time
	// Fired counts the ticks delivered, Missed the ticks skipped because a
	// later tick of the same trigger was already due (see Scheduler).
	Fired, Missed uint64
}

// Entries lists the scheduled (KindCron) triggers of all services, sorted by
// service, then by trigger index.
func (s *Scheduler) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Entry
	names := make([]string, 0, len(s.services))
	for name := range s.services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, e := range s.services[name] {
			if e == nil {
				continue
			}
			sp := e.spec
			sp.Message = bytes.Clone(sp.Message)
			out = append(out, Entry{
				Service: e.service,
				Trigger: e.trigger,
				Spec:    sp,
				Next:    s.report(e.next),
				Last:    s.report(e.last),
				Fired:   e.fired,
				Missed:  e.missed,
			})
		}
	}
	return out
}

// Stats are a Scheduler's counters since NewScheduler.
type Stats struct {
	// Fired counts the ticks delivered to the callback.
	Fired uint64
	// Missed counts the ticks not delivered because a later tick of the same
	// trigger was already due when the Scheduler woke (see Scheduler). One
	// wake-up counts at most 2^20 missed ticks of one cron expression.
	Missed uint64
	// Late counts the delivered ticks that were delivered more than
	// Config.LateAfter after their scheduled time.
	Late uint64
	// Prewarms counts the calls of Config.Prewarm.
	Prewarms uint64
	// Scheduled is the number of triggers with a next tick.
	Scheduled int
	// Running is the number of callbacks that have not returned yet.
	Running int
}

// Stats returns the Scheduler's counters.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	scheduled := len(s.queue)
	s.mu.Unlock()
	s.callMu.Lock()
	running := s.calls
	s.callMu.Unlock()
	return Stats{
		Fired:     s.fired.Load(),
		Missed:    s.missed.Load(),
		Late:      s.late.Load(),
		Prewarms:  s.prewarms.Load(),
		Scheduled: scheduled,
		Running:   running,
	}
}

// run is the scheduler loop: deliver what is due, sleep until the next tick
// or a change of the schedule, until stop is closed.
func (s *Scheduler) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var timer cron.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		s.mu.Lock()
		select {
		case <-stop:
			s.mu.Unlock()
			return
		default:
		}
		now := s.clock.Now()
		s.dispatch(now)
		var wait <-chan time.Time
		var fine time.Duration
		if len(s.queue) > 0 {
			at, warm := s.queue[0].due()
			d := at.Sub(now)
			if s.precise && d <= preciseWindow && !warm {
				fine = d
			} else {
				if s.precise && !warm {
					d -= preciseWindow // woken early; the rest is slept precisely
				}
				if timer == nil {
					timer = s.clock.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				wait = timer.C()
			}
		} else if timer != nil {
			timer.Stop()
		}
		s.mu.Unlock()

		if fine > 0 {
			// A change of the schedule or a stop waits at most this long.
			sleepPrecise(fine)
			continue
		}
		select {
		case <-wait:
		case <-s.wake:
		case <-stop:
			return
		}
	}
}

// preciseWindow is the stretch before a tick that the loop sleeps with
// sleepPrecise. Go's timers wake through the network poller, whose wait is
// in whole milliseconds on Linux (epoll_wait), so a timer set for a tick
// fires up to about a millisecond late on an idle node: measured 0.8 ms
// p50 and 1.5 ms p99 for a lone trigger (BenchmarkSchedulerLag). A
// millisecond sleep in a thread of its own (clock_nanosleep) is precise
// to the kernel's timer slack, tens of microseconds.
const preciseWindow = 2 * time.Millisecond

// isRealClock says whether c is the wall clock, for which the loop sleeps
// precisely; test clocks keep their own timers.
func isRealClock(c cron.Clock) bool {
	_, ok := c.(cron.RealClock)
	return ok
}

// dispatch delivers every tick and prewarm due at now. s.mu is held.
func (s *Scheduler) dispatch(now time.Time) {
	for len(s.queue) > 0 {
		e := s.queue[0]
		due, warm := e.due()
		if due.After(now) {
			return
		}
		if warm && e.next.After(now) {
			e.warmed = e.next
			heap.Fix(&s.queue, 0)
			s.prewarms.Add(1)
			s.call(s.prewarm, Event{
				Service: e.service,
				Trigger: e.trigger,
				Kind:    KindCron,
				At:      s.report(e.next),
				Message: bytes.Clone(e.spec.Message),
			})
			continue
		}
		at, missed := e.advance(now)
		if e.next.IsZero() {
			heap.Pop(&s.queue)
		} else {
			heap.Fix(&s.queue, 0)
		}
		e.last = at
		e.fired++
		e.missed += missed
		s.fired.Add(1)
		s.missed.Add(missed)
		if now.Sub(at) > s.lateAfter {
			s.late.Add(1)
		}
		s.call(s.fire, Event{
			Service: e.service,
			Trigger: e.trigger,
			Kind:    KindCron,
			At:      s.report(at),
			Message: bytes.Clone(e.spec.Message),
		})
	}
}

// call runs fn(ev) in its own goroutine, counted for Stop.
func (s *Scheduler) call(fn func(Event), ev Event) {
	s.callMu.Lock()
	s.calls++
	s.callMu.Unlock()
	go func() {
		defer s.returned()
		fn(ev)
	}()
}

func (s *Scheduler) returned() {
	s.callMu.Lock()
	defer s.callMu.Unlock()
	s.calls--
	if s.calls == 0 {
		for _, c := range s.idle {
			close(c)
		}
		s.idle = nil
	}
}

// signal wakes the loop to look at the schedule again.
func (s *Scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// unqueue takes the non-nil entries of es off the queue. s.mu is held.
func (s *Scheduler) unqueue(es []*entry) {
	for _, e := range es {
		if e != nil && e.index >= 0 {
			heap.Remove(&s.queue, e.index)
		}
	}
}

// report converts a scheduler time to the form the Scheduler hands out: in
// Location, without a monotonic clock reading; zero stays zero.
func (s *Scheduler) report(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.In(s.loc)
}

// entry is one scheduled trigger. Its fields are guarded by Scheduler.mu
// once it is in Scheduler.services.
type entry struct {
	service, trigger string
	spec             Spec
	every            time.Duration // interval triggers
	anchor           time.Time     // interval triggers
	sched            cron.Schedule // cron expressions
	next, last       time.Time
	lead             time.Duration // prewarm this long before next; 0: none
	warmed           time.Time     // the tick whose prewarm was called
	fired, missed    uint64
	index            int // in the queue; -1 when not queued
}

// newEntry validates sp (triggers[i] of service) and, for a cron trigger,
// returns its entry with the first tick after now. It returns nil, nil for
// the kinds the Scheduler does not schedule.
func (s *Scheduler) newEntry(service string, i int, sp Spec, now time.Time) (*entry, error) {
	name := Name(i)
	switch sp.Kind {
	case KindCron:
	case KindManual, KindEvent, KindHTTP:
		return nil, nil
	default:
		return nil, fmt.Errorf("%s.kind: %w: unknown kind %q", name, ErrInvalidSpec, sp.Kind)
	}
	e := &entry{service: service, trigger: name, spec: sp, index: -1}
	e.spec.Message = bytes.Clone(sp.Message)
	if sp.Lead < 0 {
		return nil, fmt.Errorf("%s.lead: %w: %v is negative", name, ErrInvalidSpec, sp.Lead)
	}
	if s.prewarm != nil {
		e.lead = sp.Lead
	}
	switch {
	case sp.Every != 0 && sp.Schedule != "":
		return nil, fmt.Errorf("%s: %w: every and schedule are mutually exclusive", name, ErrInvalidSpec)
	case sp.Every < 0:
		return nil, fmt.Errorf("%s.every: %w: %v is not positive", name, ErrInvalidSpec, sp.Every)
	case sp.Every > 0:
		e.every = sp.Every
	case sp.Schedule == "":
		return nil, fmt.Errorf("%s: %w: a cron trigger needs every or schedule", name, ErrInvalidSpec)
	case strings.HasPrefix(strings.TrimSpace(sp.Schedule), "@every "):
		d, err := time.ParseDuration(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sp.Schedule), "@every ")))
		if err != nil {
			return nil, fmt.Errorf("%s.schedule: %w: %w", name, ErrInvalidSpec, err)
		}
		if d <= 0 {
			return nil, fmt.Errorf("%s.schedule: %w: %v is not positive", name, ErrInvalidSpec, d)
		}
		e.every = d
	default:
		sched, err := parser.Parse(strings.TrimSpace(sp.Schedule))
		if err != nil {
			return nil, fmt.Errorf("%s.schedule: %w: %w", name, ErrInvalidSpec, err)
		}
		e.sched = sched
	}

	if e.every > 0 {
		e.anchor = sp.Anchor
		if e.anchor.IsZero() {
			e.anchor = now
		}
		e.next = e.anchor.Add(e.every)
		if !e.next.After(now) {
			k := now.Sub(e.anchor)/e.every + 1
			e.next = e.anchor.Add(k * e.every)
		}
		return e, nil
	}
	e.next = e.sched.Next(now.In(s.loc))
	if e.next.IsZero() {
		return nil, fmt.Errorf("%s.schedule: %w: %q never fires", name, ErrInvalidSpec, sp.Schedule)
	}
	return e, nil
}

// same reports whether sp schedules e's ticks: the same kind, interval,
// expression and anchor.
func (e *entry) same(sp Spec) bool {
	return e.spec.Kind == sp.Kind && e.spec.Every == sp.Every &&
		e.spec.Schedule == sp.Schedule && e.spec.Anchor.Equal(sp.Anchor)
}

// advance moves e past now, which e.next is not after. It returns the tick
// to deliver (the latest due one) and how many earlier due ticks it skipped.
// e.next becomes zero when the schedule never fires again.
func (e *entry) advance(now time.Time) (at time.Time, missed uint64) {
	if e.every > 0 {
		k := now.Sub(e.next) / e.every
		at = e.next.Add(k * e.every)
		e.next = at.Add(e.every)
		return at, uint64(k)
	}
	at = e.next
	n := e.sched.Next(at)
	for i := 0; !n.IsZero() && !n.After(now); i++ {
		if i == maxCatchUp {
			n = e.sched.Next(now)
			break
		}
		missed++
		at = n
		n = e.sched.Next(n)
	}
	e.next = n
	return at, missed
}

// due is when e next needs the loop, and whether for a prewarm: lead
// before its next tick until that tick's prewarm is called, then the tick.
func (e *entry) due() (at time.Time, warm bool) {
	if e.lead > 0 && !e.warmed.Equal(e.next) {
		return e.next.Add(-e.lead), true
	}
	return e.next, false
}

// queue is a min-heap of entries by when they are due.
type queue []*entry

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	a, _ := q[i].due()
	b, _ := q[j].due()
	return a.Before(b)
}
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}

func (q *queue) Push(x any) {
	e := x.(*entry)
	e.index = len(*q)
	*q = append(*q, e)
}

func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	e.index = -1
	return e
}
