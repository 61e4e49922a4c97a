package node

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// Raw NATS clients and who published an event (docs/design.md section 6).
//
// The embedded server admits a client only with a credential the node
// issued (CreateNATSUser): its name and a secret shown once, kept in
// bus.BucketNATSUsers as a sha256. A credential of owner O may publish on
// andromeda.events.O.> and on the public topics (event triggers of
// deployed services marked public: true), the operator's on
// andromeda.events.>; none may subscribe to anything but its inbox.
//
// Events the node publishes itself carry their publisher in a header
// signed with HMAC-SHA256 under a key kept in the data dir; any other
// event is named by what its subject proves: "nats:O" on a topic under O.
// that is not public while O holds a credential, "nats" otherwise.

// PublisherKeyFile is the file in the data dir holding the key that signs
// the publisher header of the events the node publishes (0600).
const PublisherKeyFile = "publisher.key"

// headerPublisherSig is the hex HMAC-SHA256 of an event's subject,
// publisher and body digest (publisherMAC), under the node's publisher key.
const headerPublisherSig = "Andromeda-Publisher-Signature"

// OwnerOperator is the owner whose NATS credentials publish on every topic.
const OwnerOperator = "operator"

// natsAuth is the node's side of raw NATS clients: the credentials issued,
// the public topics they may publish on, and the publisher key.
type natsAuth struct {
	key []byte             // signs the publisher header
	kv  jetstream.KeyValue // nil with an external NATS

	mu     sync.Mutex
	creds  map[string]natsCred
	public []string // sorted
	ready  bool     // public topics are final: the node restored its services

	applyMu sync.Mutex // one applyNATSUsers at a time, so the newest wins
}

// natsCred is one issued credential as stored: never its secret.
type natsCred struct {
	Name    string    `json:"name"`
	Owner   string    `json:"owner"`
	Hash    string    `json:"sha256"`
	Created time.Time `json:"created"`
}

// loadCreds reads the issued credentials from the bucket.
func (a *natsAuth) loadCreds(ctx context.Context, n *Node) error {
	keys, err := a.kv.ListKeys(ctx)
	if err != nil {
		return err
	}
	creds := map[string]natsCred{}
	for k := range keys.Keys() {
		e, err := a.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		var c natsCred
		if err := json.Unmarshal(e.Value(), &c); err != nil || c.Name != k {
			n.log.Warn("nats credential unreadable; it cannot connect", "name", k, logErr, err)
			continue
		}
		creds[k] = c
	}
	a.creds = creds
	return nil
}

// transient reports an error of a store that is there but slow or
// electing: a timeout, no responders, or JetStream's "cluster unavailable".
func transient(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == 10008
}

// openNATSAuth loads the publisher key (made on first start) and, with an
// embedded server, the issued credentials, which it hands to the server.
func (n *Node) openNATSAuth(ctx context.Context) error {
	key, err := loadPublisherKey(filepath.Join(n.cfg.Data, PublisherKeyFile))
	if err != nil {
		return err
	}
	a := &natsAuth{key: key, creds: map[string]natsCred{}}
	n.natsAuth = a
	if !n.bus.Embedded() {
		return nil
	}
	a.kv, err = n.bus.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bus.BucketNATSUsers, Description: "credentials of NATS clients (sha256 of the secret)",
		History: 1, Storage: jetstream.FileStorage, Replicas: n.bus.Replicas(),
	})
	if err != nil {
		return fmt.Errorf("nats credentials: bucket: %w", err)
	}
	// A node rejoining its cluster may find the JetStream meta layer still
	// catching up (seconds with many streams): each read is given the
	// cluster's wait, and one that times out is asked again within it.
	wait := n.cfg.Cluster.Wait.Std()
	if wait <= 0 {
		wait = DefaultClusterWait
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(wctx, 10*time.Second)
		err = a.loadCreds(actx, n)
		acancel()
		if err == nil || wctx.Err() != nil || !transient(err) {
			break
		}
		n.log.Warn("nats credentials not read yet; again", logErr, err)
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("nats credentials: %w", err)
	}
	n.applyNATSUsers()
	return nil
}

// loadPublisherKey reads the 32-byte key at path, or makes it.
func loadPublisherKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key := make([]byte, 32)
		rand.Read(key)
		if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("publisher key: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("publisher key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("publisher key %s: mode %o lets others read it; chmod 600 it", path, fi.Mode().Perm())
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("publisher key %s: want 64 hex digits", path)
	}
	return key, nil
}

// publisherMAC signs that publisher published body on subject.
func publisherMAC(key []byte, subject, publisher string, body []byte) string {
	d := sha256.Sum256(body)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(subject + "\n" + publisher + "\n" + hex.EncodeToString(d[:])))
	return hex.EncodeToString(m.Sum(nil))
}

// signPublisher sets msg's publisher header and its signature.
func (n *Node) signPublisher(msg *nats.Msg, publisher string) {
	msg.Header.Set(headerPublisher, publisher)
	msg.Header.Set(headerPublisherSig, publisherMAC(n.natsAuth.key, msg.Subject, publisher, msg.Data))
}

// eventPublisher names who published an event on subject: the signed
// header when its signature holds, else what the subject proves.
func (n *Node) eventPublisher(subject string, h nats.Header, body []byte) string {
	if p := h.Get(headerPublisher); p != "" {
		want := publisherMAC(n.natsAuth.key, subject, p, body)
		if hmac.Equal([]byte(h.Get(headerPublisherSig)), []byte(want)) {
			return p
		}
	}
	topic := strings.TrimPrefix(subject, bus.SubjectEventsPrefix)
	owner, _, under := strings.Cut(topic, ".")
	a := n.natsAuth
	a.mu.Lock()
	defer a.mu.Unlock()
	if !under || owner == OwnerOperator || slices.Contains(a.public, topic) {
		return "nats"
	}
	for _, c := range a.creds {
		if c.Owner == owner {
			return "nats:" + owner
		}
	}
	return "nats"
}

// checkRawEvent holds an event from the stream to the rules the API
// applies when publishing: one JSON value of at most events.max_message.
func (n *Node) checkRawEvent(data []byte) error {
	if max := int(n.events.limits.stream.MaxMessage); len(data) > max {
		return fmt.Errorf("message: at most %d bytes (events.max_message), got %d", max, len(data))
	}
	if len(data) == 0 || !json.Valid(data) {
		return errors.New("message: must be a JSON value")
	}
	return nil
}

// publicTopic reports whether a deployed service's event trigger makes
// topic public.
func (n *Node) publicTopic(topic string) bool {
	a := n.natsAuth
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := slices.BinarySearch(a.public, topic)
	return ok
}

// mayMakePublic reports whether a service of owner may open topic to
// every publisher: the operator's any topic, anyone else's only topics
// under its own name.
func mayMakePublic(owner, topic string) bool {
	return owner == "" || owner == OwnerOperator || strings.HasPrefix(topic, owner+".")
}

// checkPublicTopics refuses a manifest whose event triggers mark public a
// topic its owner may not open to everyone: a submitter's service may
// open only topics under its owner's name. The owner is p, or the owner
// of prev when the operator replaces a submitter's service.
func checkPublicTopics(p server.Principal, prev store.Service, exists bool, m *manifest.Service) error {
	owner := p.Name
	if exists && p.Operator() && prev.Owner != "" {
		owner = prev.Owner
	}
	var problems []string
	for i, t := range m.Triggers {
		if t.Kind == manifest.KindEvent && t.Public && !mayMakePublic(owner, t.Topic) {
			problems = append(problems, fmt.Sprintf("triggers[%d].public: a service of %s may make public only topics under %s., not %s", i, owner, owner, t.Topic))
		}
	}
	if problems != nil {
		return &server.Error{Kind: server.ErrForbidden, Msg: "public topics outside the owner's namespace", Problems: problems}
	}
	return nil
}

// refreshPublicTopics recomputes the public topics from the deployed
// services, leaving out dropped (a service being removed), and gives the
// raw clients their new permissions when the set changed (once the node is
// ready): clients whose subjects change are disconnected, and reconnect
// with the new ones.
func (n *Node) refreshPublicTopics(dropped string) {
	var topics []string
	n.mu.RLock()
	for name, d := range n.services {
		if name == dropped || d.manifest == nil {
			continue
		}
		for _, t := range d.manifest.Triggers {
			if t.Kind == manifest.KindEvent && t.Public && mayMakePublic(d.rec.Owner, t.Topic) {
				topics = append(topics, t.Topic)
			}
		}
	}
	n.mu.RUnlock()
	slices.Sort(topics)
	topics = slices.Compact(topics)
	a := n.natsAuth
	a.mu.Lock()
	same := slices.Equal(a.public, topics)
	a.public = topics
	ready := a.ready
	a.mu.Unlock()
	if !same && ready {
		n.applyNATSUsers()
	}
}

// natsReady gives the clients the public topics once the node restored
// its services: while it starts, they publish in their namespaces only, so
// that one who connects early is disconnected once, not once per service
// restored.
func (n *Node) natsReady() {
	a := n.natsAuth
	a.mu.Lock()
	a.ready = true
	a.mu.Unlock()
	n.applyNATSUsers()
}

// applyNATSUsers hands the embedded server the credentials with the
// subjects each may publish on now.
func (n *Node) applyNATSUsers() {
	a := n.natsAuth
	if a.kv == nil {
		return
	}
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	a.mu.Lock()
	users := make([]bus.ClientUser, 0, len(a.creds))
	for _, c := range a.creds {
		u := bus.ClientUser{Name: c.Name}
		if h, err := hex.DecodeString(c.Hash); err != nil || len(h) != len(u.Hash) {
			continue
		} else {
			copy(u.Hash[:], h)
		}
		u.Publish = natsSubjects(c.Owner, a.public)
		users = append(users, u)
	}
	a.mu.Unlock()
	n.bus.SetClientUsers(users)
}

// natsSubjects are the subjects a credential of owner may publish on.
func natsSubjects(owner string, public []string) []string {
	if owner == OwnerOperator {
		return []string{bus.SubjectEventsPrefix + ">"}
	}
	out := []string{bus.SubjectEventsPrefix + owner + ".>"}
	for _, t := range public {
		if !strings.HasPrefix(t, owner+".") {
			out = append(out, bus.EventSubject(t))
		}
	}
	return out
}

// natsCredsUsable says why this node issues no credentials, if it does not.
func (n *Node) natsCredsUsable() error {
	if n.natsAuth.kv == nil {
		return server.Errorf(server.ErrConflict, "this node uses an external NATS (nats.url): its clients are that cluster's to admit")
	}
	return nil
}

// apiNATSUser is c as the API shows it, with the subjects it may publish
// on now.
func (n *Node) apiNATSUser(c natsCred, public []string) api.NATSUser {
	return api.NATSUser{Name: c.Name, Owner: c.Owner, Created: c.Created, Publish: natsSubjects(c.Owner, public), Server: n.bus.ClientURL()}
}

// CreateNATSUser implements server.NATSUserBackend: a new credential for
// a NATS client of the embedded server. Its secret is in the answer only.
func (n *Node) CreateNATSUser(ctx context.Context, req api.NATSUserRequest) (api.NATSUser, error) {
	if err := n.natsCredsUsable(); err != nil {
		return api.NATSUser{}, err
	}
	if req.Owner == "" {
		req.Owner = req.Name
	}
	var problems []string
	if !validTokenName(req.Name) {
		problems = append(problems, "name: must match [a-z0-9][a-z0-9-]{0,62}")
	}
	if !validTokenName(req.Owner) {
		problems = append(problems, "owner: must match [a-z0-9][a-z0-9-]{0,62} (operator publishes on every topic)")
	}
	if len(problems) > 0 {
		return api.NATSUser{}, &server.Error{Kind: server.ErrInvalid, Msg: "invalid NATS credential request", Problems: problems}
	}
	secret := newSecret()
	h := sha256.Sum256([]byte(secret))
	c := natsCred{Name: req.Name, Owner: req.Owner, Hash: hex.EncodeToString(h[:]), Created: time.Now().UTC()}
	b, _ := json.Marshal(c)
	a := n.natsAuth
	if _, err := a.kv.Create(ctx, c.Name, b); errors.Is(err, jetstream.ErrKeyExists) {
		return api.NATSUser{}, server.Errorf(server.ErrConflict, "name: a NATS credential %s exists; remove it first", c.Name)
	} else if err != nil {
		return api.NATSUser{}, &server.Error{Kind: server.ErrUnavailable, Msg: "store NATS credential: " + err.Error(), RetryAfter: retryUnavailable}
	}
	a.mu.Lock()
	a.creds[c.Name] = c
	public := a.public
	a.mu.Unlock()
	n.applyNATSUsers()
	n.log.Info("nats credential created", "name", c.Name, "owner", c.Owner)
	u := n.apiNATSUser(c, public)
	u.Secret = secret
	return u, nil
}

// NATSUsers implements server.NATSUserBackend: the credentials issued, by
// name.
func (n *Node) NATSUsers(ctx context.Context) ([]api.NATSUser, error) {
	if err := n.natsCredsUsable(); err != nil {
		return nil, err
	}
	a := n.natsAuth
	a.mu.Lock()
	creds := make([]natsCred, 0, len(a.creds))
	for _, c := range a.creds {
		creds = append(creds, c)
	}
	public := a.public
	a.mu.Unlock()
	slices.SortFunc(creds, func(x, y natsCred) int { return strings.Compare(x.Name, y.Name) })
	out := make([]api.NATSUser, 0, len(creds))
	for _, c := range creds {
		out = append(out, n.apiNATSUser(c, public))
	}
	return out, nil
}

// RemoveNATSUser implements server.NATSUserBackend: the credential can no
// longer connect, and its connections are closed.
func (n *Node) RemoveNATSUser(ctx context.Context, name string) error {
	if err := n.natsCredsUsable(); err != nil {
		return err
	}
	a := n.natsAuth
	a.mu.Lock()
	_, ok := a.creds[name]
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("nats credential %s: %w", name, store.ErrNotFound)
	}
	if err := a.kv.Purge(ctx, name); err != nil {
		return &server.Error{Kind: server.ErrUnavailable, Msg: "remove NATS credential: " + err.Error(), RetryAfter: retryUnavailable}
	}
	a.mu.Lock()
	delete(a.creds, name)
	a.mu.Unlock()
	n.applyNATSUsers()
	n.log.Info("nats credential removed", "name", name)
	return nil
}

var _ server.NATSUserBackend = (*Node)(nil)
