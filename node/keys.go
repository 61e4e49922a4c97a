package node

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/keys"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// The node serves key management (operator-only routes, see server).
var _ server.KeyBackend = (*Node)(nil)

// keyring opens the node's keyring, <data>/keys. It is opened at each
// use: it holds no state but the files, so keys created, imported or
// removed by hand or by another process count at once.
func (n *Node) keyring() (*keys.Keyring, error) {
	ring, err := keys.Open(filepath.Join(n.cfg.Data, KeysDir))
	return ring, keyError(err)
}

// CreateKey implements server.KeyBackend.
func (n *Node) CreateKey(ctx context.Context, target string) (api.Key, error) {
	ring, err := n.keyring()
	if err != nil {
		return api.Key{}, err
	}
	info, err := ring.Create(target)
	if err != nil {
		return api.Key{}, keyError(err)
	}
	n.log.Info("created signing key", "target", target, "key_id", info.KeyID)
	return apiKey(info), nil
}

// Keys implements server.KeyBackend.
func (n *Node) Keys(ctx context.Context) ([]api.Key, error) {
	ring, err := n.keyring()
	if err != nil {
		return nil, err
	}
	list, err := ring.List()
	if err != nil {
		return nil, keyError(err)
	}
	out := make([]api.Key, len(list))
	for i, info := range list {
		out[i] = apiKey(info)
	}
	return out, nil
}

// Key implements server.KeyBackend.
func (n *Node) Key(ctx context.Context, target string) (api.Key, error) {
	ring, err := n.keyring()
	if err != nil {
		return api.Key{}, err
	}
	info, err := ring.Public(target)
	if err != nil {
		return api.Key{}, keyError(err)
	}
	return apiKey(info), nil
}

// RemoveKey implements server.KeyBackend.
func (n *Node) RemoveKey(ctx context.Context, target string) error {
	ring, err := n.keyring()
	if err != nil {
		return err
	}
	info, _ := ring.Public(target)
	if err := ring.Remove(target); err != nil {
		return keyError(err)
	}
	n.log.Info("removed signing key", "target", target, "key_id", info.KeyID)
	return nil
}

func apiKey(info keys.Info) api.Key {
	return api.Key{
		Target:    info.Target,
		KeyID:     info.KeyID,
		PublicKey: info.Public,
		Created:   info.Created.UTC(),
	}
}

// keyError gives a keyring error the kind the server answers it with: a
// bad name is the request's fault, a key that exists a conflict, a key
// file refused as unsafe unusable until the operator fixes it (the error
// says how).
func keyError(err error) error {
	var kind error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, keys.ErrInvalid):
		kind = server.ErrInvalid
	case errors.Is(err, keys.ErrExists):
		kind = server.ErrConflict
	case errors.Is(err, keys.ErrNotFound):
		kind = store.ErrNotFound
	case errors.Is(err, keys.ErrUnsafe):
		kind = server.ErrUnusable
	default:
		return err
	}
	return &server.Error{Kind: kind, Msg: err.Error()}
}
