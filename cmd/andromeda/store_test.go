package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// runStore runs `andromeda store ARGS`.
func runStore(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	return runCLI(t, env, append([]string{"store"}, args...)...)
}

// seedStore makes a node data dir whose store holds 3 services and 20
// runs, the bus stopped.
func seedStore(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	data := t.TempDir()
	b, err := bus.Open(ctx, bus.Config{Dir: natsDir(data)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := store.Open(ctx, b, store.Config{RunsPerService: 5000})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"alpha", "beta", "gamma"} {
		if err := s.PutService(ctx, store.Service{Name: n, Version: "1.0.0", Manifest: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if err := s.AppendRun(ctx, store.Run{ID: fmt.Sprintf("r%02d", i), Service: "alpha", Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	return data
}

// golden compares out, with data dir and times made constant, to
// testdata/name.
func golden(t *testing.T, name, data, out string) {
	t.Helper()
	out = strings.ReplaceAll(out, data, "DATA")
	out = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`).ReplaceAllString(out, "TIME")
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if out != string(want) {
		t.Errorf("output differs from %s (run with -update to accept):\n%s", path, out)
	}
}

func TestStoreCheck(t *testing.T) {
	data := seedStore(t)
	env := map[string]string{"ANDROMEDA_DATA": data}
	out, _, err := runStore(t, env, "check")
	if err != nil {
		t.Fatalf("check of an intact store: %v\n%s", err, out)
	}
	golden(t, "store_check_ok.golden", data, out)

	blk, _ := filepath.Glob(filepath.Join(natsDir(data), "jetstream", "*", "*", "streams", "KV_"+bus.BucketServices, "msgs", "1.blk"))
	if len(blk) != 1 {
		t.Fatalf("registry block: %v", blk)
	}
	b, err := os.ReadFile(blk[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)/2+16; i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(blk[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = runStore(t, env, "check")
	if !errors.Is(err, store.ErrDamaged) {
		t.Fatalf("check of a damaged store: err = %v, want ErrDamaged\n%s", err, out)
	}
	golden(t, "store_check_damaged.golden", data, out)
	if after, _ := os.ReadFile(blk[0]); string(after) != string(b) {
		t.Fatal("check changed the data dir")
	}

	out, _, err = runStore(t, env, "check", "--json")
	var res storeCheck
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil || !errors.Is(err, store.ErrDamaged) {
		t.Fatalf("check --json: %v, %v\n%s", jerr, err, out)
	}
	if reg := res.Store.Stream("KV_" + bus.BucketServices); !res.Damaged || reg.Readable != 2 || reg.Lost != 1 {
		t.Fatalf("check --json: damaged %v, registry %+v", res.Damaged, reg)
	}

	lock, err := node.LockDataDir(data)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	if _, _, err := runStore(t, env, "check"); !errors.Is(err, node.ErrLocked) || !strings.Contains(err.Error(), "stop the node") {
		t.Fatalf("check of a locked data dir: err = %v", err)
	}
}

func TestStoreBackupRestore(t *testing.T) {
	data := seedStore(t)
	file := filepath.Join(t.TempDir(), "backup.tar")
	out, _, err := runStore(t, nil, "backup", "--data", data, "--out", file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "backed up 15 streams") {
		t.Errorf("backup said %q", out)
	}
	if _, _, err := runStore(t, nil, "backup", "--data", data, "--out", file); err == nil {
		t.Error("backup over an existing file went ahead")
	}
	to := filepath.Join(t.TempDir(), "restored")
	out, _, err = runStore(t, nil, "restore", "--data", to, "--in", file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "3 services") {
		t.Errorf("restore said %q", out)
	}
	if _, _, err := runStore(t, nil, "restore", "--data", to, "--in", file); err == nil || !strings.Contains(err.Error(), "empty data dir") {
		t.Errorf("restore over a store: err = %v", err)
	}
	// The restored store keeps the runs stream's own limits.
	out, _, err = runStore(t, nil, "check", "--data", to, "--json")
	var res storeCheck
	if jerr := json.Unmarshal([]byte(out), &res); err != nil || jerr != nil {
		t.Fatalf("check of the restored store: %v, %v", err, jerr)
	}
	if runs := res.Store.Stream(bus.StreamRuns); runs.Records != 20 || runs.Readable != 20 {
		t.Fatalf("restored runs = %+v", runs)
	}
}
