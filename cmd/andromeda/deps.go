package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

func (env *cli) depsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deps",
		Short: "A process service's own dependencies",
		Long: `Deps lists, adds and removes the packages of a process service (Node.js
or Python): those its package.json or requirements.txt name, and those added
here, which are installed into the service's own dependency directory and
apply from its next deploy.`,
		Example: `  andromeda deps ls uptime-node
  andromeda deps add uptime-node left-pad@1.3.0
  andromeda deps rm uptime-node left-pad`,
	}
	ls := &cobra.Command{
		Use:   "ls NAME",
		Short: "List a process service's dependencies",
		Example: `  andromeda deps ls uptime-node
  andromeda deps ls digest-python --json`,
		Args: wantArgs(1, 1),
	}
	lsFlags := addClientFlags(ls)
	ls.ValidArgsFunction = env.serviceNames(lsFlags)
	ls.RunE = func(cmd *cobra.Command, args []string) error {
		return env.depsList(cmd.Context(), lsFlags, args[0])
	}
	add := &cobra.Command{
		Use:   "add NAME PKG",
		Short: "Install a package into a process service's dependency dir",
		Long: `Add installs a package (npm or pip syntax, a version may follow) into the
service's own dependency directory. It applies from the service's next
deploy.`,
		Example: `  andromeda deps add uptime-node left-pad@1.3.0
  andromeda deps add digest-python requests==2.32.3`,
		Args: wantArgs(2, 2),
	}
	addFlags := addClientFlags(add)
	add.ValidArgsFunction = env.serviceNames(addFlags)
	add.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := env.client(addFlags)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stderr, "installing %s into %s's dependency dir…\n", args[1], args[0])
		if err := c.AddDep(cmd.Context(), args[0], args[1]); err != nil {
			return err
		}
		if addFlags.json {
			return printJSON(env.stdout, map[string]string{"service": args[0], "added": args[1]})
		}
		fmt.Fprintf(env.stdout, "added %s to %s (applies from its next deploy)\n", args[1], args[0])
		return nil
	}
	rm := &cobra.Command{
		Use:     "rm NAME PKG",
		Short:   "Remove a package added with deps add",
		Example: `  andromeda deps rm uptime-node left-pad`,
		Args:    wantArgs(2, 2),
	}
	rmFlags := addClientFlags(rm)
	rm.ValidArgsFunction = env.addedDeps(rmFlags)
	rm.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := env.client(rmFlags)
		if err != nil {
			return err
		}
		if err := c.RemoveDep(cmd.Context(), args[0], args[1]); err != nil {
			return err
		}
		if rmFlags.json {
			return printJSON(env.stdout, map[string]string{"service": args[0], "removed": args[1]})
		}
		fmt.Fprintf(env.stdout, "removed %s from %s\n", args[1], args[0])
		return nil
	}
	cmd.AddCommand(ls, add, rm)
	return cmd
}

func (env *cli) depsList(ctx context.Context, cf *clientFlags, name string) error {
	return ask(env, cf, func(c *api.Client) ([]api.Dep, error) { return c.Deps(ctx, name) }, printDeps)
}

func printDeps(w io.Writer, deps []api.Dep) {
	if len(deps) == 0 {
		fmt.Fprintln(w, "no dependencies")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "LANGUAGE\tPACKAGE\tVERSION\tFROM")
	for _, d := range deps {
		from := "manifest"
		if d.Added {
			from = "deps add"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Language, d.Name, d.Version, from)
	}
	tw.Flush()
}

func (env *cli) conformanceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "conformance DIR",
		Short: "Certify a language shim against the runtime protocol",
		Long: `Conformance certifies a third-party language shim locally, through the
process driver's real sandbox (no node is needed): it deploys the guest in
DIR in server and command mode and runs the protocol's cases against it,
then speaks the protocol with one worker directly (cancel, log, bad_input,
unknown messages, max_line, end of input, shutdown, init errors, protocol
version), printing one line per check ("ok", or "FAIL" with what failed)
and "conformant" when all pass: 40 checks, listed in
docs/runtime-protocol.md with the guest operations DIR must implement. It
needs what the process driver needs: root or user namespaces, and cgroups.`,
		Example: `  andromeda conformance ./my-shim --lang node
  andromeda conformance ./my-service --json`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: dirArgs(1),
	}
	var asJSON bool
	lang := cmd.Flags().String("lang", "", "guest language `LANG`: node, python or exec (default: the manifest's runtime.language)")
	entry := cmd.Flags().String("entry", "", "entry `FILE` (default: the manifest's runtime.entry, else index.js / main.py / run)")
	addJSONFlag(cmd, &asJSON)
	cmd.RegisterFlagCompletionFunc("lang", words("node", "python", "exec"))
	cmd.MarkFlagFilename("entry")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return env.conformance(cmd.Context(), args[0], *lang, *entry, asJSON)
	}
	return cmd
}

// conformance certifies the shim in dir: no node is needed.
func (env *cli) conformance(ctx context.Context, dir, lang, entry string, asJSON bool) error {
	if m, err := manifest.Load(dir); err == nil {
		if lang == "" {
			lang = m.Runtime.Language
		}
		if entry == "" {
			entry = m.Runtime.Entry
		}
	}
	if lang == "" {
		return usagef("--lang: required when DIR has no manifest")
	}
	work, err := os.MkdirTemp("", "andromeda-conformance-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	cfg := process.DefaultConfig()
	cfg.WorkDir = work
	cfg.Logger = slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d := process.New(cfg)
	defer d.Close()
	if err := d.Test(ctx); err != nil {
		return fmt.Errorf("the process driver cannot run here: %w", err)
	}
	if entry == "" {
		entry = process.DefaultEntry(lang)
	}
	rep := &conformanceReport{Dir: dir, Language: lang, Entry: entry, Checks: []conformanceCheck{}}
	err = sandboxtest.Certify(ctx, sandboxtest.Kit{
		Driver:      d,
		Spec:        process.ConformanceSpec(dir, lang, entry),
		Started:     process.WorkersStarted,
		CancelGrace: cfg.CancelGrace,
	}, func(c sandboxtest.Check) {
		if !asJSON {
			io.WriteString(env.stdout, c.String())
			return
		}
		rep.Checks = append(rep.Checks, conformanceCheck{
			Name: c.Name, OK: c.OK, Failed: strings.Join(c.Failed, "; "),
			TookMS: float64(c.Took) / float64(time.Millisecond), Notes: c.Notes,
		})
	})
	if err != nil {
		err = fmt.Errorf("conformance of %s (%s): %w", dir, lang, err)
	}
	if asJSON {
		rep.Conformant = err == nil
		if err != nil {
			rep.Error = err.Error()
		}
		if jerr := printJSON(env.stdout, rep); jerr != nil {
			return jerr
		}
		return err
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, "conformant")
	return nil
}

// conformanceReport is what `conformance --json` prints.
type conformanceReport struct {
	Dir        string             `json:"dir"`
	Language   string             `json:"language"`
	Entry      string             `json:"entry"`
	Conformant bool               `json:"conformant"`
	Checks     []conformanceCheck `json:"checks"`
	Error      string             `json:"error,omitempty"` // which checks failed
}

// conformanceCheck is one case of the certification in one mode.
type conformanceCheck struct {
	Name   string   `json:"name"` // mode/case, as server/echo
	OK     bool     `json:"ok"`
	Failed string   `json:"failed,omitempty"` // what failed
	TookMS float64  `json:"took_ms"`
	Notes  []string `json:"notes,omitempty"`
}
