package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/gobuild"
	"github.com/andromeda-runner/andromeda/internal/testutil"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

// natsBinary finds the standard nats CLI: on PATH, else in
// $(go env GOPATH)/bin, where `go install` puts it.
func natsBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	p := filepath.Join(build.Default.GOPATH, "bin", "nats")
	_, err := os.Stat(p)
	sandboxtest.Require(t, err == nil, "the nats CLI is needed: go install github.com/nats-io/natscli/nats@v0.5.0")
	return p
}

// eventGreeter is a node listening for NATS clients with the greeter
// example deployed on an event trigger on topic, and an operator client.
func eventGreeter(t *testing.T, topic string) (map[string]string, *api.Client) {
	t.Helper()
	_, err := exec.LookPath("go")
	sandboxtest.Require(t, err == nil, "the go toolchain is needed to build the example service")
	n, env := startNode(t, func(c *node.Config) { c.NATS.Listen = testutil.FreeAddr(t) })
	dir := filepath.Join(t.TempDir(), "greeter")
	testutil.CopyDir(t, filepath.Join("..", "..", "examples", "greeter"), dir)
	if err := gobuild.Wasm(context.Background(), filepath.Join("..", "..", "examples", "greeter"), filepath.Join(dir, "main.wasm"), gobuild.Reactor); err != nil {
		t.Fatalf("build the greeter: %v", err)
	}
	path := filepath.Join(dir, "andromeda.yaml")
	m, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, bytes.Replace(m, []byte("{kind: manual, input: {name: world}}"), []byte("{kind: event, topic: "+topic+"}"), 1), 0o644)
	if out, stderr, err := runCLI(t, env, "submit", dir); err != nil {
		t.Fatalf("submit: %v\n%s%s", err, out, stderr)
	}
	tok, err := node.OperatorToken(env["ANDROMEDA_DATA"])
	if err != nil {
		t.Fatal(err)
	}
	return env, api.NewClient(n.Addr(), tok)
}

// createCred issues a NATS credential through the CLI.
func createCred(t *testing.T, env map[string]string, name, owner string) api.NATSUser {
	t.Helper()
	out, stderr, err := runCLI(t, env, "nats", "creds", "create", name, "--owner", owner, "--json")
	var u api.NATSUser
	if err != nil || json.Unmarshal([]byte(out), &u) != nil || u.Secret == "" || u.Server == "" {
		t.Fatalf("nats creds create: %v\n%s%s", err, out, stderr)
	}
	return u
}

// waitEventRuns waits until service has want runs and returns them,
// newest first.
func waitEventRuns(t *testing.T, c *api.Client, service string, want int) []api.Run {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		page, err := c.ListRuns(context.Background(), service, api.RunQuery{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Runs) >= want {
			return page.Runs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d runs after 30s, want %d", service, len(page.Runs), want)
		}
		time.Sleep(20 * time.Millisecond) // polling the records the node writes
	}
}

// TestNATSPubCLI: the standard nats CLI publishes to a node started with
// nats.listen with a credential issued by `andromeda nats creds create`,
// and the service runs, the run naming the credential's owner; without a
// credential, with a wrong password, outside its namespace or once the
// credential is removed, it is refused and nothing runs.
func TestNATSPubCLI(t *testing.T) {
	natsCLI := natsBinary(t)
	env, c := eventGreeter(t, "alice.orders")
	u := createCred(t, env, "sensor", "alice")
	pub := func(args ...string) (string, error) {
		cmd := exec.Command(natsCLI, append([]string{"--no-context", "--server", u.Server}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "NATS_URL=", "NATS_USER=", "NATS_PASSWORD=", "NATS_CONTEXT=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := pub("pub", "--user", "sensor", "--password", u.Secret, "andromeda.events.alice.orders", `{"name": "Ada"}`); err != nil {
		t.Fatalf("nats pub: %v\n%s", err, out)
	}
	r := waitEventRuns(t, c, "greeter", 1)[0]
	if r.Outcome != "ok" || r.Trigger.Kind != "event" || r.Trigger.Topic != "alice.orders" || r.Trigger.Publisher != "nats:alice" {
		t.Fatalf("run trigger = %+v, want the event on alice.orders published by nats:alice", r.Trigger)
	}
	// With JetStream's acknowledgement, through the client's inbox.
	if out, err := pub("pub", "-J", "--user", "sensor", "--password", u.Secret, "andromeda.events.alice.orders", `{"name": "Bob"}`); err != nil {
		t.Fatalf("nats pub -J: %v\n%s", err, out)
	}
	waitEventRuns(t, c, "greeter", 2)

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no credentials", []string{"pub", "andromeda.events.alice.orders", "1"}, "Authorization Violation"},
		{"wrong password", []string{"pub", "--user", "sensor", "--password", "and_guess", "andromeda.events.alice.orders", "1"}, "Authorization Violation"},
		{"outside its namespace", []string{"pub", "-J", "--user", "sensor", "--password", u.Secret, "andromeda.events.bob.orders", "1"}, "ermission"},
	} {
		out, err := pub(tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: nats pub = %v\n%s\nwant a failure saying %q", tc.name, err, out, tc.want)
		}
	}

	out, _, err := runCLI(t, env, "nats", "creds", "list")
	if err != nil || !strings.Contains(out, "sensor") || !strings.Contains(out, "alice") || strings.Contains(out, u.Secret) {
		t.Fatalf("nats creds list: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, env, "nats", "creds", "rm", "sensor"); err != nil || !strings.Contains(out, "removed NATS credential sensor") {
		t.Fatalf("nats creds rm: %v\n%s", err, out)
	}
	if out, err := pub("pub", "--user", "sensor", "--password", u.Secret, "andromeda.events.alice.orders", "1"); err == nil || !strings.Contains(out, "Authorization Violation") {
		t.Fatalf("nats pub with a removed credential = %v\n%s\nwant Authorization Violation", err, out)
	}
	if runs := waitEventRuns(t, c, "greeter", 2); len(runs) != 2 || runs[0].Outcome != "ok" {
		t.Fatalf("%d runs, want 2: a refused publish ran the service", len(runs))
	}
}

// TestNATSGoClient: a nats.go program publishes with an operator
// credential on any topic, waiting for JetStream's acknowledgement, and
// the run names it "nats" (an operator credential proves no owner).
func TestNATSGoClient(t *testing.T) {
	env, c := eventGreeter(t, "orders.new")
	u := createCred(t, env, "bridge", "operator")
	if strings.Join(u.Publish, " ") != "andromeda.events.>" {
		t.Fatalf("operator credential publishes on %v, want andromeda.events.>", u.Publish)
	}
	nc, err := nats.Connect(u.Server, nats.UserInfo(u.Name, u.Secret))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg, err := nc.Request("andromeda.events.orders.new", []byte(`{"name": "Ada"}`), 10*time.Second)
	if err != nil {
		t.Fatalf("publish with acknowledgement: %v", err)
	}
	var ack struct {
		Stream string `json:"stream"`
		Seq    uint64 `json:"seq"`
	}
	if err := json.Unmarshal(msg.Data, &ack); err != nil || ack.Stream != "ANDROMEDA_EVENTS" || ack.Seq == 0 {
		t.Fatalf("acknowledgement %s: want the events stream and a sequence", msg.Data)
	}
	r := waitEventRuns(t, c, "greeter", 1)[0]
	if r.Outcome != "ok" || r.Trigger.Seq != ack.Seq || r.Trigger.Publisher != "nats" {
		t.Fatalf("run trigger = %+v, want seq %d published by nats", r.Trigger, ack.Seq)
	}
	if _, err := nats.Connect(u.Server); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect without a credential = %v, want an authorization error", err)
	}
}
