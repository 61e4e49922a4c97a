package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/store"
)

const (
	registryStream = "KV_" + bus.BucketServices
	seededServices = 11 // svc00..svc11, svc11 deleted
	seededRuns     = 300
)

// seed fills a new bus data dir the way a node would: 12 services (one
// replaced, one deleted), a token, state, an artifact and 300 runs, and
// closes the bus. It returns the dir.
func seed(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	b, err := bus.Open(ctx, bus.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := store.Open(ctx, b, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		svc := store.Service{Name: fmt.Sprintf("svc%02d", i), Version: "1.0.0", Manifest: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
		if err := s.PutService(ctx, svc); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutService(ctx, store.Service{Name: "svc00", Version: "2.0.0", Manifest: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteService(ctx, "svc11"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutToken(ctx, "hash1", store.TokenRecord{Name: "ci", Role: "submitter"}); err != nil {
		t.Fatal(err)
	}
	snap, _ := s.State(ctx, "svc01")
	if _, err := s.ApplyState(ctx, "svc01", "r000", snap, &contract.StateChange{Set: map[string]json.RawMessage{"count": json.RawMessage(`7`)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutArtifact(ctx, "sha256:abc", bytes.Repeat([]byte("archive "), 1000)); err != nil {
		t.Fatal(err)
	}
	for i := range seededRuns {
		if err := s.AppendRun(ctx, store.Run{ID: fmt.Sprintf("r%03d", i), Service: "svc01", Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// blockFile is the path of a stream's first block file under a bus data
// dir.
func blockFile(t testing.TB, dir, stream string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*", "*", "*", "streams", stream, "msgs", "1.blk"))
	if len(m) != 1 {
		t.Fatalf("block file of %s under %s: found %v", stream, dir, m)
	}
	return m[0]
}

// start does what a node does: check (and maybe repair) the files, start
// the server, open the store. It returns the store, the files report and
// the first error.
func start(t testing.TB, dir string, repair, preflight bool) (*store.Store, store.FileReport, error) {
	t.Helper()
	ctx := context.Background()
	var files store.FileReport
	if preflight {
		var err error
		if files, err = store.PrepareFiles(dir, repair); err != nil {
			return nil, files, err
		}
	}
	b, err := bus.Open(ctx, bus.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	s, err := store.Open(ctx, b, store.Config{Repair: repair, Files: files, Timeout: 5 * time.Second})
	return s, files, err
}

// scribble overwrites n bytes at frac of a file with random bytes.
func scribble(t testing.TB, path string, frac float64, n int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := int(float64(len(data)) * frac)
	r := rand.New(rand.NewPCG(1, 2))
	for i := at; i < at+n && i < len(data); i++ {
		data[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func serviceNames(t testing.TB, s *store.Store) []string {
	t.Helper()
	svcs, err := s.Services(context.Background())
	if err != nil {
		t.Fatalf("Services: %v", err)
	}
	var names []string
	for _, svc := range svcs {
		names = append(names, svc.Name)
	}
	return names
}

func runIDs(t testing.TB, s *store.Store) []string {
	t.Helper()
	runs, err := s.Runs(context.Background(), "svc01", store.MaxListRuns)
	if err != nil {
		t.Fatalf("Runs: %v", err)
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestDamageNone(t *testing.T) {
	dir := seed(t)
	s, files, err := start(t, dir, false, true)
	if err != nil {
		t.Fatal(err)
	}
	if d := files.Damaged(); len(d) != 0 {
		t.Fatalf("files of an intact store damaged: %+v", d)
	}
	rep := s.Recovery()
	if rep.Damaged() {
		t.Fatalf("Recovery of an intact store = %v", rep.Problems())
	}
	reg := rep.Stream(registryStream)
	if reg.Readable != seededServices || reg.Unreadable != 0 || reg.Undecodable != 0 || reg.Lost != 0 {
		t.Fatalf("registry report = %+v, want %d readable", reg, seededServices)
	}
	if runs := rep.Stream(bus.StreamRuns); runs.Records != seededRuns || runs.LastSeq != seededRuns {
		t.Fatalf("runs report = %+v, want %d records", runs, seededRuns)
	}
	if got := serviceNames(t, s); len(got) != seededServices {
		t.Fatalf("Services = %v", got)
	}
}

// Random bytes in the registry's block file used to make the node wait
// forever in Services. Before the server starts, PrepareFiles refuses and
// changes nothing; with an external NATS (no file check) Open refuses
// within its timeout; with repair the node starts without the unreadable
// record and keeps the ones after it.
func TestDamageRegistryRandomBytes(t *testing.T) {
	dir := seed(t)
	blk := blockFile(t, dir, registryStream)
	scribble(t, blk, 0.4, 64)
	before, _ := os.ReadFile(blk)

	t.Run("refused", func(t *testing.T) {
		_, files, err := start(t, dir, false, true)
		if !errors.Is(err, store.ErrDamaged) {
			t.Fatalf("PrepareFiles err = %v, want ErrDamaged", err)
		}
		for _, want := range []string{"registry (" + registryStream + ")", "checksum", "andromeda store check", "--repair", "andromeda store restore"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if f := files.Stream(registryStream); len(f.Damage) != 1 || f.Salvaged == 0 {
			t.Errorf("registry files = %+v, want one damaged range and records after it", f)
		}
		if after, _ := os.ReadFile(blk); !bytes.Equal(before, after) {
			t.Error("a refused start changed the block file")
		}
	})

	t.Run("no file check", func(t *testing.T) {
		dir2 := t.TempDir()
		copyDir(t, dir, dir2)
		dir := dir2
		began := time.Now()
		_, _, err := start(t, dir, false, false)
		took := time.Since(began)
		if !errors.Is(err, store.ErrDamaged) {
			t.Fatalf("Open err = %v, want ErrDamaged", err)
		}
		if took > 30*time.Second {
			t.Fatalf("Open took %v", took)
		}
		t.Logf("Open refused in %v: %v", took, err)
	})

	t.Run("repair", func(t *testing.T) {
		s, files, err := start(t, dir, true, true)
		if err != nil {
			t.Fatal(err)
		}
		if files.Quarantine == "" {
			t.Fatal("no quarantine")
		}
		if kept, err := os.ReadFile(filepath.Join(files.Quarantine, registryStream, "1.blk")); err != nil || !bytes.Equal(kept, before) {
			t.Fatalf("damaged original not kept (%v)", err)
		}
		reg := s.Recovery().Stream(registryStream)
		if len(reg.Problems) == 0 || reg.Lost == 0 || reg.Salvaged == 0 {
			t.Fatalf("registry report = %+v, want problems, lost and salvaged", reg)
		}
		names := serviceNames(t, s)
		if len(names) < seededServices-2 || len(names) >= seededServices {
			t.Fatalf("Services after repair = %v, want one or two fewer than %d", names, seededServices)
		}
		if !slices.Contains(names, "svc10") || names[0] != "svc00" {
			t.Fatalf("Services after repair = %v, want the records before and after the damage", names)
		}
		t.Logf("repaired: %v", s.Recovery().Problems())
	})

	t.Run("after repair", func(t *testing.T) {
		s, files, err := start(t, dir, false, true)
		if err != nil {
			t.Fatalf("start after a repair: %v", err)
		}
		if len(files.Damaged()) != 0 || s.Recovery().Damaged() {
			t.Fatalf("still damaged after a repair: %v", s.Recovery().Problems())
		}
	})
}

// TestDamageRegistryRandomBytesBatched is TestDamageRegistryRandomBytes
// with the registry read in batches (as for 32 services and more), so that
// a damaged record is found on that path too.
func TestDamageRegistryRandomBytesBatched(t *testing.T) {
	defer store.SetBatchReadFrom(1)()
	TestDamageRegistryRandomBytes(t)
}

// An emptied registry file used to start a node with no services and no
// word. The server's index still knows the records; with the index gone
// too, the registry's mark in the meta bucket does.
func TestDamageRegistryEmptied(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		dir := seed(t)
		if err := os.Truncate(blockFile(t, dir, registryStream), 0); err != nil {
			t.Fatal(err)
		}
		_, files, err := start(t, dir, false, true)
		if !errors.Is(err, store.ErrDamaged) || !strings.Contains(err.Error(), "missing") {
			t.Fatalf("start err = %v, want ErrDamaged saying records are missing", err)
		}
		if f := files.Stream(registryStream); f.Missing == 0 || f.IndexMsgs != seededServices+1 {
			t.Fatalf("registry files = %+v", f)
		}
	})
	t.Run("stream dir", func(t *testing.T) {
		dir := seed(t)
		if err := os.RemoveAll(filepath.Dir(filepath.Dir(blockFile(t, dir, registryStream)))); err != nil {
			t.Fatal(err)
		}
		_, _, err := start(t, dir, false, true)
		if !errors.Is(err, store.ErrDamaged) || !strings.Contains(err.Error(), "writes are missing") {
			t.Fatalf("start err = %v, want ErrDamaged saying writes are missing", err)
		}
	})
	t.Run("file and index", func(t *testing.T) {
		dir := seed(t)
		blk := blockFile(t, dir, registryStream)
		if err := os.Truncate(blk, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(filepath.Dir(blk), "index.db")); err != nil {
			t.Fatal(err)
		}
		_, _, err := start(t, dir, false, true)
		if !errors.Is(err, store.ErrDamaged) || !strings.Contains(err.Error(), "it held 12 records, now 0") {
			t.Fatalf("start err = %v, want ErrDamaged saying the registry held 12 records", err)
		}
		s, _, err := start(t, dir, true, true)
		if err != nil {
			t.Fatalf("start with repair: %v", err)
		}
		if reg := s.Recovery().Stream(registryStream); reg.Lost != seededServices+1 || len(reg.Problems) != 1 {
			t.Fatalf("registry report = %+v", reg)
		}
		if names := serviceNames(t, s); len(names) != 0 {
			t.Fatalf("Services = %v", names)
		}
		// The loss was accepted: the next start goes ahead.
		if _, _, err := start(t, dir, false, true); err != nil {
			t.Fatalf("start after the repair: %v", err)
		}
	})
}

// A runs block cut short: the node starts (runs are history), says how
// many records are gone, and lists the ones before the cut.
func TestDamageRunsCut(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(size int64) int64
	}{
		{"mid record", func(size int64) int64 { return size/2 - 7 }},
		{"record boundary", func(size int64) int64 { return size / 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := seed(t)
			blk := blockFile(t, dir, bus.StreamRuns)
			fi, _ := os.Stat(blk)
			if err := os.Truncate(blk, tc.cut(fi.Size())); err != nil {
				t.Fatal(err)
			}
			s, _, err := start(t, dir, false, true)
			if err != nil {
				t.Fatal(err)
			}
			runs := s.Recovery().Stream(bus.StreamRuns)
			ids := runIDs(t, s)
			if len(ids) < 140 || len(ids) > 150 || ids[0] != "r000" {
				t.Fatalf("runs after the cut = %d from %v, want about 150 from r000", len(ids), ids[:1])
			}
			if lost := runs.Lost; int(lost) != seededRuns-len(ids) {
				t.Fatalf("runs report lost %d, want %d: %+v", lost, seededRuns-len(ids), runs)
			}
			if len(runs.Problems) == 0 {
				t.Fatal("runs report has no problem")
			}
			t.Logf("%v", s.Recovery().Problems())
		})
	}
}

// Random bytes in the middle of the runs block: the server alone keeps
// the 100 records before them and drops the 200 after; the node keeps
// every record but the one or two overwritten.
func TestDamageRunsOverwritten(t *testing.T) {
	dir := seed(t)
	scribble(t, blockFile(t, dir, bus.StreamRuns), 1.0/3, 100)
	s, files, err := start(t, dir, false, true)
	if err != nil {
		t.Fatal(err)
	}
	if f := files.Stream(bus.StreamRuns); !f.Repaired || f.Salvaged < 190 {
		t.Fatalf("runs files = %+v, want repaired with ~200 salvaged", f)
	}
	ids := runIDs(t, s)
	t.Logf("kept %d of %d runs", len(ids), seededRuns)
	if len(ids) < seededRuns-2 || len(ids) == seededRuns || ids[len(ids)-1] != "r299" {
		t.Fatalf("runs = %d (last %s), want all but one or two", len(ids), ids[len(ids)-1])
	}
	runs := s.Recovery().Stream(bus.StreamRuns)
	if int(runs.Lost) != seededRuns-len(ids) || runs.Salvaged != files.Stream(bus.StreamRuns).Salvaged {
		t.Fatalf("runs report = %+v, want %d lost", runs, seededRuns-len(ids))
	}
	// New runs get new sequences: the lost ones are not reused.
	if err := s.AppendRun(context.Background(), store.Run{ID: "new", Service: "svc01", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	if got := runIDs(t, s); len(got) != len(ids)+1 {
		t.Fatalf("after a new run: %d runs, want %d", len(got), len(ids)+1)
	}
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if fi.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A process killed in the middle of a write leaves the last record of a
// block cut short, past what the index knew. That is a crash, not damage:
// the node starts without --repair, every intact record is there, and the
// report says a torn tail was dropped. (This refused to start in the SIGKILL
// soak: "pending: record cut short (33 of 576 bytes)".)
func TestTornTailIsNotDamage(t *testing.T) {
	dir := seed(t)
	for _, stream := range []string{registryStream, bus.StreamRuns} {
		path := blockFile(t, dir, stream)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// The first 33 bytes of a record: its header says more follows.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(data[:33])
		f.Close()
	}
	s, files, err := start(t, dir, false, true)
	if err != nil {
		t.Fatalf("start after a torn write: %v", err)
	}
	if d := files.Damaged(); len(d) != 0 {
		t.Fatalf("a torn tail reported as damage: %+v", d)
	}
	if f := files.Stream(registryStream); f.TornTail != 33 {
		t.Fatalf("registry files = %+v, want a torn tail of 33 bytes", f)
	}
	if got := serviceNames(t, s); len(got) != seededServices {
		t.Fatalf("Services = %v, want all %d", got, seededServices)
	}
	if got := runIDs(t, s); len(got) != seededRuns {
		t.Fatalf("%d runs, want all %d", len(got), seededRuns)
	}
}

// The same cut inside the index's range (a clean stop wrote the index,
// then the file lost its end) is damage: records the index knew are gone.
func TestCutInsideIndexIsDamage(t *testing.T) {
	dir := seed(t)
	path := blockFile(t, dir, registryStream)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data[:len(data)-20], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := start(t, dir, false, true); !errors.Is(err, store.ErrDamaged) {
		t.Fatalf("start with the registry's last record cut = %v, want ErrDamaged", err)
	}
}
