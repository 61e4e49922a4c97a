package node

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/andromeda-runner/andromeda/keys"
)

// KeysDir is the keyring's directory inside the data directory: one
// ed25519 key per target, mode 0600 (andromeda keys).
const KeysDir = "keys"

// signer returns the node's key for target, with which submit envelopes
// to it are signed. The key is read at each signing, so a key created or
// replaced with andromeda keys takes effect without a restart.
func (n *Node) signer(target string) (crypto.Signer, error) {
	ring, err := keys.Open(filepath.Join(n.cfg.Data, KeysDir))
	if err != nil {
		return nil, err
	}
	k, err := ring.Signer(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no key for target %s on this node: create one with andromeda keys create %s", target, target)
	}
	return k, err
}
