package store_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/store"
)

// A node's services, state, tokens, artifacts and runs survive a backup
// restored into a new data dir.
func TestBackupRestore(t *testing.T) {
	ctx := context.Background()
	from, err := bus.Open(ctx, bus.Config{Dir: seed(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close()
	var backup bytes.Buffer
	info, err := store.Backup(ctx, from, &backup)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Streams) < 7 {
		t.Fatalf("backup holds %d streams: %+v", len(info.Streams), info.Streams)
	}

	to, err := bus.Open(ctx, bus.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer to.Close()
	if _, err := store.Restore(ctx, to, bytes.NewReader(backup.Bytes())); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(ctx, to, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if rep := s.Recovery(); rep.Damaged() {
		t.Fatalf("restored store damaged: %v", rep.Problems())
	}
	if names := serviceNames(t, s); len(names) != seededServices || names[0] != "svc00" {
		t.Fatalf("restored services = %v", names)
	}
	if svc, err := s.Service(ctx, "svc00"); err != nil || svc.Version != "2.0.0" {
		t.Fatalf("restored svc00 = %+v, %v", svc, err)
	}
	if snap, err := s.State(ctx, "svc01"); err != nil || string(snap.Values["count"]) != "7" {
		t.Fatalf("restored state = %+v, %v", snap, err)
	}
	if tok, err := s.Token(ctx, "hash1"); err != nil || tok.Name != "ci" {
		t.Fatalf("restored token = %+v, %v", tok, err)
	}
	if a, err := s.Artifact(ctx, "sha256:abc"); err != nil || !bytes.Equal(a, bytes.Repeat([]byte("archive "), 1000)) {
		t.Fatalf("restored artifact: %d bytes, %v", len(a), err)
	}
	if ids := runIDs(t, s); len(ids) != seededRuns || ids[0] != "r000" || ids[seededRuns-1] != "r299" {
		t.Fatalf("restored runs = %d", len(ids))
	}
	rep, err := s.Check(ctx)
	if err != nil || rep.Damaged() {
		t.Fatalf("Check of the restored store = %v, %v", rep.Problems(), err)
	}

	// A second restore over the first is refused.
	if _, err := store.Restore(ctx, to, bytes.NewReader(backup.Bytes())); err == nil || !strings.Contains(err.Error(), "exist already") {
		t.Fatalf("restore over a store: err = %v", err)
	}
	if _, err := store.Restore(ctx, to, strings.NewReader("not a tar")); err == nil || errors.Is(err, store.ErrDamaged) {
		t.Fatalf("restore of junk: err = %v", err)
	}
}
