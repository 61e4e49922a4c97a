package node

// Secrets: the values webhooks are checked with (an http trigger's auth
// names a secret, never holds it). A secret is held in the node config
// (secrets: {NAME: VALUE}) or set at run time (andromeda secrets set NAME,
// PUT /v1/secrets/NAME) into a JetStream KV bucket. A name the config
// holds cannot be set or removed at run time, and if the bucket holds it
// too (set before the config named it), the config's value wins. The node
// keeps every value in memory, fed by a watch on the bucket, so a secret
// set by any client of the bus takes effect at once, without a restart.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// checkSecrets reports every problem of the config's secrets, each with
// its key under "secrets".
func checkSecrets(secrets map[string]string) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(secrets)) {
		switch v := secrets[name]; {
		case !manifest.ValidSecretName(name):
			errs = append(errs, fmt.Errorf("secrets: %q: %s", name, manifest.SecretNameRule))
		case v == "":
			errs = append(errs, fmt.Errorf("secrets.%s: must not be empty", name))
		case len(v) > server.MaxSecretBytes:
			errs = append(errs, fmt.Errorf("secrets.%s: must be at most %d bytes", name, server.MaxSecretBytes))
		}
	}
	return errors.Join(errs...)
}

// secretStore holds the config's secrets and those set at run time. Safe
// for concurrent use.
type secretStore struct {
	config map[string]string
	kv     jetstream.KeyValue
	watch  jetstream.KeyWatcher
	log    *slog.Logger

	mu     sync.RWMutex
	stored map[string]storedSecret
}

type storedSecret struct {
	value   []byte
	updated time.Time
}

// openSecrets opens (creating it if needed) the secrets bucket and loads
// it; a watch keeps the values current until close. ctx bounds the watch:
// the node's lifetime.
func openSecrets(ctx context.Context, js jetstream.JetStream, replicas int, config map[string]string, log *slog.Logger) (*secretStore, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
		Bucket: bus.BucketSecrets, Description: "webhook secrets set at run time: name → value",
		History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("secrets: bucket %s: %w", bus.BucketSecrets, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("secrets: watch: %w", err)
	}
	s := &secretStore{config: config, kv: kv, watch: w, log: log, stored: map[string]storedSecret{}}
	// The watch first delivers every value, then nil: loaded.
	for loaded := false; !loaded; {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("secrets: watch ended while loading")
			}
			if e == nil {
				loaded = true
				break
			}
			s.apply(e)
		case <-cctx.Done():
			w.Stop()
			return nil, fmt.Errorf("secrets: load: %w", cctx.Err())
		}
	}
	for name := range s.stored {
		if _, ok := config[name]; ok {
			log.Warn("secret set at run time is shadowed by the node config's", "secret", name)
		}
	}
	go func() {
		for e := range w.Updates() {
			if e != nil {
				s.apply(e)
			}
		}
	}()
	return s, nil
}

// apply takes one change of the bucket.
func (s *secretStore) apply(e jetstream.KeyValueEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e.Operation() {
	case jetstream.KeyValuePut:
		s.stored[e.Key()] = storedSecret{value: e.Value(), updated: e.Created()}
	default:
		delete(s.stored, e.Key())
	}
}

// close stops the watch.
func (s *secretStore) close() error {
	return s.watch.Stop()
}

// value returns the secret's value and whether the node holds it.
func (s *secretStore) value(name string) ([]byte, bool) {
	if v, ok := s.config[name]; ok {
		return []byte(v), true
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.stored[name]
	return st.value, ok
}

// Secrets implements server.HookBackend: the names, by name, and where
// each comes from.
func (n *Node) Secrets(ctx context.Context) ([]api.Secret, error) {
	s := n.secrets
	out := []api.Secret{}
	for name := range s.config {
		out = append(out, api.Secret{Name: name, Source: api.SecretFromConfig})
	}
	s.mu.RLock()
	for name, st := range s.stored {
		if _, shadowed := s.config[name]; !shadowed {
			out = append(out, api.Secret{Name: name, Source: api.SecretFromStore, Updated: st.updated.UTC()})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b api.Secret) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// SetSecret implements server.HookBackend: store a secret's value, in
// effect for the next request.
func (n *Node) SetSecret(ctx context.Context, name string, value []byte) error {
	s := n.secrets
	var problems []string
	if !manifest.ValidSecretName(name) {
		problems = append(problems, "name: "+manifest.SecretNameRule)
	}
	switch {
	case len(value) == 0:
		problems = append(problems, "value: must not be empty")
	case len(value) > server.MaxSecretBytes:
		problems = append(problems, fmt.Sprintf("value: must be at most %d bytes", server.MaxSecretBytes))
	}
	if len(problems) > 0 {
		return &server.Error{Kind: server.ErrInvalid, Msg: "invalid secret", Problems: problems}
	}
	if _, ok := s.config[name]; ok {
		return server.Errorf(server.ErrConflict, "secret %s is held in the node config, which wins over a stored one: change it there", name)
	}
	if err := n.gate.admit(workFire, ""); err != nil {
		return &server.Error{Kind: server.ErrUnavailable, Msg: err.Error(), RetryAfter: retryUnavailable}
	}
	rev, err := s.kv.Put(ctx, name, value)
	if err != nil {
		return fmt.Errorf("set secret %s: %w", name, err)
	}
	// In effect now, not only once the watch brings it back; a later
	// revision from the watch replaces this one.
	s.mu.Lock()
	s.stored[name] = storedSecret{value: value, updated: time.Now()}
	s.mu.Unlock()
	n.log.Info("secret set", "secret", name, "revision", rev)
	return nil
}

// DeleteSecret implements server.HookBackend: remove a stored secret and
// its history.
func (n *Node) DeleteSecret(ctx context.Context, name string) error {
	s := n.secrets
	if !manifest.ValidSecretName(name) {
		return server.Errorf(server.ErrInvalid, "name: %s", manifest.SecretNameRule)
	}
	if _, ok := s.config[name]; ok {
		return server.Errorf(server.ErrConflict, "secret %s is held in the node config: remove it there", name)
	}
	s.mu.RLock()
	_, ok := s.stored[name]
	s.mu.RUnlock()
	if !ok {
		return fmt.Errorf("secret %s: %w", name, store.ErrNotFound)
	}
	if err := s.kv.Purge(ctx, name); err != nil {
		return fmt.Errorf("remove secret %s: %w", name, err)
	}
	s.mu.Lock()
	delete(s.stored, name)
	s.mu.Unlock()
	n.log.Info("secret removed", "secret", name)
	return nil
}
