package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/node"
)

// syncBuffer is a bytes.Buffer a command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCLI runs the CLI with args until the returned function is called;
// that function returns what it printed and its error.
func startCLI(t *testing.T, env map[string]string, args ...string) (*syncBuffer, func() error) {
	t.Helper()
	out := &syncBuffer{}
	e := &cli{stdout: out, stderr: out, getenv: func(k string) string { return env[k] }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.run(ctx, args) }()
	return out, func() error {
		cancel()
		return <-done
	}
}

// waitFor waits until out holds want.
func waitFor(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in 15 s:\n%s", want, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatchCLI: andromeda watch prints a run's start and end as they
// happen, one line each (one JSON object each with --json); --since
// replays what was stored after an event; logs of a service that logged
// nothing prints nothing and ends, of an unknown one is an error.
func TestWatchCLI(t *testing.T) {
	ctx := context.Background()
	n, env := startNode(t, nil)
	if _, stderr, err := runCLI(t, env, "submit", echoService(t)); err != nil {
		t.Fatalf("submit: %v\n%s", err, stderr)
	}
	jsonOut, stopJSON := startCLI(t, env, "watch", "echo", "--json")
	textOut, stopText := startCLI(t, env, "watch")
	time.Sleep(300 * time.Millisecond) // both connect: the run below is new to them
	tok, err := node.OperatorToken(env["ANDROMEDA_DATA"])
	if err != nil {
		t.Fatal(err)
	}
	run, err := api.NewClient(n.Addr(), tok).Fire(ctx, "echo", json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, jsonOut, `"kind":"run.finished"`)
	waitFor(t, textOut, "run.finished")
	if err := stopJSON(); err != nil {
		t.Fatalf("watch --json: %v", err)
	}
	stopText()

	var events []api.WatchEvent
	for _, line := range strings.Split(strings.TrimSpace(jsonOut.String()), "\n") {
		var ev api.WatchEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("watch --json printed %q: %v", line, err)
		}
		// The submit's own lifecycle events (admitted, deployed,
		// started) are published as the submit answers and may reach a
		// watch that connected just after it: only the run's are asked.
		if strings.HasPrefix(string(ev.Kind), "service.") {
			continue
		}
		events = append(events, ev)
	}
	if len(events) != 2 || events[0].Kind != api.WatchRunStart || events[1].Kind != api.WatchRunEnd || events[1].Run != run.ID || events[1].Outcome != run.Outcome || events[1].ID <= events[0].ID {
		t.Fatalf("watch --json = %+v, want the run's start and end", events)
	}
	text := textOut.String()
	if !strings.Contains(text, "run.started       echo version=1.0.0 run="+run.ID) || !strings.Contains(text, "run.finished      echo version=1.0.0 run="+run.ID+" trigger=triggers[0] outcome="+run.Outcome) {
		t.Errorf("watch printed:\n%s", text)
	}

	// --since replays the end after the start.
	replay, stop := startCLI(t, env, "watch", "echo", "--json", "--since", jsonID(events[0]))
	waitFor(t, replay, `"kind":"run.finished"`)
	stop()
	if strings.Contains(replay.String(), `"kind":"run.started"`) {
		t.Errorf("--since %d replayed the event itself:\n%s", events[0].ID, replay)
	}

	if out, _, err := runCLI(t, env, "logs", "echo"); err != nil || out != "" {
		t.Errorf("logs of a quiet service = %q, %v", out, err)
	}
	if _, _, err := runCLI(t, env, "logs", "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("logs of an unknown service: %v", err)
	}
}

func jsonID(ev api.WatchEvent) string {
	b, _ := json.Marshal(ev.ID)
	return string(b)
}
