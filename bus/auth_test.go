package bus

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// listeningBus opens a bus whose embedded server listens on a random
// loopback port.
func listeningBus(t *testing.T) *Bus {
	t.Helper()
	b, err := Open(context.Background(), Config{Dir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if b.ClientURL() == "" {
		t.Fatal("ClientURL() is empty with Listen set")
	}
	return b
}

// client connects to b as user with password, without reconnecting; its
// asynchronous errors (permission violations) arrive on errs, and closed
// is closed when the server closes the connection.
type client struct {
	*nats.Conn
	errs   chan error
	closed chan struct{}
}

func connect(t *testing.T, b *Bus, user, password string) (*client, error) {
	t.Helper()
	c := &client{errs: make(chan error, 16), closed: make(chan struct{})}
	opts := []nats.Option{
		nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.errs <- err }),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
	}
	if user != "" {
		opts = append(opts, nats.UserInfo(user, password))
	}
	nc, err := nats.Connect(b.ClientURL(), opts...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	c.Conn = nc
	return c, nil
}

// violation waits for c's next asynchronous error and checks that it is
// a permissions violation naming subject.
func (c *client) violation(t *testing.T, subject string) {
	t.Helper()
	select {
	case err := <-c.errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), subject) {
			t.Fatalf("async error %v, want a permissions violation on %s", err, subject)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no permissions violation on %s within 10s", subject)
	}
}

func user(name, secret string, publish ...string) ClientUser {
	return ClientUser{Name: name, Hash: sha256.Sum256([]byte(secret)), Publish: publish}
}

// TestClientAuth: the embedded server admits no client without an issued
// credential, not even on the node's user name; an issued one publishes
// on its subjects only, subscribes only to its inbox, and cannot reach
// JetStream's API or the node's replies.
func TestClientAuth(t *testing.T) {
	ctx := context.Background()
	b := listeningBus(t)
	// The node's own connection works under the custom authentication.
	kv, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	b.SetClientUsers([]ClientUser{user("alice", "s3cret", SubjectEventsPrefix+"alice.>")})
	for _, tc := range []struct{ name, user, password string }{
		{"no credentials", "", ""},
		{"wrong secret", "alice", "guess"},
		{"unknown user", "bob", "s3cret"},
		{"the node's user", NodeUser, "s3cret"},
		{"empty secret", "alice", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := connect(t, b, tc.user, tc.password); !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("connect as %q = %v, want an authorization error", tc.user, err)
			}
		})
	}
	alice, err := connect(t, b, "alice", "s3cret")
	if err != nil {
		t.Fatalf("alice with her secret: %v", err)
	}
	// What she may publish reaches a subscriber of the node.
	sub, err := b.Conn.SubscribeSync(SubjectEventsPrefix + ">")
	if err != nil {
		t.Fatal(err)
	}
	b.Conn.Flush()
	if err := alice.Publish(SubjectEventsPrefix+"alice.orders", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(10 * time.Second); err != nil || m.Subject != SubjectEventsPrefix+"alice.orders" {
		t.Fatalf("node got %v, %v; want alice's event", m, err)
	}
	for _, subj := range []string{SubjectEventsPrefix + "bob.orders", SubjectRunsPrefix + "x", "$JS.API.INFO", "$KV.secret.k"} {
		alice.Publish(subj, []byte("1"))
		alice.violation(t, "Publish to \""+subj+"\"")
	}
	if _, err := alice.Request("$JS.API.STREAM.LIST", nil, time.Second); err == nil {
		t.Fatal("alice listed JetStream's streams")
	}
	alice.violation(t, "$JS.API.STREAM.LIST")
	for _, subj := range []string{SubjectEventsPrefix + ">", ">", "$KV.secret.>", NodeInboxPrefix + ".>"} {
		alice.Subscribe(subj, func(*nats.Msg) {})
		alice.violation(t, "Subscription to \""+subj+"\"")
	}
	// Her inbox is hers to read, and the node's replies never go there.
	inbox, err := alice.SubscribeSync(InboxPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	alice.Flush()
	if _, err := kv.Put(ctx, "k", []byte("hidden")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if m, err := inbox.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("alice's inbox subscription saw %s: %q", m.Subject, m.Data)
	}
	select {
	case err := <-alice.errs:
		t.Fatalf("unexpected async error: %v", err)
	default:
	}
}

// TestSetClientUsers: a client whose subjects change, gained or lost, or
// whose credential is removed, is disconnected, and a removed credential
// cannot connect again; a client passed unchanged keeps its connection.
func TestSetClientUsers(t *testing.T) {
	b := listeningBus(t)
	alice := user("alice", "s3cret", SubjectEventsPrefix+"alice.>")
	bob := user("bob", "hunter2", SubjectEventsPrefix+"bob.>")
	b.SetClientUsers([]ClientUser{alice, bob})
	ca, err := connect(t, b, "alice", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := connect(t, b, "bob", "hunter2")
	if err != nil {
		t.Fatal(err)
	}
	wider := alice
	wider.Publish = []string{SubjectEventsPrefix + "public", SubjectEventsPrefix + "alice.>"}
	b.SetClientUsers([]ClientUser{wider, bob})
	select {
	case <-ca.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("alice's connection still open 10s after she gained a subject")
	}
	ca, err = connect(t, b, "alice", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := b.Conn.SubscribeSync(SubjectEventsPrefix + "public")
	if err != nil {
		t.Fatal(err)
	}
	b.Conn.Flush()
	ca.Publish(SubjectEventsPrefix+"public", []byte("1"))
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("alice on her gained subject after reconnecting: %v", err)
	}
	// The same subjects in another order change nothing.
	same := wider
	same.Publish = []string{SubjectEventsPrefix + "alice.>", SubjectEventsPrefix + "public"}
	b.SetClientUsers([]ClientUser{same, bob})
	if err := ca.Flush(); err != nil || ca.IsClosed() {
		t.Fatalf("alice after the same subjects again: %v, closed %v; want open", err, ca.IsClosed())
	}
	b.SetClientUsers([]ClientUser{alice, bob})
	select {
	case <-ca.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("alice's connection still open 10s after she lost a subject")
	}
	if err := cb.Flush(); err != nil || cb.IsClosed() {
		t.Fatalf("bob's connection after alice's changes: %v, closed %v; want open", err, cb.IsClosed())
	}
	b.SetClientUsers([]ClientUser{alice})
	select {
	case <-cb.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("bob's connection still open 10s after his credential was removed")
	}
	if _, err := connect(t, b, "bob", "hunter2"); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("bob after removal: %v, want an authorization error", err)
	}
}

// TestNodeConnectionWithoutListener: with no listener the node's
// in-process connection still authenticates, and JetStream works.
func TestNodeConnectionWithoutListener(t *testing.T) {
	b, err := Open(context.Background(), Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.ClientURL() != "" {
		t.Fatalf("ClientURL() = %q without Listen, want empty", b.ClientURL())
	}
	if _, err := b.JS.AccountInfo(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestClientBeforeCredentials: a client that connects while the node is
// still loading its credentials waits for them and is admitted, instead of
// being refused during every start; once they are loaded, an unknown one
// is refused at once.
func TestClientBeforeCredentials(t *testing.T) {
	b := listeningBus(t)
	go func() {
		time.Sleep(300 * time.Millisecond)
		b.SetClientUsers([]ClientUser{user("early", "s3cret", "andromeda.events.early.>")})
	}()
	c, err := connect(t, b, "early", "s3cret")
	if err != nil {
		t.Fatalf("a client connecting before the credentials were loaded: %v", err)
	}
	c.Close()
	start := time.Now()
	if _, err := connect(t, b, "nobody", "x"); err == nil {
		t.Fatal("an unknown credential was admitted")
	}
	if d := time.Since(start); d > loadWait/2 {
		t.Errorf("refusing an unknown credential after loading took %s", d)
	}
}
