package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/bus"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/store"
)

// The store commands work on a stopped node's data dir, offline: each takes
// the data dir's lock (so a running node refuses to start meanwhile, and
// they refuse while a node runs) and starts its own embedded NATS server,
// with no listener, on the store.

func (env *cli) storeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Check, back up or restore a stopped node's store",
		Long: `The store commands work on a stopped node's data dir, offline: each takes
the data dir's lock, so a running node refuses to start meanwhile and they
refuse while a node runs.`,
		Example: `  andromeda store check --data /var/lib/andromeda
  andromeda store backup --data /var/lib/andromeda --out andromeda.backup
  andromeda store restore --data /var/lib/andromeda-new --in andromeda.backup`,
	}
	check := &cobra.Command{
		Use:   "check",
		Short: "Check a stopped node's store for damage",
		Long: `Check reads every stream of the store, on a copy so the data dir stays as
it is, and prints per stream the records that are readable, unreadable,
undecodable, lost and salvaged: what a node started with --repair would keep.
It exits 1 when the store is damaged, after printing the report.`,
		Example: `  andromeda store check
  andromeda store check --data /var/lib/andromeda --json`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	var checkData string
	var checkJSON bool
	addDataFlag(check, &checkData, "node data `DIR`")
	addJSONFlag(check, &checkJSON)
	check.RunE = func(cmd *cobra.Command, _ []string) error {
		return env.storeCheck(cmd.Context(), env.dataDir(checkData), checkJSON)
	}
	backup := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Back up a stopped node's store into a file",
		Long: `Backup writes every stream of the store into FILE, which must not exist.
It refuses a damaged store: see "andromeda store check".`,
		Example: `  andromeda store backup --out andromeda.backup
  andromeda store backup --data /var/lib/andromeda --out andromeda.backup`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	var backupData, out string
	addDataFlag(backup, &backupData, "node data `DIR`")
	backup.Flags().StringVar(&out, "out", "", "backup `FILE` to write (required)")
	backup.MarkFlagFilename("out")
	backup.RunE = func(cmd *cobra.Command, _ []string) error {
		if out == "" {
			return usagef("store backup: --out FILE is required")
		}
		return env.storeBackup(cmd.Context(), env.dataDir(backupData), out)
	}
	restore := &cobra.Command{
		Use:   "restore --in FILE",
		Short: "Restore a backup into an empty data dir",
		Long: `Restore reads a backup made by "andromeda store backup" into a data dir
that holds no store yet, then opens the restored store as a node would.`,
		Example:           `  andromeda store restore --data /var/lib/andromeda-new --in andromeda.backup`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	var restoreData, in string
	addDataFlag(restore, &restoreData, "node data `DIR`")
	restore.Flags().StringVar(&in, "in", "", "backup `FILE` to read (required)")
	restore.MarkFlagFilename("in")
	restore.RunE = func(cmd *cobra.Command, _ []string) error {
		if in == "" {
			return usagef("store restore: --in FILE is required")
		}
		return env.storeRestore(cmd.Context(), env.dataDir(restoreData), in)
	}
	cmd.AddCommand(check, backup, restore)
	return cmd
}

// lockStore takes the data dir for a store command.
func lockStore(data string) (*node.DataLock, error) {
	lock, err := node.LockDataDir(data)
	if errors.Is(err, node.ErrLocked) {
		return nil, fmt.Errorf("store: %w; stop the node first (the store commands work offline)", err)
	}
	return lock, err
}

// natsDir is where a node keeps its embedded server's data.
func natsDir(data string) string { return filepath.Join(data, "nats") }

// storeCheck is what `store check --json` prints.
type storeCheck struct {
	Data    string           `json:"data"`
	Damaged bool             `json:"damaged"`
	Files   store.FileReport `json:"files"`
	Store   store.Report     `json:"store"`
}

func (env *cli) storeCheck(ctx context.Context, data string, jsonOut bool) error {
	if _, err := os.Stat(filepath.Join(natsDir(data), "jetstream")); err != nil {
		return fmt.Errorf("store check: no store in %s: %w", data, err)
	}
	lock, err := lockStore(data)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	res := storeCheck{Data: data}
	if res.Files, err = store.CheckFiles(natsDir(data)); err != nil {
		return err
	}
	// The server rewrites damaged files when it starts: read a copy,
	// repaired as `serve --repair` would, so the data dir stays as it is.
	tmp, err := os.MkdirTemp("", "andromeda-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := copyTree(natsDir(data), tmp); err != nil {
		return fmt.Errorf("store check: copy the store: %w", err)
	}
	if _, err := store.RepairFiles(tmp); err != nil {
		return err
	}
	b, err := bus.Open(ctx, bus.Config{Dir: tmp, Name: "andromeda-check"})
	if err != nil {
		return err
	}
	defer b.Close()
	cfg, err := existingConfig(ctx, b)
	if err != nil {
		return err
	}
	cfg.Repair, cfg.Files = true, res.Files
	s, err := store.Open(ctx, b, cfg)
	if err != nil {
		return err
	}
	if res.Store, err = s.Check(ctx); err != nil {
		return err
	}
	res.Damaged = res.Store.Damaged()
	if jsonOut {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printStoreCheck(env.stdout, res)
	}
	if res.Damaged {
		return fmt.Errorf("the store in %s is damaged: %w", data, store.ErrDamaged)
	}
	return nil
}

func printStoreCheck(w io.Writer, res storeCheck) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tKIND\tRECORDS\tREADABLE\tUNREADABLE\tUNDECODABLE\tLOST\tSALVAGED")
	for _, s := range res.Store.Streams {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", s.Stream, s.Kind, s.Records, s.Readable, s.Unreadable, s.Undecodable, s.Lost, s.Salvaged)
	}
	tw.Flush()
	if !res.Damaged {
		fmt.Fprintf(w, "\nok: nothing lost or unreadable in %s\n", res.Data)
		return
	}
	fmt.Fprintln(w, "\nproblems:")
	for _, p := range res.Store.Problems() {
		fmt.Fprintf(w, "  %s\n", p)
	}
	fmt.Fprintf(w, `
The counts above are what a node started with --repair keeps: it drops
what is unreadable, keeps every intact record (also those after damaged
bytes) and moves the damaged files to %s.
Without --repair a node refuses to start while the registry, tokens, state
or artifacts are damaged (damaged runs are repaired and logged). Or restore
a backup into an empty data dir: andromeda store restore --data DIR --in FILE.
`, filepath.Join(natsDir(res.Data), "damaged"))
}

func (env *cli) storeBackup(ctx context.Context, data, out string) error {
	if _, err := os.Stat(filepath.Join(natsDir(data), "jetstream")); err != nil {
		return fmt.Errorf("store backup: no store in %s: %w", data, err)
	}
	lock, err := lockStore(data)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	// Starting the server on damaged files would change them: refuse.
	files, err := store.CheckFiles(natsDir(data))
	if err != nil {
		return err
	}
	if d := files.Damaged(); len(d) > 0 {
		return fmt.Errorf("store backup: damaged stream(s) %s (%s): %w; see `andromeda store check --data %s`; to keep the damaged files as they are, copy %s instead",
			strings.Join(streamNames(d), ", "), d[0].Problem(), store.ErrDamaged, data, natsDir(data))
	}
	b, err := bus.Open(ctx, bus.Config{Dir: natsDir(data), Name: "andromeda-backup"})
	if err != nil {
		return err
	}
	defer b.Close()
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("store backup: %w", err)
	}
	info, err := store.Backup(ctx, b, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out)
		return err
	}
	var msgs uint64
	for _, s := range info.Streams {
		msgs += s.Messages
	}
	fmt.Fprintf(env.stdout, "backed up %d streams, %d records, from %s to %s\n", len(info.Streams), msgs, data, out)
	return nil
}

func streamNames(v []store.StreamFiles) []string {
	var out []string
	for _, s := range v {
		out = append(out, s.Stream)
	}
	return out
}

func (env *cli) storeRestore(ctx context.Context, data, in string) error {
	f, err := os.Open(in)
	if err != nil {
		return fmt.Errorf("store restore: %w", err)
	}
	defer f.Close()
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("store restore: %w", err)
	}
	lock, err := lockStore(data)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if files, err := store.CheckFiles(natsDir(data)); err != nil {
		return err
	} else if len(files.Streams) > 0 {
		return fmt.Errorf("store restore: %s holds a store already (%d streams): restore into an empty data dir", data, len(files.Streams))
	}
	b, err := bus.Open(ctx, bus.Config{Dir: natsDir(data), Name: "andromeda-restore"})
	if err != nil {
		return err
	}
	defer b.Close()
	info, err := store.Restore(ctx, b, f)
	if err != nil {
		return err
	}
	// Open the restored store as a node would, with the limits it had.
	cfg, err := existingConfig(ctx, b)
	if err != nil {
		return err
	}
	s, err := store.Open(ctx, b, cfg)
	if err != nil {
		return fmt.Errorf("store restore: the restored store does not open: %w", err)
	}
	rep := s.Recovery()
	fmt.Fprintf(env.stdout, "restored %d streams from %s (taken %s) into %s: %d services\n",
		len(info.Streams), in, info.Created.Format("2006-01-02 15:04:05Z07:00"), data, rep.Stream("KV_"+bus.BucketServices).Readable)
	return nil
}

// existingConfig is a store config that keeps the limits the run records
// stream already has, so that opening the store to check or verify it
// does not apply the default limits (which could drop records).
func existingConfig(ctx context.Context, b *bus.Bus) (store.Config, error) {
	cfg := store.DefaultConfig()
	st, err := b.JS.Stream(ctx, bus.StreamRuns)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("store: %w", err)
	}
	c := st.CachedInfo().Config
	if c.MaxMsgsPerSubject > 0 {
		cfg.RunsPerService = c.MaxMsgsPerSubject
	}
	if c.MaxBytes > 0 {
		cfg.RunsMaxBytes = c.MaxBytes
	}
	if c.MaxMsgSize > 0 {
		cfg.MaxRunBytes = int(c.MaxMsgSize)
	}
	return cfg, nil
}

// copyTree copies the regular files under from to to, leaving out the
// quarantine of damaged files.
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			if rel == "damaged" {
				return filepath.SkipDir
			}
			return os.MkdirAll(dst, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, src); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
