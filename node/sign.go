package node

import (
	"crypto"
)

// KeysDir is the keyring's directory inside the data directory: one
// ed25519 key per target, mode 0600 (andromeda keys).
const KeysDir = "keys"

// signer returns the node's key for target, with which submit envelopes
// to it are signed. The key is read at each signing, so a key created or
// replaced with andromeda keys takes effect without a restart; a missing
// key's error says how to create it.
func (n *Node) signer(target string) (crypto.Signer, error) {
	ring, err := n.keyring()
	if err != nil {
		return nil, err
	}
	return ring.Signer(target)
}
