package node_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/server"
	"github.com/andromeda-runner/andromeda/store"
)

// TestKeys: the node's key management keeps keys under <data>/keys and
// names each refusal's kind, for the server to answer with its status.
func TestKeys(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	k, err := n.CreateKey(ctx, "vault")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(n.cfg.Data, node.KeysDir)
	for p, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "vault.key"): 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, mode %v; want %04o", p, err, fi.Mode().Perm(), want)
		}
	}
	if got, err := n.Key(ctx, "vault"); err != nil || !reflect.DeepEqual(got, k) {
		t.Errorf("Key = %+v, %v; want %+v", got, err, k)
	}
	if list, err := n.Keys(ctx); err != nil || len(list) != 1 || !reflect.DeepEqual(list[0], k) {
		t.Errorf("Keys = %+v, %v; want [%+v]", list, err, k)
	}
	for _, tc := range []struct {
		name string
		call func() error
		kind error
		want string
	}{
		{"create twice", func() error { _, err := n.CreateKey(ctx, "vault"); return err }, server.ErrConflict, "has a key already"},
		{"bad name", func() error { _, err := n.CreateKey(ctx, "../x"); return err }, server.ErrInvalid, "[a-z0-9_-]"},
		{"no key", func() error { _, err := n.Key(ctx, "other"); return err }, store.ErrNotFound, "andromeda keys create other"},
		{"remove none", func() error { return n.RemoveKey(ctx, "other") }, store.ErrNotFound, "no key"},
		{"unsafe", func() error {
			os.Chmod(filepath.Join(dir, "vault.key"), 0o644)
			defer os.Chmod(filepath.Join(dir, "vault.key"), 0o600)
			_, err := n.Keys(ctx)
			return err
		}, server.ErrUnusable, "chmod 600"},
	} {
		if err := tc.call(); !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v containing %q", tc.name, err, tc.kind, tc.want)
		}
	}
	if err := n.RemoveKey(ctx, "vault"); err != nil {
		t.Fatal(err)
	}
	if list, err := n.Keys(ctx); err != nil || len(list) != 0 {
		t.Errorf("Keys after RemoveKey = %+v, %v; want none", list, err)
	}
}
