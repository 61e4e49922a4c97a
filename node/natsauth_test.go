package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/internal/testutil"
	"github.com/andromeda-runner/andromeda/node"
)

// natsListen sets a node's nats.listen to a loopback port free now.
func natsListen(t testing.TB) func(*node.Config) {
	addr := testutil.FreeAddr(t)
	return func(c *node.Config) { c.NATS.Listen = addr }
}

// natsClient is a raw NATS client: its asynchronous errors (permission
// violations) arrive on errs; closed is closed when its connection ends.
type natsClient struct {
	*nats.Conn
	errs   chan error
	closed chan struct{}
}

func dialNATS(t *testing.T, url, user, password string) (*natsClient, error) {
	t.Helper()
	c := &natsClient{errs: make(chan error, 16), closed: make(chan struct{})}
	opts := []nats.Option{
		nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.errs <- err }),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
	}
	if user != "" {
		opts = append(opts, nats.UserInfo(user, password))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	c.Conn = nc
	return c, nil
}

// refused waits for a permissions violation naming what.
func (c *natsClient) refused(t *testing.T, what string) {
	t.Helper()
	select {
	case err := <-c.errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), what) {
			t.Fatalf("async error %v, want a permissions violation on %s", err, what)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no permissions violation on %s within 10s", what)
	}
}

// publishNATS publishes data on topic's subject with headers (pairs) and
// waits until the server has it.
func (c *natsClient) publishNATS(t *testing.T, topic, data string, headers ...string) {
	t.Helper()
	m := &nats.Msg{Subject: bus.EventSubject(topic), Data: []byte(data), Header: nats.Header{}}
	for i := 0; i+1 < len(headers); i += 2 {
		m.Header.Set(headers[i], headers[i+1])
	}
	if err := c.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestNATSClients: with nats.listen the node's NATS admits only the
// credentials it issued. A credential of alice publishes on alice's topics
// and on public ones, and the runs name it by what the subject proves,
// even when it forges the publisher header; it cannot publish elsewhere,
// read the node's state, runs or events, or call JetStream's API. A
// removed credential is disconnected and refused; the rest survive a
// restart.
func TestNATSClients(t *testing.T) {
	ctx := context.Background()
	drv := realWasm(t)
	n := startNodeWith(t, drv, natsListen(t))
	tok, err := n.op.CreateToken(ctx, "alice", api.RoleSubmitter)
	if err != nil {
		t.Fatal(err)
	}
	alice := api.NewClient(n.Addr(), tok.Secret)
	eventGreeter(t, alice, "mine", "alice.orders", 2)
	publicGreeter(t, n.op, "shared", "orders.public")
	eventGreeter(t, n.op, "closed", "orders.private", 2)

	cred, err := n.op.CreateNATSUser(ctx, "sensor", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if cred.Secret == "" || cred.Owner != "alice" || cred.Server == "" {
		t.Fatalf("CreateNATSUser = %+v, want a secret, owner alice and the server's URL", cred)
	}
	wantPub := []string{"andromeda.events.alice.>", "andromeda.events.orders.public"}
	if strings.Join(cred.Publish, " ") != strings.Join(wantPub, " ") {
		t.Fatalf("credential publishes on %v, want %v", cred.Publish, wantPub)
	}
	if _, err := n.op.CreateNATSUser(ctx, "sensor", "bob"); status(err) != 409 {
		t.Fatalf("second credential named sensor: %v, want 409", err)
	}
	if _, err := n.op.CreateNATSUser(ctx, "Bad_Name", ""); status(err) != 400 || !strings.Contains(err.Error(), "name:") {
		t.Fatalf("credential with a bad name: %v, want 400 naming the field", err)
	}
	if _, err := alice.CreateNATSUser(ctx, "mine", "alice"); status(err) != 403 {
		t.Fatalf("a submitter issuing a credential: %v, want 403", err)
	}
	// The stored record holds no secret.
	if b, err := os.ReadFile(filepath.Join(n.cfg.Data, node.PublisherKeyFile)); err != nil || len(b) == 0 {
		t.Fatalf("publisher key: %v", err)
	} else if fi, _ := os.Stat(filepath.Join(n.cfg.Data, node.PublisherKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("publisher key mode %o, want 600", fi.Mode().Perm())
	}

	for _, tc := range []struct{ name, user, password string }{
		{"no credentials", "", ""},
		{"wrong password", "sensor", "and_guess"},
		{"unknown user", "nobody", cred.Secret},
		{"the node's own user", bus.NodeUser, cred.Secret},
	} {
		if _, err := dialNATS(t, cred.Server, tc.user, tc.password); !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("%s: connect = %v, want an authorization error", tc.name, err)
		}
	}
	c, err := dialNATS(t, cred.Server, "sensor", cred.Secret)
	if err != nil {
		t.Fatal(err)
	}

	// In alice's namespace, named by its subject, whatever the header says.
	c.publishNATS(t, "alice.orders", `{"name":"Ada"}`)
	c.publishNATS(t, "alice.orders", `{"name":"Eve"}`, "Andromeda-Publisher", "operator", "Andromeda-Publisher-Signature", strings.Repeat("0", 64))
	c.publishNATS(t, "alice.orders", `{"name":"Mallory"}`, "Andromeda-Publisher", "operator")
	runs := waitRuns(t, n.op, "mine", 3)
	for _, r := range runs {
		if r.Trigger.Publisher != "nats:alice" {
			t.Errorf("run for %s: publisher %q, want nats:alice (the header is forged)", greeted(t, r), r.Trigger.Publisher)
		}
	}
	// An event the node published keeps its signed publisher.
	if _, err := alice.Publish(ctx, "alice.orders", json.RawMessage(`{"name":"Api"}`)); err != nil {
		t.Fatal(err)
	}
	if r := waitRuns(t, n.op, "mine", 4)[3]; r.Trigger.Publisher != "alice" {
		t.Errorf("run of an API event: publisher %q, want alice", r.Trigger.Publisher)
	}
	// On a public topic the subject proves nothing about who published.
	c.publishNATS(t, "orders.public", `{"name":"Pub"}`)
	if r := waitRuns(t, n.op, "shared", 1)[0]; r.Trigger.Publisher != "nats" || greeted(t, r) != "Pub" {
		t.Errorf("run on the public topic: publisher %q, want nats", r.Trigger.Publisher)
	}

	// Nothing else: other topics, state, runs, events, JetStream's API.
	for _, subj := range []string{"andromeda.events.orders.private", "andromeda.events.bob.x", bus.RunSubject("mine"), "$KV." + bus.BucketState + ".mine", "$JS.API.STREAM.LIST"} {
		c.Publish(subj, []byte(`{"name":"X"}`))
		c.refused(t, `Publish to "`+subj+`"`)
	}
	for _, subj := range []string{"andromeda.events.>", "andromeda.runs.>", "$KV." + bus.BucketState + ".>", "$KV." + bus.BucketNATSUsers + ".>", bus.NodeInboxPrefix + ".>", ">"} {
		c.Subscribe(subj, func(*nats.Msg) {})
		c.refused(t, `Subscription to "`+subj+`"`)
	}
	if _, err := c.Request("$JS.API."+"STREAM.INFO."+bus.StreamRuns, nil, time.Second); err == nil {
		t.Fatal("the raw client read the runs stream's info")
	}
	c.refused(t, "$JS.API.STREAM.INFO")

	// Submitters: public topics are open to them too, private ones not,
	// and a submitter cannot open a topic outside its namespace.
	if _, err := alice.Publish(ctx, "orders.public", json.RawMessage(`{"name":"Sub"}`)); err != nil {
		t.Fatalf("alice on a public topic: %v", err)
	}
	if _, err := alice.Publish(ctx, "orders.private", json.RawMessage(`1`)); status(err) != 403 || !strings.Contains(err.Error(), "public topics") {
		t.Fatalf("alice on a private topic: %v, want 403 saying public topics are open", err)
	}
	dir := example(t, "greeter")
	editManifest(t, dir, "name: greeter", "name: opener",
		"  - {kind: manual, input: {name: world}}", "  - {kind: event, topic: orders.private, public: true}")
	if _, err := alice.Submit(ctx, pack(t, dir)); status(err) != 403 || !strings.Contains(err.Error(), "triggers[0].public") {
		t.Fatalf("alice making orders.private public: %v, want 403 naming triggers[0].public", err)
	}

	// Listed without secrets; a restart keeps them; removal disconnects.
	users, err := n.op.NATSUsers(ctx)
	if err != nil || len(users) != 1 || users[0].Name != "sensor" || users[0].Secret != "" {
		t.Fatalf("NATSUsers = %+v, %v; want sensor without its secret", users, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("client still connected 10s after the node closed")
	}
	again := restartWith(t, n.cfg, realWasm(t))
	c, err = dialNATS(t, cred.Server, "sensor", cred.Secret)
	if err != nil {
		t.Fatalf("credential after a restart: %v", err)
	}
	c.publishNATS(t, "alice.orders", `{"name":"Again"}`)
	if r := waitRuns(t, again.op, "mine", 5)[4]; r.Trigger.Publisher != "nats:alice" || greeted(t, r) != "Again" {
		t.Errorf("run after the restart: %q by %q, want Again by nats:alice", greeted(t, r), r.Trigger.Publisher)
	}
	if err := again.op.RemoveNATSUser(ctx, "sensor"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("removed credential still connected after 10s")
	}
	if _, err := dialNATS(t, cred.Server, "sensor", cred.Secret); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("removed credential: connect = %v, want an authorization error", err)
	}
	if err := again.op.RemoveNATSUser(ctx, "sensor"); status(err) != 404 {
		t.Fatalf("removing it again: %v, want 404", err)
	}
}

// TestPublicTopicChanges: a client connected before a topic becomes
// public, or while it is, is disconnected when that changes, and after
// reconnecting may publish there, or no longer.
func TestPublicTopicChanges(t *testing.T) {
	ctx := context.Background()
	n := startNodeWith(t, realWasm(t), natsListen(t))
	cred, err := n.op.CreateNATSUser(ctx, "sensor", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := dialNATS(t, cred.Server, "sensor", cred.Secret)
	if err != nil {
		t.Fatal(err)
	}
	publicGreeter(t, n.op, "shared", "orders.public")
	select {
	case <-c.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("client still connected 10s after a topic became public")
	}
	c, err = dialNATS(t, cred.Server, "sensor", cred.Secret)
	if err != nil {
		t.Fatal(err)
	}
	c.publishNATS(t, "orders.public", `{"name":"Before"}`)
	waitRuns(t, n.op, "shared", 1)
	// What the API would refuse is published, and recorded as a dead
	// letter saying why, without running.
	c.publishNATS(t, "orders.public", `not json`)
	if r := waitRuns(t, n.op, "shared", 2)[1]; r.Outcome != "error" || !strings.Contains(r.Error, "dead letter") || !strings.Contains(r.Error, "must be a JSON value") {
		t.Fatalf("run of a message that is not JSON: %s %q, want a dead letter saying why", r.Outcome, r.Error)
	}
	if err := n.op.Remove(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("client still connected 10s after its public topic was withdrawn")
	}
	c, err = dialNATS(t, cred.Server, "sensor", cred.Secret)
	if err != nil {
		t.Fatal(err)
	}
	c.Publish(bus.EventSubject("orders.public"), []byte(`1`))
	c.refused(t, `Publish to "andromeda.events.orders.public"`)
	users, err := n.op.NATSUsers(ctx)
	if err != nil || len(users) != 1 || strings.Join(users[0].Publish, " ") != "andromeda.events.sensor.>" {
		t.Fatalf("NATSUsers = %+v, %v; want sensor publishing on its own topics only", users, err)
	}
}

// publicGreeter submits the greeter as service name on a public event
// trigger on topic.
func publicGreeter(t *testing.T, c *api.Client, name, topic string) {
	t.Helper()
	dir := example(t, "greeter")
	editManifest(t, dir, "name: greeter", "name: "+name,
		"  - {kind: manual, input: {name: world}}", "  - {kind: event, topic: "+topic+", public: true}")
	if _, err := c.Submit(context.Background(), pack(t, dir)); err != nil {
		t.Fatal(err)
	}
}
