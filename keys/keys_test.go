package keys

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/envelope"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

func open(t *testing.T) *Keyring {
	t.Helper()
	k, err := Open(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestCreateModes: the directory is 0700 and key files 0600 whatever the
// umask, and nothing else is left in the directory.
func TestCreateModes(t *testing.T) {
	k := open(t)
	if m := mode(t, k.Dir()); m != 0o700 {
		t.Errorf("keyring dir mode %04o, want 0700", m)
	}
	info, err := k.Create("vault-7")
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, filepath.Join(k.Dir(), "vault-7.key")); m != 0o600 {
		t.Errorf("key file mode %04o, want 0600", m)
	}
	entries, _ := os.ReadDir(k.Dir())
	if len(entries) != 1 || entries[0].Name() != "vault-7.key" {
		t.Errorf("keyring dir holds %v, want just vault-7.key", entries)
	}
	if info.Target != "vault-7" || len(info.Public) != ed25519.PublicKeySize || info.KeyID != envelope.KeyID(info.Public) ||
		time.Since(info.Created) > time.Minute {
		t.Errorf("Create = %+v", info)
	}
	// The file is PKCS #8 PEM of the same key.
	b, _ := os.ReadFile(filepath.Join(k.Dir(), "vault-7.key"))
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key file is not a PEM PRIVATE KEY: %q", b)
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil || !priv.(ed25519.PrivateKey).Public().(ed25519.PublicKey).Equal(info.Public) {
		t.Errorf("key file holds %v, %v; want the key of %s", priv, err, info.KeyID)
	}
}

// TestCreateNeverReplaces: a second Create of a target fails and leaves
// the first key; of many concurrent Creates exactly one wins.
func TestCreateNeverReplaces(t *testing.T) {
	k := open(t)
	first, err := k.Create("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Create("a"); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "andromeda keys rm a") {
		t.Fatalf("second Create = %v, want ErrExists saying how to replace it", err)
	}
	if now, _ := k.Public("a"); now.KeyID != first.KeyID {
		t.Fatalf("key changed from %s to %s", first.KeyID, now.KeyID)
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	won, lost := 0, 0
	for range 16 {
		wg.Go(func() {
			_, err := k.Create("b")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, ErrExists):
				lost++
			default:
				t.Errorf("Create: %v", err)
			}
		})
	}
	wg.Wait()
	if won != 1 || lost != 15 {
		t.Errorf("16 concurrent Creates: %d won, %d lost; want 1 and 15", won, lost)
	}
	entries, _ := os.ReadDir(k.Dir())
	if len(entries) != 2 {
		t.Errorf("keyring dir holds %d entries, want a.key and b.key: %v", len(entries), entries)
	}
}

// TestAtomicWrite: a temporary file a crash left behind is neither a key
// nor in the way; a crash before the link leaves no key.
func TestAtomicWrite(t *testing.T) {
	k := open(t)
	// What a crash between writing the temporary file and linking it
	// leaves: a partial temporary file.
	os.WriteFile(filepath.Join(k.Dir(), ".tmp-a-123"), []byte("-----BEGIN PRIV"), 0o600)
	if _, err := k.Public("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Public after a crash mid-write = %v, want ErrNotFound", err)
	}
	list, err := k.List()
	if err != nil || len(list) != 0 {
		t.Fatalf("List = %v, %v; want no keys", list, err)
	}
	if _, err := k.Create("a"); err != nil {
		t.Fatalf("Create after a crash mid-write: %v", err)
	}
}

// TestRefusesUnsafe: a key file or directory others may read, or a link,
// is refused with how to fix it.
func TestRefusesUnsafe(t *testing.T) {
	k := open(t)
	if _, err := k.Create("a"); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(k.Dir(), "a.key")
	for _, m := range []os.FileMode{0o640, 0o604, 0o660, 0o700} {
		os.Chmod(p, m)
		for name, call := range map[string]func() error{
			"Signer": func() error { _, err := k.Signer("a"); return err },
			"Public": func() error { _, err := k.Public("a"); return err },
			"List":   func() error { _, err := k.List(); return err },
		} {
			want := fmt.Sprintf("chmod 600 %s", p)
			if err := call(); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s with mode %04o = %v, want ErrUnsafe saying %q", name, m, err, want)
			}
		}
	}
	os.Chmod(p, 0o400) // narrower is fine
	if _, err := k.Signer("a"); err != nil {
		t.Errorf("Signer with mode 0400: %v", err)
	}

	os.Symlink(p, filepath.Join(k.Dir(), "b.key"))
	if _, err := k.Signer("b"); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Signer of a link = %v, want ErrUnsafe", err)
	}

	dir := filepath.Join(t.TempDir(), "wide")
	os.Mkdir(dir, 0o755)
	os.Chmod(dir, 0o755)
	if _, err := Open(dir); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "chmod 700 "+dir) {
		t.Errorf("Open of a 0755 dir = %v, want ErrUnsafe saying chmod 700", err)
	}
}

// TestRefusesOtherOwner: a key file another user owns is refused. It needs
// root, to give the file away.
func TestRefusesOtherOwner(t *testing.T) {
	sandboxtest.Require(t, os.Geteuid() == 0, "root is needed to chown a key file to another user")
	k := open(t)
	if _, err := k.Create("a"); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(k.Dir(), "a.key")
	if err := os.Chown(p, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Signer("a"); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("Signer of another user's key file = %v, want ErrUnsafe naming the owner", err)
	}
}

func TestTargetNames(t *testing.T) {
	k := open(t)
	for _, bad := range []string{"", "Vault", "-a", "_a", "a.b", "a/b", "../x", strings.Repeat("a", 64), "a b", "é"} {
		if _, err := k.Create(bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "[a-z0-9_-]") {
			t.Errorf("Create(%q) = %v, want ErrInvalid with the rule", bad, err)
		}
		for name, call := range map[string]func() error{
			"Signer": func() error { _, err := k.Signer(bad); return err },
			"Remove": func() error { return k.Remove(bad) },
		} {
			if err := call(); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s(%q) = %v, want ErrInvalid", name, bad, err)
			}
		}
	}
	for _, good := range []string{"a", "0", "vault_7-x", strings.Repeat("a", 63)} {
		if _, err := k.Create(good); err != nil {
			t.Errorf("Create(%q): %v", good, err)
		}
	}
	// A file in the directory that is not a target's key is no key.
	os.WriteFile(filepath.Join(k.Dir(), "README"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(k.Dir(), "Bad.key"), []byte("x"), 0o600)
	list, err := k.List()
	if err != nil || len(list) != 4 || list[0].Target != "0" || list[3].Target != "vault_7-x" {
		t.Errorf("List = %+v, %v; want the 4 keys by target", list, err)
	}
}

// TestSignAndRemove: a Key seals envelopes that verify with its public
// half; after Remove the target has no key.
func TestSignAndRemove(t *testing.T) {
	k := open(t)
	info, err := k.Create("vault-7")
	if err != nil {
		t.Fatal(err)
	}
	s, err := k.Signer("vault-7")
	if err != nil {
		t.Fatal(err)
	}
	e := envelope.Envelope{Service: "bot", Version: "1", RunID: "r1", Target: "vault-7",
		Actions: []json.RawMessage{json.RawMessage(`{"amount":1}`)}, Created: time.Now()}
	sealed, err := envelope.Seal(e, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envelope.VerifyFrom(sealed.Body, info.Public); err != nil || sealed.KeyID != info.KeyID || s.KeyID() != info.KeyID {
		t.Errorf("sealed with %s: %v; want a body that verifies with %s", sealed.KeyID, err, info.KeyID)
	}
	// The key does not print itself.
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(f, s); !strings.Contains(out, info.KeyID) || len(out) > 80 {
			t.Errorf("Sprintf(%s, key) = %q, want its name only", f, out)
		}
	}
	if err := k.Remove("vault-7"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Signer("vault-7"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "andromeda keys create vault-7") {
		t.Errorf("Signer after Remove = %v, want ErrNotFound saying how to create one", err)
	}
	if err := k.Remove("vault-7"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
}

func TestImport(t *testing.T) {
	k := open(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	want := envelope.KeyID(priv.Public().(ed25519.PublicKey))
	for target, material := range map[string][]byte{"pem": pemKey, "seed": priv.Seed()} {
		info, err := k.Import(target, material)
		if err != nil || info.KeyID != want {
			t.Errorf("Import(%s) = %+v, %v; want key %s", target, info, err, want)
		}
	}
	if _, err := k.Import("pem", pemKey); !errors.Is(err, ErrExists) {
		t.Errorf("Import over a key = %v, want ErrExists", err)
	}
	for name, bad := range map[string][]byte{
		"short":      []byte("abc"),
		"other PEM":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}),
		"two blocks": append(bytes.Clone(pemKey), pemKey...),
		"not PKCS8":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
	} {
		if _, err := k.Import("x", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Import(%s) = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := k.Public("x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused Import left a key: %v", err)
	}
}

// TestOpenSSL: the key file is what OpenSSL reads, and a key OpenSSL made
// imports.
func TestOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	sandboxtest.Require(t, err == nil, "openssl is needed to check the key file format")
	k := open(t)
	info, err := k.Create("a")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "pkey", "-in", filepath.Join(k.Dir(), "a.key"), "-pubout", "-outform", "DER").Output()
	if err != nil {
		t.Fatalf("openssl pkey: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(out)
	if err != nil || !info.Public.Equal(pub) {
		t.Errorf("openssl reads public key %v, %v; want %x", pub, err, info.Public)
	}
	gen := filepath.Join(t.TempDir(), "gen.pem")
	if out, err := exec.Command(openssl, "genpkey", "-algorithm", "ed25519", "-out", gen).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(gen)
	if _, err := k.Import("b", b); err != nil {
		t.Errorf("Import of openssl's key: %v", err)
	}
}

var _ crypto.Signer = (*Key)(nil)

// BenchmarkSigner is what the node pays per envelope to load a target's
// key from its file.
func BenchmarkSigner(b *testing.B) {
	k, err := Open(filepath.Join(b.TempDir(), "keys"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := k.Create("a"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := k.Signer("a"); err != nil {
			b.Fatal(err)
		}
	}
}
