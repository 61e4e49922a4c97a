package store

import (
	"context"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
)

// Run listings page newest first by the stream sequence of the run record:
// the order runs were recorded in, one order for one service, for several
// merged and for all. The sequence is also the cursor, so pages neither
// skip nor repeat a run while new ones are recorded or old ones dropped.

// MaxListRuns caps how many runs one page holds.
const MaxListRuns = 1000

// DefaultListRuns is the page size of a query that names none.
const DefaultListRuns = 20

// cursorPrefix starts every cursor; the sequence follows.
const cursorPrefix = "before:"

// clockSlack is how far a run's start may lie after its record's stream
// timestamp: the node and the NATS server may read different clocks.
const clockSlack = 5 * time.Minute

// maxScan bounds the records one page reads when a time window filters
// them out: past it the page ends early, with a Next to go on from. A
// variable for tests.
var maxScan = 10 * MaxListRuns

// ParseCursor checks a cursor from RunList.Next and returns the stream
// sequence it stands for: the listing goes on with the runs recorded
// before it.
func ParseCursor(c string) (uint64, error) {
	seq, err := strconv.ParseUint(strings.TrimPrefix(c, cursorPrefix), 10, 64)
	if !strings.HasPrefix(c, cursorPrefix) || err != nil || seq == 0 {
		return 0, fmt.Errorf("store: cursor %q is not one a run listing handed out", c)
	}
	return seq, nil
}

func cursor(seq uint64) string { return cursorPrefix + strconv.FormatUint(seq, 10) }

// ListRuns returns one page of the runs of every service, newest first.
// Without a time window it reads about q.Limit records however many the
// stream holds or has dropped; with one it stops after about 10,000
// records, ending the page early (with a Next). A bad q.Cursor is an error
// (check it with ParseCursor first).
func (s *Store) ListRuns(ctx context.Context, q RunQuery) (RunList, error) {
	return s.list(ctx, nil, q)
}

// ListServiceRuns is ListRuns over the named services only, merged in one
// order. With no services the page is empty.
func (s *Store) ListServiceRuns(ctx context.Context, q RunQuery, services ...string) (RunList, error) {
	if len(services) == 0 {
		return RunList{}, nil
	}
	subjects := make([]string, len(services))
	for i, name := range services {
		subjects[i] = bus.RunSubject(name)
	}
	return s.list(ctx, subjects, q)
}

// Runs returns up to limit most recent runs of one service, newest first:
// the first page of ListServiceRuns.
func (s *Store) Runs(ctx context.Context, service string, limit int) ([]Run, error) {
	l, err := s.ListServiceRuns(ctx, RunQuery{Limit: limit}, service)
	return l.Runs, err
}

// RecentRuns returns up to limit most recent runs of all services, newest
// first: the first page of ListRuns.
func (s *Store) RecentRuns(ctx context.Context, limit int) ([]Run, error) {
	l, err := s.ListRuns(ctx, RunQuery{Limit: limit})
	return l.Runs, err
}

// RunCount reports how many run records a service has.
func (s *Store) RunCount(ctx context.Context, service string) (int, error) {
	info, err := s.runs.Info(ctx, jetstream.WithSubjectFilter(bus.RunSubject(service)))
	if err != nil {
		return 0, fmt.Errorf("store: count runs of %s: %w", service, err)
	}
	return int(info.State.Subjects[bus.RunSubject(service)]), nil
}

func clampLimit(n int) int {
	if n <= 0 {
		return DefaultListRuns
	}
	return min(n, MaxListRuns)
}

// runRecord is one run record read back with its place in the stream.
type runRecord struct {
	seq   uint64
	stamp time.Time // when the stream stored it
	run   Run
	ok    bool // the record decoded
}

// list reads one page of the records on subjects (all when nil).
//
// The stream has no backward reads, and its sequences have gaps wherever
// a service's oldest records were dropped, so walking back one sequence at
// a time would cost as much as the gaps. Instead each step counts: a
// consumer created at sequence lo reports how many records lie at or after
// lo, so the records in [lo, hi] are that count less the count above hi.
// locate moves lo back until [lo, hi] holds what the page still needs,
// then read takes those records forward, and the walk goes on below lo.
func (s *Store) list(ctx context.Context, subjects []string, q RunQuery) (RunList, error) {
	var before uint64
	if q.Cursor != "" {
		var err error
		if before, err = ParseCursor(q.Cursor); err != nil {
			return RunList{}, err
		}
	}
	info, err := s.runs.Info(ctx)
	if err != nil {
		return RunList{}, fmt.Errorf("store: list runs: %w", err)
	}
	if info.State.Msgs == 0 {
		return RunList{}, nil
	}
	w := &walk{s: s, ctx: ctx, subjects: subjects, first: info.State.FirstSeq}
	defer w.closeAll()
	hi := info.State.LastSeq
	var above uint64 // records on subjects after hi
	if before != 0 && before <= hi {
		hi = before - 1
		if hi >= w.first {
			c, err := w.open(hi + 1)
			if err != nil {
				return RunList{}, err
			}
			above = c.pending
			w.close(c)
		}
	}

	want := clampLimit(q.Limit) + 1 // one more tells whether more remain
	var out []runRecord
	scanned, cut := 0, false
	for len(out) < want && hi >= w.first {
		if scanned >= maxScan {
			cut = true
			break
		}
		c, err := w.locate(hi, above, uint64(want-len(out)))
		if err != nil {
			return RunList{}, err
		}
		recs, err := w.read(c, hi, above)
		w.close(c)
		if err != nil {
			return RunList{}, err
		}
		scanned += len(recs)
		for i := len(recs) - 1; i >= 0 && len(out) < want; i-- {
			if r := recs[i]; r.ok && inWindow(r.run.Start, q) {
				out = append(out, r)
			}
		}
		hi, above = c.lo-1, c.pending
		// Records are stored after their run starts: once one was stored
		// before Since, every older one started before Since too.
		if !q.Since.IsZero() && len(recs) > 0 && recs[0].stamp.Before(q.Since.Add(-clockSlack)) {
			break
		}
	}

	var l RunList
	switch {
	case len(out) == want:
		out = out[:want-1]
		l.Next = cursor(out[len(out)-1].seq)
	case cut:
		l.Next = cursor(hi + 1)
	}
	l.Runs = make([]Run, len(out))
	for i, r := range out {
		l.Runs[i] = r.run
	}
	return l, nil
}

func inWindow(start time.Time, q RunQuery) bool {
	return (q.Since.IsZero() || !start.Before(q.Since)) && (q.Until.IsZero() || start.Before(q.Until))
}

// walk is one page's reading of the stream: the consumers it opens, each
// deleted when done with (and by the server after a minute idle if the
// delete is lost).
type walk struct {
	s        *Store
	ctx      context.Context
	subjects []string
	first    uint64 // the stream's first sequence
	opened   []*cursorConsumer
}

// cursorConsumer is a consumer reading forward from lo, with the count of
// records on the walk's subjects at or after lo when it was created.
type cursorConsumer struct {
	jetstream.Consumer
	lo, pending uint64
	name        string
	closed      bool
}

func (w *walk) open(lo uint64) (*cursorConsumer, error) {
	cfg := jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       max(lo, 1),
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	}
	if len(w.subjects) == 1 {
		cfg.FilterSubject = w.subjects[0]
	} else {
		cfg.FilterSubjects = w.subjects
	}
	c, err := createReader(w.ctx, w.s.runs, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: list runs: %w", err)
	}
	ci := c.CachedInfo()
	cc := &cursorConsumer{Consumer: c, lo: lo, pending: ci.NumPending, name: ci.Name}
	w.opened = append(w.opened, cc)
	return cc, nil
}

func (w *walk) close(c *cursorConsumer) {
	if c.closed {
		return
	}
	c.closed = true
	w.s.dropConsumer(w.ctx, c.name)
}

// dropConsumer deletes a reading consumer, even when ctx has ended; the
// server's inactivity threshold (a minute) is the backstop.
func (s *Store) dropConsumer(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.runs.DeleteConsumer(ctx, name)
}

func (w *walk) closeAll() {
	for _, c := range w.opened {
		w.close(c)
	}
}

// locate returns a consumer at the highest lo whose [lo, hi] holds at
// least need records on the walk's subjects (or at the stream's first
// sequence, when fewer remain), holding not more than about 2×need of
// them. above is the count of records after hi. It gallops back over gaps,
// doubling the span, then bisects: O(log gap) counts, no reads.
func (w *walk) locate(hi, above, need uint64) (*cursorConsumer, error) {
	in := func(c *cursorConsumer) uint64 {
		if c.pending < above { // records dropped since above was counted
			return 0
		}
		return c.pending - above
	}
	bad := hi + 1 // lowest lo known to hold fewer than need
	for span := need; ; span *= 2 {
		lo := w.first
		if hi+1-w.first > span {
			lo = hi + 1 - span
		}
		c, err := w.open(lo)
		if err != nil {
			return nil, err
		}
		if in(c) < need && lo > w.first {
			w.close(c)
			bad = lo
			continue
		}
		for in(c) > 2*need && bad-c.lo > 1 {
			m, err := w.open(c.lo + (bad-c.lo)/2)
			if err != nil {
				return nil, err
			}
			if in(m) >= need {
				w.close(c)
				c = m
			} else {
				w.close(m)
				bad = m.lo
			}
		}
		return c, nil
	}
}

// read returns the records c delivers up to hi, oldest first.
func (w *walk) read(c *cursorConsumer, hi, above uint64) ([]runRecord, error) {
	var recs []runRecord
	expect := c.pending - min(c.pending, above)
	for {
		// Ask for the records expected in [lo, hi] and one more, which
		// shows where hi is; the counts only size the fetches.
		left := expect - min(expect, uint64(len(recs)))
		msgs, fetchErr := fetchNoWait(w.ctx, c, int(min(left+1, 500)))
		if fetchErr != nil && !errors.Is(fetchErr, nats.ErrTimeout) && !errors.Is(fetchErr, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("store: list runs: %w", fetchErr)
		}
		n, past := 0, false
		for _, m := range msgs {
			n++
			meta, err := m.Metadata()
			if err != nil || past {
				continue
			}
			if meta.Sequence.Stream > hi {
				past = true // recorded after the walk began, or above the page
				continue
			}
			r := runRecord{seq: meta.Sequence.Stream, stamp: meta.Timestamp}
			// A record we cannot read is skipped, not fatal.
			r.ok = json.Unmarshal(m.Data(), &r.run) == nil
			recs = append(recs, r)
		}

		if n == 0 || past {
			return recs, nil
		}
	}
}

// LastRun is the latest run record of service as the runs stream's leader
// holds it: a listing reads through consumers that may sit on a replica
// still catching up, and this tells whether a listing is complete (it
// holds this record, or the record is older than what it asked for). ok is
// false when the service has no run record.
func (s *Store) LastRun(ctx context.Context, service string) (r Run, ok bool, err error) {
	m, err := s.runs.GetLastMsgForSubject(ctx, bus.RunSubject(service)) // the leader answers: no direct gets on runs
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Run{}, false, nil
	}
	if err != nil {
		return Run{}, false, fmt.Errorf("store: last run of %s: %w", service, err)
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return Run{}, false, fmt.Errorf("store: last run of %s (sequence %d): %w", service, m.Sequence, err)
	}
	return r, true, nil
}

// Run finds one run of a service by id in any record the stream holds. It
// reads headers only (the run id is the record's message id) and, for an id
// of the node's time-sortable form, only the records stored from shortly
// before the id's time on.
func (s *Store) Run(ctx context.Context, service, id string) (Run, error) {
	cfg := jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     bus.RunSubject(service),
		HeadersOnly:       true,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	}
	if t, ok := runIDTime(id); ok {
		t = t.Add(-clockSlack)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	c, err := createReader(ctx, s.runs, cfg)
	if err != nil {
		return Run{}, fmt.Errorf("store: find run %s of %s: %w", id, service, err)
	}
	defer s.dropConsumer(ctx, c.CachedInfo().Name)
	var seq uint64
	for seq == 0 {
		msgs, fetchErr := fetchNoWait(ctx, c, 500)
		if fetchErr != nil && !errors.Is(fetchErr, nats.ErrTimeout) && !errors.Is(fetchErr, jetstream.ErrNoMessages) {
			return Run{}, fmt.Errorf("store: find run %s of %s: %w", id, service, fetchErr)
		}
		n := 0
		for _, m := range msgs {
			n++
			if seq != 0 || m.Headers().Get(jetstream.MsgIDHeader) != id {
				continue
			}
			if meta, err := m.Metadata(); err == nil {
				seq = meta.Sequence.Stream
			}
		}

		if n == 0 {
			return Run{}, fmt.Errorf("run %s of %s: %w", id, service, ErrNotFound)
		}
	}
	m, err := s.runs.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) { // dropped since
		return Run{}, fmt.Errorf("run %s of %s: %w", id, service, ErrNotFound)
	}
	if err != nil {
		return Run{}, fmt.Errorf("store: read run %s of %s: %w", id, service, err)
	}
	var r Run
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return Run{}, fmt.Errorf("store: decode run %s of %s: %w", id, service, err)
	}
	return r, nil
}

// runIDEncoding is the node's run id alphabet (node.newRunID): 20
// characters, 48 bits of Unix milliseconds then 48 random bits.
var runIDEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// runIDTime reads the time out of a node run id; ok is false for any
// other id, which Run then looks for among all the service's records.
func runIDTime(id string) (time.Time, bool) {
	if len(id) != 20 {
		return time.Time{}, false
	}
	b, err := runIDEncoding.DecodeString(id)
	if err != nil || len(b) != 12 {
		return time.Time{}, false
	}
	t := time.UnixMilli(int64(binary.BigEndian.Uint64(b[:8]) >> 16))
	if t.Year() < 2020 || t.After(time.Now().Add(24*time.Hour)) {
		return time.Time{}, false
	}
	return t, true
}

// fetchNoWait is c.FetchNoWait with the batch read: its messages, and the
// request's error or else the batch's (nats.ErrTimeout and
// jetstream.ErrNoMessages say only that no more came). It is asked again
// (for up to two seconds) while nothing answers: in a cluster a consumer
// just made can take a moment before its server takes requests ("no
// responders").
func fetchNoWait(ctx context.Context, c jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	for attempt := 0; ; attempt++ {
		var msgs []jetstream.Msg
		batch, err := c.FetchNoWait(n)
		if err == nil {
			for m := range batch.Messages() {
				msgs = append(msgs, m)
			}
			err = batch.Error()
		}
		if len(msgs) == 0 && errors.Is(err, nats.ErrNoResponders) && attempt < 40 && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		return msgs, err
	}
}

// jsClusterUnavailable is the JetStream API's error code for "JetStream
// system temporarily unavailable": a cluster electing its meta leader.
const jsClusterUnavailable = 10008

// createReader creates a reading consumer on stream, asked again for up
// to five seconds while a cluster elects its meta leader (a node of it
// stopped or went), when consumers cannot be created for a moment.
func createReader(ctx context.Context, stream jetstream.Stream, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	for attempt := 0; ; attempt++ {
		c, err := stream.CreateConsumer(ctx, cfg)
		var apiErr *jetstream.APIError
		if err != nil && errors.As(err, &apiErr) && apiErr.ErrorCode == jsClusterUnavailable && attempt < 50 && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		return c, err
	}
}
