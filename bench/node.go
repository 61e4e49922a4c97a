package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/node"
)

// answerManifest is the benchmarked service: testdata/answer.wasm, the
// smallest reactor, answering 200, on a manual, an http and an event
// trigger, its concurrency above the most connections.
const answerManifest = `name: bench-answer
version: 1.0.0
runtime: {driver: wasm, language: wasm, entry: answer.wasm}
mode: server
triggers:
  - {kind: manual}
  - {kind: http, path: /hooks/bench, auth: none}
  - {kind: event, topic: bench}
resources: {memory: 1Mi, timeout: 5s, concurrency: 128}
capabilities: {network: none}
`

// benchNode is one node, started on first use and shared by the rows.
type benchNode struct {
	once   sync.Once
	err    error
	n      *node.Node
	client *api.Client
	hook   string
	http   *http.Client
}

var shared benchNode

// transport keeps as many idle connections as the most callers.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}}
}

// start opens a node with its data in e's directory, submits the service
// and checks each trigger answers.
func (b *benchNode) start(ctx context.Context, e *env) error {
	b.once.Do(func() { b.err = b.open(ctx, e, "node", nil) })
	return b.err
}

func (b *benchNode) open(ctx context.Context, e *env, name string, with func(*node.Config)) error {
	cfg := node.DefaultConfig()
	cfg.Data, cfg.Listen, cfg.Name = filepath.Join(e.dir, name), "127.0.0.1:0", "bench-"+name
	cfg.HTTP.MaxConnsPerIP = 1024
	cfg.HTTP.MaxConns = 1024
	cfg.Policy.Limits.Concurrency.Max = 128 // above the most connections: no request is skipped
	if with != nil {
		with(&cfg)
	}
	n, err := node.New(cfg, e.log)
	if err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		n.Close()
		return err
	}
	b.n = n
	b.client = api.NewClient(n.Addr(), "")
	b.client.HTTP = newHTTPClient()
	if b.client.Token, err = node.OperatorToken(cfg.Data); err != nil {
		return err
	}
	if name != "node" {
		return nil
	}
	dir := filepath.Join(e.dir, "answer")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "andromeda.yaml"), []byte(answerManifest), 0o644); err != nil {
		return err
	}
	wasmBin, err := os.ReadFile("testdata/answer.wasm")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "answer.wasm"), wasmBin, 0o644); err != nil {
		return err
	}
	tgz, err := archive.Pack(dir)
	if err != nil {
		return err
	}
	if _, err := b.client.Submit(ctx, tgz); err != nil {
		return err
	}
	b.hook = "http://" + n.HooksAddr() + "/hooks/bench"
	b.http = newHTTPClient()
	return nil
}

// nodeRow wraps a call that needs the shared node.
func nodeRow(call func(ctx context.Context, b *benchNode) error) func(ctx context.Context, e *env) (func() error, func(), error) {
	return func(ctx context.Context, e *env) (func() error, func(), error) {
		if err := shared.start(ctx, e); err != nil {
			return nil, nil, err
		}
		return func() error { return call(ctx, &shared) }, func() {}, nil
	}
}

// fire is `andromeda fire` through the API client: HTTP, bearer auth, the
// run, its record acknowledged by JetStream, the JSON answer.
func fire(ctx context.Context, b *benchNode) error {
	run, err := b.client.Fire(ctx, "bench-answer", json.RawMessage(`{}`))
	if err != nil {
		return err
	}
	// The guest's one decision is an answer to a webhook: on a manual fire
	// the run records it as a noop. Either way the run is stored.
	if (run.Outcome != "ok" && run.Outcome != "noop") || run.ID == "" {
		return fmt.Errorf("fire answered run %q %s (%s)", run.ID, run.Outcome, run.Error)
	}
	return nil
}

// webhook is a POST to the service's http trigger, answered by the guest
// once its run is recorded.
func webhook(ctx context.Context, b *benchNode) error {
	resp, err := b.http.Post(b.hook, "application/json", bytes.NewReader(input))
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Andromeda-Run") == "" || string(body) != "ok" {
		return fmt.Errorf("webhook answered %d %q", resp.StatusCode, body)
	}
	return nil
}

// event publishes an event through the API (stored in JetStream, then
// acknowledged) and waits until the service's run of it is recorded,
// looking every 100 µs.
func event(ctx context.Context, b *benchNode) error {
	pub, err := b.client.Publish(ctx, "bench", json.RawMessage(`{}`))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		runs, err := b.client.Runs(ctx, "bench-answer", 8)
		if err != nil {
			return err
		}
		for _, r := range runs {
			if r.Trigger.Kind == "event" && r.Trigger.Seq == pub.Sequence {
				if r.Outcome != "ok" && r.Outcome != "noop" {
					return fmt.Errorf("event %d ran %s (%s)", pub.Sequence, r.Outcome, r.Error)
				}
				return nil
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
	return fmt.Errorf("event %d: no run after 10 s", pub.Sequence)
}

// bareHTTP is a Go net/http server whose handler answers "ok" and does no
// work, on loopback: the floor of any HTTP API.
func bareHTTP(ctx context.Context, e *env) (func() error, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	})}
	go srv.Serve(ln)
	url := "http://" + ln.Addr().String() + "/"
	client := newHTTPClient()
	call := func() error {
		resp, err := client.Post(url, "application/json", bytes.NewReader(input))
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok" {
			return fmt.Errorf("bare server answered %d %q", resp.StatusCode, body)
		}
		return nil
	}
	return call, func() { srv.Close() }, nil
}
