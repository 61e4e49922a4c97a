package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// The watch stream (GET /v1/watch) and the logs stream
// (GET /v1/services/{name}/logs) are written by one publisher goroutine
// from a bounded queue: a run or a lifecycle step hands its event over
// and goes on, whatever the store does. An event the queue cannot take,
// or the store does not store, is dropped and counted
// (andromeda_watch_dropped_total); the stream's sequence is the event's id.

// watchQueue is how many events and log lines may wait for the
// publisher; more are dropped and counted.
const watchQueue = 8192

// serviceNameRE is the manifest's rule for a service's name.
var serviceNameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

// watchPublishTimeout bounds one store write of the publisher.
const watchPublishTimeout = 2 * time.Second

type watcher struct {
	js      jetstream.JetStream
	queue   chan watchItem
	dropped atomic.Uint64 // events and lines not stored
	stored  atomic.Uint64
	closed  atomic.Bool
	stop    chan struct{}
	done    chan struct{}
	owners  sync.Map                    // service → cachedOwner
	owner   func(service string) string // looked up
}

// watchItem is one entry on its way to a stream.
type watchItem struct {
	subject string
	owner   string
	ev      api.WatchEvent
}

// openWatch creates the watch and logs streams and starts the publisher.
func (n *Node) openWatch(ctx context.Context) error {
	if _, err := n.bus.WatchStream(ctx, bus.LogsConfig{}); err != nil {
		return err
	}
	if _, err := n.bus.LogsStream(ctx, bus.LogsConfig{}); err != nil {
		return err
	}
	w := &watcher{queue: make(chan watchItem, watchQueue), stop: make(chan struct{}), done: make(chan struct{})}
	// Its own JetStream context: its asynchronous publishes are counted
	// apart from the node's.
	js, err := jetstream.New(n.bus.Conn, jetstream.WithPublishAsyncMaxPending(2*watchBatch))
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	w.js = js
	w.owner = func(service string) string {
		if d := n.lookup(service); d != nil {
			return d.rec.Owner
		}
		ctx, cancel := context.WithTimeout(n.ctx, time.Second)
		defer cancel()
		if rec, err := n.store.Service(ctx, service); err == nil {
			return rec.Owner
		}
		return ""
	}
	n.metrics.reg.NewCounterFunc("andromeda_watch_dropped_total", "Watch events and service log lines not stored: the publisher's queue was full or the store refused them.", func() float64 { return float64(w.dropped.Load()) })
	n.metrics.reg.NewCounterFunc("andromeda_watch_stored_total", "Watch events and service log lines stored.", func() float64 { return float64(w.stored.Load()) })
	go w.run()
	n.watch = w
	return nil
}

// closeWatch stores what is queued (for at most a few seconds) and stops
// the publisher; later events are dropped.
func (n *Node) closeWatch() error {
	w := n.watch
	if w == nil || w.closed.Swap(true) {
		return nil
	}
	close(w.stop)
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
	}
	return nil
}

// notify puts ev on the node's stream of what happens (GET /v1/watch).
// It never blocks a run or a lifecycle step and never fails one: a stream
// that cannot keep up or cannot store loses the event and counts it.
func (n *Node) notify(owner string, ev api.WatchEvent) {
	if n.watch == nil {
		return
	}
	n.watch.put(watchItem{subject: bus.WatchSubject(ev.Service), owner: owner, ev: ev})
}

// withProgress returns ctx with a progress reporter (sandbox.WithProgress)
// that makes each step of rec's deploy a service.progress event, owned by
// rec's owner: the service may not be in the registry yet.
func (n *Node) withProgress(ctx context.Context, rec store.Service) context.Context {
	return sandbox.WithProgress(ctx, func(step string) {
		if n.watch != nil {
			ev := api.WatchEvent{Kind: api.WatchProgress, Service: rec.Name, Version: rec.Version, Detail: step}
			n.watch.put(watchItem{subject: bus.WatchSubject(rec.Name), owner: rec.Owner, ev: ev})
		}
	})
}

func (w *watcher) put(it watchItem) {
	if w.closed.Load() {
		w.dropped.Add(1)
		return
	}
	if it.ev.Time.IsZero() {
		it.ev.Time = time.Now().UTC()
	}
	select {
	case w.queue <- it:
	default:
		w.dropped.Add(1)
	}
}

// watchBatch is how many queued entries the publisher sends before it
// waits for their acknowledgements.
const watchBatch = 256

func (w *watcher) run() {
	defer close(w.done)
	batch := make([]watchItem, 0, watchBatch)
	fill := func() {
		for len(batch) < watchBatch {
			select {
			case it := <-w.queue:
				batch = append(batch, it)
			default:
				return
			}
		}
	}
	for {
		select {
		case it := <-w.queue:
			batch = append(batch[:0], it)
			fill()
			w.publish(batch)
		case <-w.stop:
			for {
				batch = batch[:0]
				if fill(); len(batch) == 0 {
					return
				}
				w.publish(batch)
			}
		}
	}
}

// publish sends batch in order and waits for the store's acknowledgements;
// what is not acknowledged in time is counted dropped.
func (w *watcher) publish(batch []watchItem) {
	futures := make([]jetstream.PubAckFuture, 0, len(batch))
	for _, it := range batch {
		if it.owner == "" && it.ev.Service != "" {
			it.owner = w.ownerOf(it.ev.Service)
		}
		data, err := json.Marshal(it.ev)
		if err != nil {
			w.dropped.Add(1)
			continue
		}
		msg := &nats.Msg{Subject: it.subject, Data: data, Header: nats.Header{}}
		msg.Header.Set(bus.HeaderOwner, it.owner)
		f, err := w.js.PublishMsgAsync(msg)
		if err != nil {
			w.dropped.Add(1)
			continue
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(watchPublishTimeout)
	defer timeout.Stop()
	for i, f := range futures {
		select {
		case <-f.Ok():
			w.stored.Add(1)
		case <-f.Err():
			w.dropped.Add(1)
		case <-timeout.C:
			w.dropped.Add(uint64(len(futures) - i))
			return
		}
	}
}

// ownerOf is the owner of service, for an event queued without one: the
// deployed one's, else the registry's, remembered for a few seconds (""
// for a service that is not there). Events name their owner when they
// are queued: a name removed and submitted again by another submitter
// must not carry the first one's events to the second, or the second's
// to the first.
func (w *watcher) ownerOf(service string) string {
	if v, ok := w.owners.Load(service); ok {
		if o := v.(cachedOwner); time.Since(o.at) < 5*time.Second {
			return o.owner
		}
	}
	o := w.owner(service)
	w.owners.Store(service, cachedOwner{owner: o, at: time.Now()})
	return o
}

type cachedOwner struct {
	owner string
	at    time.Time
}

// logSink returns the sink of service's log lines for run ("" for the
// lines of its workers that no run wrote): each line goes to the logs
// stream and, as a run.log event, to the watch stream, never to the
// node's log. The node's log says once per run that lines were dropped.
func (n *Node) logSink(service, version, owner, run string, log *slog.Logger) func(line string) {
	var once sync.Once
	return func(line string) {
		if n.watch == nil {
			return
		}
		if isDropMarker(line) && run != "" {
			once.Do(func() { log.Info("guest log lines dropped", "marker", line) })
		}
		ev := api.WatchEvent{Kind: api.WatchRunLog, Time: time.Now().UTC(), Service: service, Version: version, Run: run, Line: line}
		n.watch.put(watchItem{subject: bus.LogSubject(service, run), owner: owner, ev: ev})
		n.watch.put(watchItem{subject: bus.WatchSubject(service), owner: owner, ev: ev})
	}
}

// isDropMarker reports whether line is a sandbox.LogLimiter's marker of
// dropped lines.
func isDropMarker(line string) bool {
	return strings.HasPrefix(line, "… ") && strings.Contains(line, " dropped: ")
}

// Watch implements server.WatchBackend: the events of q.Service (every
// service when empty) after q.After (only new ones when 0), as they are
// stored, until ctx ends; a submitter gets only its own services'. The
// channel closes when ctx ends or the stream cannot be read.
func (n *Node) Watch(ctx context.Context, p server.Principal, q api.WatchQuery) (<-chan api.WatchEvent, error) {
	subject := bus.SubjectWatchPrefix + ">"
	if q.Service != "" {
		if !serviceNameRE.MatchString(q.Service) {
			return nil, server.Errorf(server.ErrInvalid, "service: %q is not a service name ([a-z0-9-], 1-63, starts with a letter)", q.Service)
		}
		subject = bus.WatchSubject(q.Service)
	}
	return n.follow(ctx, p, bus.StreamWatch, subject, q.After, true)
}

// Logs implements server.WatchBackend: the stored lines of service (of
// run q.Run when set) after q.After, as run.log events; with q.Follow
// the lines stored later too, until ctx ends. The owner or the operator
// may read them.
func (n *Node) Logs(ctx context.Context, p server.Principal, service string, q api.LogQuery) (<-chan api.WatchEvent, error) {
	if _, err := n.owned(ctx, p, service); err != nil {
		return nil, err
	}
	run := "*"
	if q.Run != "" {
		if strings.ContainsAny(q.Run, ".*> \t") {
			return nil, server.Errorf(server.ErrInvalid, "run: %q is not a run id", q.Run)
		}
		run = q.Run
	}
	subject := bus.LogSubject(service, run)
	if !q.Follow {
		s, err := n.bus.JS.Stream(ctx, bus.StreamLogs)
		if err != nil {
			return nil, err
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			return nil, err
		}
		if len(info.State.Subjects) == 0 || info.State.LastSeq <= q.After {
			ch := make(chan api.WatchEvent)
			close(ch)
			return ch, nil
		}
	}
	if q.After == 0 {
		q.After = ^uint64(0) // from the start: see follow
	}
	return n.follow(ctx, p, bus.StreamLogs, subject, q.After, q.Follow)
}

// follow reads stream's messages on subject after sequence after (0:
// only new ones; all ones: from the start) as watch events, skipping
// those of services p does not own. Without live it ends after the last
// one stored now.
func (n *Node) follow(ctx context.Context, p server.Principal, stream, subject string, after uint64, live bool) (<-chan api.WatchEvent, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverNewPolicy, InactiveThreshold: time.Minute}
	switch after {
	case 0:
	case ^uint64(0):
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	default:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cons, err := n.bus.JS.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	ch := make(chan api.WatchEvent, 64)
	if !live {
		// Nothing to read after after: end now rather than wait.
		if info, err := cons.Info(ctx); err == nil && info.NumPending == 0 {
			it.Stop()
			close(ch)
			return ch, nil
		}
	}
	stopOnDone := context.AfterFunc(ctx, it.Stop)
	go func() {
		defer close(ch)
		defer stopOnDone()
		defer it.Stop()
		for {
			msg, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() == nil {
					n.log.Debug("watch: read stream", "stream", stream, logErr, err)
				}
				return
			}
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			var ev api.WatchEvent
			if !p.Operator() && msg.Headers().Get(bus.HeaderOwner) != p.Name || json.Unmarshal(msg.Data(), &ev) != nil {
				if !live && meta.NumPending == 0 {
					return
				}
				continue
			}
			ev.ID = meta.Sequence.Stream
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
			if !live && meta.NumPending == 0 {
				return
			}
		}
	}()
	return ch, nil
}

// runFinished is the run.finished event of a recorded run.
func runFinished(run store.Run) api.WatchEvent {
	detail := run.Error
	if detail == "" {
		detail = run.Noop
	}
	return api.WatchEvent{Kind: api.WatchRunEnd, Service: run.Service, Version: run.Version, Run: run.ID, Trigger: run.Trigger.Name, Outcome: run.Outcome, Detail: truncate(detail, 512)}
}

// notifyHealth emits service.unhealthy or service.healthy when the run
// that just ended moved d across its health threshold.
func (n *Node) notifyHealth(d *deployed, wasHealthy bool, run store.Run) {
	st := d.health.State()
	switch {
	case wasHealthy && !st.Healthy:
		n.notify(d.rec.Owner, api.WatchEvent{Kind: api.WatchUnhealthy, Service: d.rec.Name, Version: d.rec.Version, Run: run.ID, Detail: fmt.Sprintf("%d consecutive failures; scheduled runs skipped until %s", st.Failures, st.SkipUntil.Format(time.RFC3339))})
	case !wasHealthy && st.Healthy:
		n.notify(d.rec.Owner, api.WatchEvent{Kind: api.WatchHealthy, Service: d.rec.Name, Version: d.rec.Version, Run: run.ID, Detail: "a run succeeded"})
	}
}
