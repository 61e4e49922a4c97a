package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/envelope"
	"github.com/andromeda-runner/andromeda/keys"
	"github.com/andromeda-runner/andromeda/node"
)

// TestKeysCLI: andromeda keys create, list, show and rm against a real
// node, as text and JSON; the key lands in the node's keyring and signs
// envelopes that verify with the public key the CLI printed; refusals come
// back with their words and exit codes; import writes into the data dir.
func TestKeysCLI(t *testing.T) {
	_, env := startNode(t, nil)
	out, stderr, err := runCLI(t, env, "keys", "create", "vault-7")
	if err != nil || !strings.Contains(out, "created key ") || !strings.Contains(out, "for vault-7") {
		t.Fatalf("keys create: %v\n%s%s", err, out, stderr)
	}
	out, _, err = runCLI(t, env, "keys", "create", "vault-8", "--json")
	var created api.Key
	if err != nil || json.Unmarshal([]byte(out), &created) != nil || created.Target != "vault-8" || len(created.KeyID) != 16 {
		t.Fatalf("keys create --json: %v\n%s", err, out)
	}

	// The public key is printed in base64, as in an envelope.
	pub64 := base64.StdEncoding.EncodeToString(created.PublicKey)
	if !strings.Contains(out, `"public_key": "`+pub64+`"`) || len(created.PublicKey) != ed25519.PublicKeySize {
		t.Fatalf("keys create --json: public key %x, want 32 bytes in base64\n%s", created.PublicKey, out)
	}

	// The key is in the data dir, 0600, and signs what verifies with the
	// public key shown.
	ringDir := filepath.Join(env["ANDROMEDA_DATA"], node.KeysDir)
	fi, err := os.Stat(filepath.Join(ringDir, "vault-8.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("vault-8.key: %v, mode %v; want 0600", err, fi.Mode())
	}
	ring, err := keys.Open(ringDir)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ring.Signer("vault-8")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := envelope.Seal(envelope.Envelope{Service: "s", Version: "1", RunID: "r", Target: "vault-8",
		Actions: []json.RawMessage{[]byte(`{"amount":1}`)}, Created: time.Now()}, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envelope.VerifyFrom(sealed.Body, created.PublicKey); err != nil {
		t.Fatalf("an envelope signed with vault-8's key does not verify with the public key keys create printed: %v", err)
	}

	out, _, err = runCLI(t, env, "keys", "list")
	if err != nil || !strings.Contains(out, "TARGET") || !strings.Contains(out, "vault-7") ||
		!strings.Contains(out, created.KeyID) || !strings.Contains(out, pub64) {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "keys", "ls", "--json")
	var list []api.Key
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[0].Target != "vault-7" || !reflect.DeepEqual(list[1], created) {
		t.Fatalf("keys ls --json: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "__complete", "keys", "show", "vault-")
	if err != nil || !strings.Contains(out, "vault-7\tkey ") || !strings.Contains(out, "vault-8\tkey "+created.KeyID) {
		t.Fatalf("completing keys show: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "keys", "show", "vault-8")
	if err != nil || !strings.Contains(out, "Key ID:") || !strings.Contains(out, created.KeyID) || !strings.Contains(out, pub64) {
		t.Fatalf("keys show: %v\n%s", err, out)
	}

	// Refusals: an existing key, a bad name, a missing key, a submitter.
	for _, tc := range []struct {
		args []string
		want string
		exit int
	}{
		{[]string{"keys", "create", "vault-7"}, "has a key already", 1},
		{[]string{"keys", "create", "Vault"}, "[a-z0-9_-]", 1},
		{[]string{"keys", "show", "nope"}, "andromeda keys create nope", 1},
		{[]string{"keys", "rm", "nope"}, "no key", 1},
		{[]string{"keys", "show"}, "keys show takes 1 argument", 2},
	} {
		_, _, err := runCLI(t, env, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != tc.exit {
			t.Errorf("%s: %v (exit %d), want %q and exit %d", strings.Join(tc.args, " "), err, exitCode(err), tc.want, tc.exit)
		}
	}
	var ae *api.Error
	if _, _, err := runCLI(t, env, "keys", "create", "Vault"); !errors.As(err, &ae) || ae.Status != 400 {
		t.Errorf("keys create of a bad name: %v, want a 400", err)
	}
	out, _, err = runCLI(t, env, "token", "create", "--name", "alice")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	sub := map[string]string{"ANDROMEDA_ADDR": env["ANDROMEDA_ADDR"], "ANDROMEDA_TOKEN": lines[len(lines)-1]}
	for _, args := range [][]string{{"keys", "list"}, {"keys", "create", "x"}, {"keys", "show", "vault-7"}, {"keys", "rm", "vault-7"}} {
		if _, _, err := runCLI(t, sub, args...); err == nil || exitCode(err) != 4 {
			t.Errorf("%s as a submitter: %v (exit %d), want 403 and exit 4", strings.Join(args, " "), err, exitCode(err))
		}
	}

	out, _, err = runCLI(t, env, "keys", "rm", "vault-7")
	if err != nil || !strings.Contains(out, "removed the key for vault-7") {
		t.Fatalf("keys rm: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(ringDir, "vault-7.key")); !os.IsNotExist(err) {
		t.Errorf("vault-7.key after rm: %v, want it gone", err)
	}
	if _, _, err := runCLI(t, env, "keys", "show", "vault-7"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("keys show after rm: %v, want a 404", err)
	}

	// Import, offline, into the data dir; the node lists it at once.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	file := filepath.Join(t.TempDir(), "k.pem")
	os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	want := envelope.KeyID(priv.Public().(ed25519.PublicKey))
	out, _, err = runCLI(t, env, "keys", "import", "vault-7", file)
	if err != nil || !strings.Contains(out, "imported key "+want+" for vault-7") {
		t.Fatalf("keys import: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, env, "keys", "show", "vault-7", "--json")
	var shown api.Key
	if err != nil || json.Unmarshal([]byte(out), &shown) != nil || shown.KeyID != want {
		t.Fatalf("keys show of the imported key: %v\n%s\nwant key id %s", err, out, want)
	}
	if _, _, err := runCLI(t, env, "keys", "import", "vault-7", file); err == nil || !strings.Contains(err.Error(), "has a key already") {
		t.Errorf("second import: %v, want a refusal", err)
	}
	missing := filepath.Join(t.TempDir(), "typo")
	if _, _, err := runCLI(t, env, "keys", "import", "vault-9", file, "--data", missing); err == nil || !strings.Contains(err.Error(), "no node data dir") {
		t.Errorf("import into a data dir that does not exist: %v, want a refusal", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("import made %s: %v", missing, err)
	}

	// A key file others may read is refused, saying how to fix it.
	os.Chmod(filepath.Join(ringDir, "vault-8.key"), 0o644)
	if _, _, err := runCLI(t, env, "keys", "list"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("keys list with a 0644 key file: %v, want the chmod to run", err)
	}
}
