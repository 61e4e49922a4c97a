package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

// remotePath splits NAME:/PATH, a path in a service's volumes; ok is false
// for a local path.
func remotePath(s string) (service, p string, ok bool) {
	name, rest, found := strings.Cut(s, ":")
	if !found || name == "" || !strings.HasPrefix(rest, "/") || strings.ContainsAny(name, `/\`) {
		return "", "", false
	}
	return name, rest, true
}

func (env *cli) cpCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy files into and out of a service's volumes",
		Long: `Cp copies a file between this machine and a volume of a service: one of
SRC and DST is NAME:/PATH, a path at or under one of the service's volume
paths (see andromeda files NAME), the other a local path, or - for
standard input or output.

Copying out: a file is written to DST, or into DST when it is a
directory; a directory (NAME:/out/) is copied with what it holds into DST
(created if missing); links and special files in it are skipped.
Copying in: a file is written to PATH, replacing a file there and
creating the directories above it; it may take at most the volume's free
space (413 otherwise). A path that leaves its volume ('..', or a symbolic
link in the volume that points out) is refused. A submitter reaches only
its own services.`,
		Example: `  andromeda cp report:/out/summary.csv ./summary.csv
  andromeda cp report:/out/ ./results
  andromeda cp ./seed.json report:/out/seed.json
  andromeda cp report:/out/log.txt - | tail`,
		Args: wantArgs(2, 2),
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := env.client(cf)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		srcSvc, srcPath, srcRemote := remotePath(args[0])
		dstSvc, dstPath, dstRemote := remotePath(args[1])
		switch {
		case srcRemote == dstRemote:
			return &usageError{err: fmt.Errorf("one of SRC and DST must be NAME:/PATH, the other a local path"), cmd: cmd}
		case srcRemote:
			return env.copyOut(ctx, c, cf, srcSvc, srcPath, args[1])
		}
		return env.copyIn(ctx, c, cf, args[0], dstSvc, dstPath, cmd.InOrStdin())
	}
	return cmd
}

// copyOut copies the file or directory at service:p to the local dst.
func (env *cli) copyOut(ctx context.Context, c *api.Client, cf *clientFlags, service, p, dst string) error {
	if dst == "-" {
		_, err := c.GetFile(ctx, service, p, env.stdout)
		return err
	}
	l, err := c.ListFiles(ctx, service, p)
	if err != nil {
		if _, ok := err.(*api.Error); ok {
			return err
		}
		// A file: into dst, or into the directory dst.
		if fi, serr := os.Stat(dst); serr == nil && fi.IsDir() || strings.HasSuffix(dst, string(os.PathSeparator)) {
			dst = filepath.Join(dst, path.Base(p))
		}
		n, err := getTo(ctx, c, service, p, dst)
		if err != nil {
			return err
		}
		return env.copied(cf, []api.FileInfo{{Path: p, Name: path.Base(p), Type: "file", Size: n}}, dst)
	}
	var done []api.FileInfo
	var walk func(l api.Listing, into string) error
	walk = func(l api.Listing, into string) error {
		if l.Truncated {
			// A copy missing entries would look whole.
			return fmt.Errorf("%s holds %d entries, more than the node lists (%d): copy its subdirectories or files one by one", l.Path, l.Total, len(l.Entries))
		}
		if err := os.MkdirAll(into, 0o755); err != nil {
			return err
		}
		for _, e := range l.Entries {
			target := filepath.Join(into, e.Name)
			switch e.Type {
			case "dir":
				sub, err := c.ListFiles(ctx, service, e.Path)
				if err != nil {
					return err
				}
				if err := walk(sub, target); err != nil {
					return err
				}
			case "file":
				n, err := getTo(ctx, c, service, e.Path, target)
				if err != nil {
					return err
				}
				e.Size = n
				done = append(done, e)
			default:
				fmt.Fprintf(env.stderr, "skipped %s: a %s\n", e.Path, e.Type)
			}
		}
		return nil
	}
	if err := walk(l, dst); err != nil {
		return err
	}
	return env.copied(cf, done, dst)
}

// getTo writes the file service:p to the local file dst, replacing it only
// once the whole file arrived.
func getTo(ctx context.Context, c *api.Client, service, p, dst string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".andromeda-cp-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := c.GetFile(ctx, service, p, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	return n, os.Rename(tmp.Name(), dst)
}

// copyIn copies the local file src (- for stdin) to service:p.
func (env *cli) copyIn(ctx context.Context, c *api.Client, cf *clientFlags, src, service, p string, stdin io.Reader) error {
	var r io.Reader = stdin
	size := int64(-1)
	if src != "-" {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return fmt.Errorf("%s is a directory: copy its files one by one", src)
		}
		if strings.HasSuffix(p, "/") {
			p += filepath.Base(src)
		}
		r, size = f, fi.Size()
	}
	info, err := c.PutFile(ctx, service, p, r, size)
	if err != nil {
		return err
	}
	return env.copied(cf, []api.FileInfo{info}, service+":"+info.Path)
}

func (env *cli) copied(cf *clientFlags, files []api.FileInfo, to string) error {
	if cf.json {
		if files == nil {
			files = []api.FileInfo{}
		}
		return printJSON(env.stdout, files)
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	fmt.Fprintf(env.stdout, "copied %d file(s), %d bytes, to %s\n", len(files), total, to)
	return nil
}

func (env *cli) filesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "files NAME[:/PATH]",
		Short: "List a service's volumes, or the files in one",
		Long: `Files lists the volumes of service NAME with their paths, sizes and what
each holds now (files count in whole 4 KiB blocks, every other entry one
block), or, with a path, the entries of that directory of a volume. With
--rm it removes the file or directory (and what it holds) at the path
instead; a volume's own directory cannot be removed.`,
		Example: `  andromeda files report
  andromeda files report:/out
  andromeda files report:/out/old.csv --rm`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	rm := cmd.Flags().Bool("rm", false, "remove the file or directory at the path")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		service, p, hasPath := remotePath(args[0])
		if !hasPath {
			service = strings.TrimSuffix(args[0], ":")
		}
		switch {
		case *rm && !hasPath:
			return &usageError{err: fmt.Errorf("--rm needs NAME:/PATH"), cmd: cmd}
		case *rm:
			c, err := env.client(cf)
			if err != nil {
				return err
			}
			if err := c.RemoveFile(cmd.Context(), service, p); err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "removed %s:%s\n", service, p)
			return nil
		case !hasPath:
			return ask(env, cf, func(c *api.Client) ([]api.Volume, error) { return c.Volumes(cmd.Context(), service) }, printVolumes)
		}
		return ask(env, cf, func(c *api.Client) (api.Listing, error) { return c.ListFiles(cmd.Context(), service, p) }, printListing)
	}
	return cmd
}

func printVolumes(w io.Writer, vols []api.Volume) {
	if len(vols) == 0 {
		fmt.Fprintln(w, "no volumes")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPATH\tSIZE\tUSED")
	for _, v := range vols {
		used := "?"
		if v.Used >= 0 {
			used = fmt.Sprint(v.Used)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", v.Name, v.Path, v.Size, used)
	}
	tw.Flush()
}

func printListing(w io.Writer, l api.Listing) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tSIZE\tMODIFIED\tNAME")
	for _, e := range l.Entries {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", e.Type, e.Size, e.Modified.Local().Format(time.DateTime), e.Name)
	}
	tw.Flush()
	if l.Truncated {
		fmt.Fprintf(w, "(the first %d of %d entries, by name)\n", len(l.Entries), l.Total)
	}
}
