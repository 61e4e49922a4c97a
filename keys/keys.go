// Package keys holds the node's signing keys: one ed25519 key per submit
// target, each in its own file in one directory (the node's <data>/keys).
// A Keyring creates, lists, imports and removes them, and hands out a Key
// that signs: the private half never leaves this package but as
// signatures.
//
// It does not decide what to sign (package envelope seals a run's submit
// actions) or who may manage keys (the node's operator-only API does), and
// nothing in it is reachable from a guest. Standard library and envelope
// (for KeyID) only.
//
// # Files
//
// The directory has mode 0700 and each key file, <target>.key, mode 0600,
// both owned by the user the node runs as; a file or directory that is
// wider, or owned by someone else, is refused with how to fix it, never
// used. A key file is a PEM "PRIVATE KEY" block holding the key in PKCS #8
// (what `openssl genpkey -algorithm ed25519` writes, and what `openssl
// pkey -in T.key -pubout` reads). It is written once, to a temporary file
// that is synced and then linked to its name, so a crash leaves either no
// key or the whole key, and a second Create of the same target fails
// rather than replacing the first key. A key's creation time is its
// file's modification time, which the keyring never changes afterwards.
package keys

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/envelope"
)

var (
	// ErrNotFound marks a target without a key.
	ErrNotFound = errors.New("no key")
	// ErrExists marks a Create or Import for a target that has a key.
	ErrExists = errors.New("key exists")
	// ErrInvalid marks a bad target name or key material that does not
	// parse.
	ErrInvalid = errors.New("invalid")
	// ErrUnsafe marks a key file or directory that others may read or
	// write, or that another user owns.
	ErrUnsafe = errors.New("unsafe key file")
)

// Ext is the file name extension of key files.
const Ext = ".key"

// Keyring is the keys in one directory. Its methods are safe for
// concurrent use, by several processes too: every change is one atomic
// file system operation.
type Keyring struct {
	dir string
}

// Open returns the keyring in dir, creating dir with mode 0700 when it
// does not exist. An existing dir must be a directory of the current
// user's with no permission for group or others.
func Open(dir string) (*Keyring, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open keyring: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("open keyring: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open keyring: %w: %s is not a directory", ErrUnsafe, dir)
	}
	if err := safe(dir, fi, 0o700); err != nil {
		return nil, fmt.Errorf("open keyring: %w", err)
	}
	return &Keyring{dir: dir}, nil
}

// Dir is the keyring's directory.
func (k *Keyring) Dir() string { return k.dir }

// Info describes a key: never its private half.
type Info struct {
	Target string
	// KeyID is envelope.KeyID of the public key: the first 16 hex digits
	// of its SHA-256.
	KeyID  string
	Public ed25519.PublicKey
	// Created is when the key was created or imported (its file's
	// modification time).
	Created time.Time
}

// CheckTarget checks a target name: 1 to 63 characters of [a-z0-9_-],
// starting with a letter or digit.
func CheckTarget(target string) error {
	ok := len(target) >= 1 && len(target) <= 63
	for i := 0; ok && i < len(target); i++ {
		c := target[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '_' || c == '-')
	}
	if !ok {
		return fmt.Errorf("%w: target %q: want 1 to 63 characters of [a-z0-9_-], starting with a letter or digit", ErrInvalid, target)
	}
	return nil
}

func (k *Keyring) path(target string) string { return filepath.Join(k.dir, target+Ext) }

// Create makes a new key for target. It fails with ErrExists when target
// has one: a key is never replaced, only removed and created again.
func (k *Keyring) Create(target string) (Info, error) {
	if err := CheckTarget(target); err != nil {
		return Info{}, fmt.Errorf("create key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Info{}, fmt.Errorf("create key %s: %w", target, err)
	}
	return k.write("create key", target, priv)
}

// Import stores an existing key for target: a PEM "PRIVATE KEY" block
// holding an ed25519 key in PKCS #8, or the key's 32-byte seed as it is.
// It fails with ErrExists when target has a key.
func (k *Keyring) Import(target string, material []byte) (Info, error) {
	if err := CheckTarget(target); err != nil {
		return Info{}, fmt.Errorf("import key: %w", err)
	}
	priv, err := parseKey(material)
	if err != nil {
		return Info{}, fmt.Errorf("import key %s: %w", target, err)
	}
	return k.write("import key", target, priv)
}

// parseKey reads a PEM PKCS #8 ed25519 key or a raw 32-byte seed.
func parseKey(b []byte) (ed25519.PrivateKey, error) {
	if len(b) == ed25519.SeedSize {
		return ed25519.NewKeyFromSeed(b), nil
	}
	block, rest := pem.Decode(b)
	switch {
	case block == nil:
		return nil, fmt.Errorf("%w: want a PEM PRIVATE KEY block (PKCS #8) or a raw %d-byte seed, got %d bytes of neither", ErrInvalid, ed25519.SeedSize, len(b))
	case block.Type != "PRIVATE KEY":
		return nil, fmt.Errorf("%w: PEM block %q, want PRIVATE KEY (PKCS #8)", ErrInvalid, block.Type)
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, fmt.Errorf("%w: more than one PEM block", ErrInvalid)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: a %T, want an ed25519 key", ErrInvalid, key)
	}
	return priv, nil
}

// write stores priv as target's key file: a temporary file in the
// directory, written and synced, linked to its name (which fails if the
// name exists), then the directory synced.
func (k *Keyring) write(op, target string, priv ed25519.PrivateKey) (Info, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return Info{}, fmt.Errorf("%s %s: %w", op, target, err)
	}
	tmp, err := os.CreateTemp(k.dir, ".tmp-"+target+"-*")
	if err != nil {
		return Info{}, fmt.Errorf("%s %s: %w", op, target, err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600 already; say so, whatever the umask.
	err = tmp.Chmod(0o600)
	if err == nil {
		err = pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Info{}, fmt.Errorf("%s %s: %w", op, target, err)
	}
	if err := os.Link(tmp.Name(), k.path(target)); errors.Is(err, fs.ErrExist) {
		return Info{}, fmt.Errorf("%s %s: %w: %s has a key already (andromeda keys rm %s first to replace it)", op, target, ErrExists, target, target)
	} else if err != nil {
		return Info{}, fmt.Errorf("%s %s: %w", op, target, err)
	}
	if err := syncDir(k.dir); err != nil {
		return Info{}, fmt.Errorf("%s %s: %w", op, target, err)
	}
	return k.Public(target)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// load reads target's key file, refusing one others may read or write or
// another user owns.
func (k *Keyring) load(target string) (ed25519.PrivateKey, time.Time, error) {
	if err := CheckTarget(target); err != nil {
		return nil, time.Time{}, err
	}
	p := k.path(target)
	lfi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}, fmt.Errorf("%w for target %s (create one with andromeda keys create %s)", ErrNotFound, target, target)
	} else if err != nil {
		return nil, time.Time{}, err
	}
	if lfi.Mode()&fs.ModeSymlink != 0 {
		return nil, time.Time{}, fmt.Errorf("%w: %s is a symbolic link; put the key file itself there (andromeda keys import)", ErrUnsafe, p)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, time.Time{}, fmt.Errorf("%w: %s is not a regular file", ErrUnsafe, p)
	}
	if err := safe(p, fi, 0o600); err != nil {
		return nil, time.Time{}, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, time.Time{}, err
	}
	priv, err := parseKey(b)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", p, err)
	}
	return priv, fi.ModTime(), nil
}

// safe refuses a file or directory whose mode grants more than max, or
// that another user owns, saying how to fix it.
func safe(p string, fi fs.FileInfo, max fs.FileMode) error {
	if perm := fi.Mode().Perm(); perm&^max != 0 {
		return fmt.Errorf("%w: %s has mode %04o, which lets others read or change it; want at most %04o: chmod %o %s", ErrUnsafe, p, perm, max, max, p)
	}
	if uid, mine := owner(fi); !mine {
		return fmt.Errorf("%w: %s is owned by uid %d, not by the user the node runs as (uid %d): chown %d %s, or run the node as its owner", ErrUnsafe, p, uid, os.Geteuid(), os.Geteuid(), p)
	}
	return nil
}

// Public describes target's key.
func (k *Keyring) Public(target string) (Info, error) {
	priv, created, err := k.load(target)
	if err != nil {
		return Info{}, fmt.Errorf("key %s: %w", target, err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	return Info{Target: target, KeyID: envelope.KeyID(pub), Public: pub, Created: created}, nil
}

// Signer returns target's key, to sign with.
func (k *Keyring) Signer(target string) (*Key, error) {
	priv, _, err := k.load(target)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", target, err)
	}
	return &Key{target: target, priv: priv}, nil
}

// List describes every key, by target. A key file that is refused (too
// wide a mode, another owner, not a key) fails the whole list, naming it.
// Files that are not <target>.key are left out.
func (k *Keyring) List() ([]Info, error) {
	entries, err := os.ReadDir(k.dir)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	out := []Info{}
	for _, e := range entries {
		target, ok := strings.CutSuffix(e.Name(), Ext)
		if !ok || CheckTarget(target) != nil {
			continue
		}
		info, err := k.Public(target)
		if errors.Is(err, ErrNotFound) {
			continue // removed since ReadDir
		} else if err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Target, b.Target) })
	return out, nil
}

// Remove deletes target's key. Envelopes it signed still verify with its
// public half, which the caller should keep if receivers need it.
func (k *Keyring) Remove(target string) error {
	if err := CheckTarget(target); err != nil {
		return fmt.Errorf("remove key: %w", err)
	}
	if err := os.Remove(k.path(target)); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove key %s: %w for target %s", target, ErrNotFound, target)
	} else if err != nil {
		return fmt.Errorf("remove key %s: %w", target, err)
	}
	if err := syncDir(k.dir); err != nil {
		return fmt.Errorf("remove key %s: %w", target, err)
	}
	return nil
}

// Key is one target's private key, which signs but does not show itself.
// It implements crypto.Signer, as envelope.Seal wants. Safe for
// concurrent use.
type Key struct {
	target string
	priv   ed25519.PrivateKey
}

var _ crypto.Signer = (*Key)(nil)

// Target is the target the key is for.
func (k *Key) Target() string { return k.target }

// Public returns the ed25519.PublicKey.
func (k *Key) Public() crypto.PublicKey { return k.priv.Public() }

// KeyID is envelope.KeyID of the public key.
func (k *Key) KeyID() string { return envelope.KeyID(k.priv.Public().(ed25519.PublicKey)) }

// Sign signs message with ed25519 (opts crypto.Hash(0)) or Ed25519ph (an
// *ed25519.Options saying so), as ed25519.PrivateKey.Sign does.
func (k *Key) Sign(rand io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.priv.Sign(rand, message, opts)
}

// String names the key without showing it, so a Key that reaches a log
// line or an error prints no secret.
func (k *Key) String() string { return "ed25519 key " + k.KeyID() + " for " + k.target }

// GoString is String, for %#v.
func (k *Key) GoString() string { return k.String() }
