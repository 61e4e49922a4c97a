package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/store"
)

// TestFlows: a flow record is created once (a second create conflicts),
// updated only at the revision read, listed, and removed only at its
// revision.
func TestFlows(t *testing.T) {
	s := open(t, store.Config{})
	ctx := context.Background()
	rec := store.FlowRecord{ID: "orders", Version: "1.0.0", Owner: "operator", Digest: "sha256:00", Applied: time.Now().UTC(), Flow: json.RawMessage(`{"id":"orders"}`)}
	rev, err := s.PutFlow(ctx, rec, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutFlow(ctx, rec, 0); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a second create = %v, want store.ErrConflict", err)
	}
	got, err := s.Flow(ctx, "orders")
	if err != nil || got.Revision != rev || got.Version != "1.0.0" || string(got.Flow) != `{"id":"orders"}` {
		t.Fatalf("Flow = %+v, %v", got, err)
	}
	rec.Version = "1.1.0"
	rev2, err := s.PutFlow(ctx, rec, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutFlow(ctx, rec, rev); !errors.Is(err, store.ErrConflict) {
		t.Errorf("an update at an old revision = %v, want store.ErrConflict", err)
	}
	other := rec
	other.ID = "alerts"
	if _, err := s.PutFlow(ctx, other, 0); err != nil {
		t.Fatal(err)
	}
	list, err := s.Flows(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "alerts" || list[1].ID != "orders" || list[1].Version != "1.1.0" {
		t.Fatalf("Flows = %+v, %v", list, err)
	}
	if err := s.RemoveFlow(ctx, "orders", rev); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a remove at an old revision = %v, want store.ErrConflict", err)
	}
	if err := s.RemoveFlow(ctx, "orders", rev2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Flow(ctx, "orders"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Flow after remove = %v, want store.ErrNotFound", err)
	}
	if list, err := s.Flows(ctx); err != nil || len(list) != 1 {
		t.Errorf("Flows after remove = %+v, %v", list, err)
	}
	// Created again after a removal: the deletion marker is no record.
	if _, err := s.PutFlow(ctx, rec, 0); err != nil {
		t.Errorf("create after remove = %v", err)
	}
}

// TestFlowQueue: messages queued for a flow come out in order and stay
// queued until done, so a reader opened again (a restart) gets those not
// done, in order, and the sequence of the last one taken before; a retried
// enqueue (same run id) is stored once; a full queue refuses with ErrFull
// and keeps what it holds; flow run records list newest first; purging
// one flow's queue leaves another's.
func TestFlowQueue(t *testing.T) {
	s := open(t, store.Config{})
	ctx := context.Background()
	msg := func(i int) store.FlowMessage {
		return store.FlowMessage{Run: fmt.Sprintf("run%02d", i), Message: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), At: time.Now().UTC()}
	}
	for i := range 4 {
		if _, err := s.EnqueueFlowMessage(ctx, "a", msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.EnqueueFlowMessage(ctx, "a", msg(1)); err != nil {
		t.Fatalf("a retried enqueue = %v", err)
	}
	if _, err := s.EnqueueFlowMessage(ctx, "b", msg(9)); err != nil {
		t.Fatal(err)
	}
	if d, err := s.FlowQueueDepth(ctx, "a"); err != nil || d != 4 {
		t.Fatalf("depth of a = %d, %v; want 4 (the retry stored once)", d, err)
	}
	q, last, err := s.FlowQueue(ctx, "a", 8)
	if err != nil || last == 0 {
		t.Fatalf("FlowQueue = %v, last %d", err, last)
	}
	var took []store.QueuedFlowMessage
	for range 4 {
		m, ok, err := q.Next(5 * time.Second)
		if err != nil || !ok {
			t.Fatalf("Next = %v, %v", ok, err)
		}
		took = append(took, m)
	}
	if _, ok, _ := q.Next(50 * time.Millisecond); ok {
		t.Fatal("a fifth message from a queue of four")
	}
	if opened, lost, err := q.Opened(ctx); err != nil || !opened || lost {
		t.Fatalf("Opened of the queue's reader = %v (lost %v), %v; want true, none lost", opened, lost, err)
	}
	for i, m := range took {
		if m.Run != msg(i).Run || string(m.Message) != string(msg(i).Message) || (i > 0 && m.Seq <= took[i-1].Seq) {
			t.Fatalf("message %d = %+v; want %s, in order", i, m, msg(i).Run)
		}
	}
	if last < took[3].Seq {
		t.Errorf("last = %d, want at least the newest message's sequence %d", last, took[3].Seq)
	}
	for _, m := range took[:2] {
		if err := m.Done(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Opened again: the two not done, in order.
	q, _, err = s.FlowQueue(ctx, "a", 8)
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 4; i++ {
		m, ok, err := q.Next(5 * time.Second)
		if err != nil || !ok || m.Run != msg(i).Run {
			t.Fatalf("after reopening, message %d = %+v, %v, %v", i, m, ok, err)
		}
	}
	if d, _ := s.FlowQueueDepth(ctx, "a"); d != 2 {
		t.Errorf("depth after two done = %d, want 2", d)
	}

	// Full.
	for i := 4; i < store.FlowQueueDepth+3; i++ {
		if _, err := s.EnqueueFlowMessage(ctx, "a", msg(i)); err != nil {
			if !errors.Is(err, store.ErrFull) || i != store.FlowQueueDepth+2 {
				d, _ := s.FlowQueueDepth(ctx, "a")
				t.Fatalf("enqueue %d = %v at depth %d; want ErrFull at depth %d", i, err, d, store.FlowQueueDepth)
			}
			break
		}
	}
	if d, _ := s.FlowQueueDepth(ctx, "a"); d != store.FlowQueueDepth {
		t.Errorf("depth of a full queue = %d, want %d", d, store.FlowQueueDepth)
	}

	// Records.
	for i := range 3 {
		if err := s.PutFlowRun(ctx, store.FlowRun{ID: msg(i).Run, Flow: "a", Outcome: "ok", Start: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
	if rs, err := s.FlowRuns(ctx, "a", 2); err != nil || len(rs) != 2 || rs[0].ID != "run02" || rs[1].ID != "run01" {
		t.Errorf("FlowRuns(a, 2) = %+v, %v; want run02, run01", rs, err)
	}
	// A record too large to keep whole keeps its outcome and first steps.
	long := store.FlowRun{ID: "long", Flow: "a", Outcome: "failed", Error: strings.Repeat("e", 10_000), Start: time.Now().UTC()}
	for i := range 5000 {
		long.Steps = append(long.Steps, store.FlowStep{Module: "m", Service: "s", Run: fmt.Sprintf("run%d", i), Message: "x", Outcome: "ok"})
	}
	if err := s.PutFlowRun(ctx, long); err != nil {
		t.Fatalf("a long flow run = %v", err)
	}
	if rs, err := s.FlowRuns(ctx, "a", 1); err != nil || len(rs) != 1 || rs[0].ID != "long" || rs[0].Outcome != "failed" || len(rs[0].Steps) != 64 || rs[0].StepsCut != 5000-64 || len(rs[0].Error) > 4100 {
		t.Errorf("the long flow run came back as %d steps, %d cut, %v", len(rs[0].Steps), rs[0].StepsCut, err)
	}

	if n, err := s.PurgeFlowQueue(ctx, "a"); err != nil || n != store.FlowQueueDepth {
		t.Errorf("purge a = %d, %v", n, err)
	}
	if d, _ := s.FlowQueueDepth(ctx, "b"); d != 1 {
		t.Errorf("depth of b after purging a = %d, want 1", d)
	}
	if err := s.PurgeFlowRuns(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if rs, err := s.FlowRuns(ctx, "a", 10); err != nil || len(rs) != 0 {
		t.Errorf("runs of a after purge = %+v, %v", rs, err)
	}
}

// TestFlowQueueTargets: messages sent to a flow's modules by name wait in
// the flow's queue in one order with those for its entries, are counted
// by the module they are aimed at without being read, and go with the
// flow's queue when it is purged.
func TestFlowQueueTargets(t *testing.T) {
	s := open(t, store.Config{})
	ctx := context.Background()
	targets := []string{"", "x", "", "y", "x"}
	for i, m := range targets {
		if _, err := s.EnqueueFlowMessage(ctx, "t", store.FlowMessage{Run: fmt.Sprintf("run%02d", i), Module: m, Message: json.RawMessage(`{}`), At: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.EnqueueFlowMessage(ctx, "u", store.FlowMessage{Run: "other", Module: "x", Message: json.RawMessage(`{}`), At: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.QueuedFlowTargets(ctx, "t"); err != nil || !maps.Equal(got, map[string]int{"": 2, "x": 2, "y": 1}) {
		t.Errorf("targets = %v, %v; want 2 for the entries, 2 for x, 1 for y", got, err)
	}
	if d, err := s.FlowQueueDepth(ctx, "t"); err != nil || d != 5 {
		t.Errorf("depth = %d, %v; want 5", d, err)
	}
	q, _, err := s.FlowQueue(ctx, "t", 8)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range targets {
		m, ok, err := q.Next(5 * time.Second)
		if err != nil || !ok || m.Run != fmt.Sprintf("run%02d", i) || m.Module != want {
			t.Fatalf("message %d = %+v, %v, %v; want run%02d for %q", i, m, ok, err, i, want)
		}
	}
	if n, err := s.PurgeFlowQueue(ctx, "t"); err != nil || n != 5 {
		t.Errorf("purge = %d, %v; want 5", n, err)
	}
	if d, _ := s.FlowQueueDepth(ctx, "t"); d != 0 {
		t.Errorf("depth after the purge = %d", d)
	}
	if d, _ := s.FlowQueueDepth(ctx, "u"); d != 1 {
		t.Errorf("depth of another flow after the purge = %d, want 1", d)
	}
}

// TestFlowQueueOpenedElsewhere: a flow queue opened again (another node of
// a cluster took the flow over) tells the reader that opened it before,
// which still reads the same consumer name, that it is no longer its.
func TestFlowQueueOpenedElsewhere(t *testing.T) {
	s := open(t, store.Config{})
	ctx := context.Background()
	first, _, err := s.FlowQueue(ctx, "a", 8)
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := s.FlowQueue(ctx, "a", 8)
	if err != nil {
		t.Fatal(err)
	}
	if opened, _, err := first.Opened(ctx); err != nil || opened {
		t.Errorf("the first reader's Opened after the queue was opened again = %v, %v; want false", opened, err)
	}
	if opened, _, err := second.Opened(ctx); err != nil || !opened {
		t.Errorf("the second reader's Opened = %v, %v; want true", opened, err)
	}
	if err := s.CloseFlowQueue(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if opened, _, err := second.Opened(ctx); err != nil || opened {
		t.Errorf("Opened after the queue was closed = %v, %v; want false", opened, err)
	}
}

// TestFlowQueueLostDelivery: a message the queue hands out that never
// reaches the reader (here another pull of the same consumer takes it, as
// a pull answered after its reader stopped waiting does) is seen: the
// next message is not handed out past it (ErrQueueGap), Opened says one
// was lost when none follows it, and the queue opened again hands out
// every message not done, in order.
func TestFlowQueueLostDelivery(t *testing.T) {
	ctx := context.Background()
	b, s := openWithBus(t)
	msg := func(i int) store.FlowMessage {
		return store.FlowMessage{Run: fmt.Sprintf("run%02d", i), Message: json.RawMessage(`{}`), At: time.Now().UTC()}
	}
	// lose takes the queue's next message through another pull of its
	// consumer and drops it.
	lose := func() string {
		t.Helper()
		js, err := jetstream.New(b.Conn)
		if err != nil {
			t.Fatal(err)
		}
		c, err := js.Consumer(ctx, bus.StreamFlowQueue, "flow_g")
		if err != nil {
			t.Fatal(err)
		}
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var m store.FlowMessage
		for msg := range batch.Messages() {
			json.Unmarshal(msg.Data(), &m)
		}
		return m.Run
	}
	for i := range 3 {
		if _, err := s.EnqueueFlowMessage(ctx, "g", msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	q, _, err := s.FlowQueue(ctx, "g", 8)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok, err := q.Next(5 * time.Second); err != nil || !ok || m.Run != "run00" {
		t.Fatalf("first Next = %+v, %v, %v; want run00", m, ok, err)
	}
	if lost := lose(); lost != "run01" {
		t.Fatalf("lost %q, want run01", lost)
	}
	if _, lost, err := q.Opened(ctx); err != nil || !lost {
		t.Fatalf("Opened after a delivery lost: lost = %v, %v; want true", lost, err)
	}
	if m, ok, err := q.Next(5 * time.Second); !errors.Is(err, store.ErrQueueGap) || ok {
		t.Fatalf("Next past the lost message = %+v, %v, %v; want ErrQueueGap and nothing handed out", m, ok, err)
	}
	q, _, err = s.FlowQueue(ctx, "g", 8)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		m, ok, err := q.Next(5 * time.Second)
		if err != nil || !ok || m.Run != msg(i).Run {
			t.Fatalf("opened again, message %d = %+v, %v, %v; want %s", i, m, ok, err, msg(i).Run)
		}
	}
	if _, lost, err := q.Opened(ctx); err != nil || lost {
		t.Fatalf("Opened after every message came = lost %v, %v; want none lost", lost, err)
	}
}

// TestFlowRunsLeaveNoConsumer: listing a flow's runs, asked again and
// again (a dashboard, a script waiting for a run), leaves no consumer
// behind on the stream.
func TestFlowRunsLeaveNoConsumer(t *testing.T) {
	ctx := context.Background()
	b, s := openWithBus(t)
	for i := range 3 {
		if err := s.PutFlowRun(ctx, store.FlowRun{ID: fmt.Sprintf("fr%d", i), Flow: "f", Outcome: "ok", Start: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
	for range 50 {
		if runs, err := s.FlowRuns(ctx, "f", 2); err != nil || len(runs) != 2 || runs[0].ID != "fr2" {
			t.Fatalf("FlowRuns = %+v, %v; want fr2, fr1", runs, err)
		}
	}
	js, err := jetstream.New(b.Conn)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, bus.StreamFlowRuns)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Consumers != 0 {
		t.Fatalf("consumers on the flow runs' stream after 50 listings = %d, %v; want 0", info.State.Consumers, err)
	}
}

// openWithBus is open, with the bus under the store for a test that
// reaches JetStream itself.
func openWithBus(t *testing.T) (*bus.Bus, *store.Store) {
	t.Helper()
	b, err := bus.Open(context.Background(), bus.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	s, err := store.Open(context.Background(), b, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return b, s
}
