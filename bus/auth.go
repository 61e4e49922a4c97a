package bus

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The embedded server never serves an open bus: every client, the node's
// own in-process connection included, authenticates with a user name and
// a secret. The node's connection uses NodeUser and a secret made at each
// Open, held only in memory; every other client uses a credential the
// node issued and handed over with SetClientUsers.

// NodeUser is the user name of the node's own connection to its embedded
// server. It starts with "_", which no issued credential's name may.
const NodeUser = "_node"

// NodeInboxPrefix is the inbox prefix of the node's own connection: its
// JetStream API replies and the messages its pull consumers fetch arrive
// there. Clients may subscribe only to InboxPrefix, so they never see
// what the node reads.
const NodeInboxPrefix = "_ANDROMEDA_INBOX"

// InboxPrefix is the inbox prefix of other clients (the NATS default), the
// only subjects they may subscribe to, to get replies such as JetStream's
// publish acknowledgements.
const InboxPrefix = "_INBOX"

// ClientUser is a client the embedded server admits.
type ClientUser struct {
	// Name is the user name the client connects with.
	Name string
	// Hash is the sha256 of the client's secret (its NATS password).
	Hash [32]byte
	// Publish lists the subjects the client may publish on, wildcards
	// allowed. It may subscribe only to InboxPrefix.>.
	Publish []string
}

// clientAuth is the embedded server's custom authentication
// (server.Options.CustomClientAuthentication). Safe for concurrent use.
type clientAuth struct {
	nodeSecret string
	nodeHash   [32]byte

	mu    sync.RWMutex
	users map[string]ClientUser
	// loaded is closed by the first set: a client that connects while
	// the node is still reading its credentials waits for them (up to
	// loadWait) instead of being refused.
	loaded     chan struct{}
	loadedOnce sync.Once
}

// loadWait is how long a client connecting before the credentials are
// loaded waits for them: under the server's 2 s authentication timeout.
const loadWait = 1500 * time.Millisecond

var _ server.Authentication = (*clientAuth)(nil)

func newClientAuth() *clientAuth {
	var b [32]byte
	rand.Read(b[:])
	secret := hex.EncodeToString(b[:])
	return &clientAuth{nodeSecret: secret, nodeHash: sha256.Sum256([]byte(secret)), users: map[string]ClientUser{}, loaded: make(chan struct{})}
}

// Check implements server.Authentication: the node's user gets every
// permission, an issued credential those of its ClientUser, anyone else
// nothing.
func (a *clientAuth) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.CLIENT {
		return false
	}
	o := c.GetOpts()
	if o == nil || o.Username == "" || o.Password == "" {
		return false
	}
	h := sha256.Sum256([]byte(o.Password))
	if o.Username == NodeUser {
		if subtle.ConstantTimeCompare(h[:], a.nodeHash[:]) != 1 {
			return false
		}
		c.RegisterUser(&server.User{Username: NodeUser})
		return true
	}
	select {
	case <-a.loaded:
	case <-time.After(loadWait):
	}
	a.mu.RLock()
	u, ok := a.users[o.Username]
	a.mu.RUnlock()
	if !ok || subtle.ConstantTimeCompare(h[:], u.Hash[:]) != 1 {
		return false
	}
	c.RegisterUser(&server.User{Username: u.Name, Permissions: clientPermissions(u)})
	return true
}

// clientPermissions are what u may do: publish on its subjects, subscribe
// to its inbox for replies; nothing else (no JetStream API, no KV, no
// other subject).
func clientPermissions(u ClientUser) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: slices.Clone(u.Publish)},
		Subscribe: &server.SubjectPermission{Allow: []string{InboxPrefix + ".>"}},
	}
}

// set replaces the users and returns the names of those whose connections
// must close: users removed, or whose secret or subjects changed (a
// connection keeps the permissions it was admitted with).
func (a *clientAuth) set(users []ClientUser) []string {
	next := make(map[string]ClientUser, len(users))
	for _, u := range users {
		next[u.Name] = u
	}
	a.mu.Lock()
	prev := a.users
	a.users = next
	a.mu.Unlock()
	a.loadedOnce.Do(func() { close(a.loaded) })
	var kick []string
	for _, name := range slices.Sorted(maps.Keys(prev)) {
		old, nu := prev[name], next[name]
		if nu.Name == "" || nu.Hash != old.Hash || !sameSet(old.Publish, nu.Publish) {
			kick = append(kick, name)
		}
	}
	return kick
}

// sameSet reports whether a and b hold the same subjects.
func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// SetClientUsers replaces the clients the embedded server admits besides
// the node itself, and closes the connections of clients removed or whose
// secret or subjects changed: a connection's permissions are fixed when it
// is admitted, and NATS clients reconnect and get the ones they have then.
// Users passed unchanged keep their connections. Without an embedded
// server it does nothing. Safe for concurrent use.
func (b *Bus) SetClientUsers(users []ClientUser) {
	if b.auth == nil {
		return
	}
	for _, name := range b.auth.set(users) {
		b.disconnect(name)
	}
}

// disconnect closes every connection of user name.
func (b *Bus) disconnect(name string) {
	srv := b.srv
	if srv == nil {
		return
	}
	cz, err := srv.Connz(&server.ConnzOptions{User: name, Limit: 1 << 16})
	if err != nil {
		b.log.Warn("list connections to close", "user", name, logErr, err)
		return
	}
	for _, ci := range cz.Conns {
		srv.DisconnectClientByID(ci.Cid)
	}
	if len(cz.Conns) > 0 {
		b.log.Info("closed NATS client connections", "user", name, "connections", len(cz.Conns))
	}
}
