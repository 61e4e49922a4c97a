package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/sandbox"
	"github.com/andromeda-runner/andromeda/sandbox/process"
	"github.com/andromeda-runner/andromeda/sandbox/sandboxtest"
)

func depsCmd(ctx context.Context, env *cli, args []string) error {
	var cf clientFlags
	fs := env.flagSet("deps", &cf)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	usage := errors.New("usage: andromeda deps ls NAME | add NAME PKG | rm NAME PKG")
	if len(pos) < 2 {
		return usage
	}
	c, err := env.client(&cf)
	if err != nil {
		return err
	}
	switch {
	case pos[0] == "ls" && len(pos) == 2:
		deps, err := c.Deps(ctx, pos[1])
		if err != nil {
			return err
		}
		if cf.json {
			return printJSON(env.stdout, deps)
		}
		if len(deps) == 0 {
			fmt.Fprintln(env.stdout, "no dependencies")
			return nil
		}
		tw := table(env.stdout)
		fmt.Fprintln(tw, "LANGUAGE\tPACKAGE\tVERSION\tFROM")
		for _, d := range deps {
			from := "manifest"
			if d.Added {
				from = "deps add"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Language, d.Name, d.Version, from)
		}
		return tw.Flush()
	case pos[0] == "add" && len(pos) == 3:
		fmt.Fprintf(env.stderr, "installing %s into %s's dependency dir…\n", pos[2], pos[1])
		if err := c.AddDep(ctx, pos[1], pos[2]); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "added %s to %s (applies from its next deploy)\n", pos[2], pos[1])
		return nil
	case pos[0] == "rm" && len(pos) == 3:
		if err := c.RemoveDep(ctx, pos[1], pos[2]); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "removed %s from %s\n", pos[2], pos[1])
		return nil
	}
	return usage
}

// conformanceCmd certifies a third-party language shim locally, through the
// process driver's real sandbox: no node is needed.
func conformanceCmd(ctx context.Context, env *cli, args []string) error {
	fs := env.flagSet("conformance", nil)
	lang := fs.String("lang", "", "node, python or exec (default: the manifest's runtime.language)")
	entry := fs.String("entry", "", "entry file (default: the manifest's runtime.entry, else index.js / main.py / run)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: andromeda conformance DIR [--lang node|python|exec] [--entry FILE]")
	}
	dir := pos[0]
	if m, err := manifest.Load(dir); err == nil {
		if *lang == "" {
			*lang = m.Runtime.Language
		}
		if *entry == "" {
			*entry = m.Runtime.Entry
		}
	}
	if *lang == "" {
		return errors.New("--lang: required when DIR has no manifest")
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
	if *entry == "" {
		*entry = process.DefaultEntry(*lang)
	}
	err = sandboxtest.Certify(ctx, sandboxtest.Kit{
		Driver: d,
		Spec: func(mode sandbox.Mode) sandbox.Spec {
			return sandbox.Spec{Service: "conformance", Dir: dir, Entry: *entry, Language: *lang, Mode: mode,
				Limits: sandbox.Limits{Memory: 256 << 20, Timeout: 10 * time.Second, Concurrency: 4}}
		},
		Started:     process.WorkersStarted,
		CancelGrace: cfg.CancelGrace,
	}, env.stdout)
	if err != nil {
		return fmt.Errorf("conformance of %s (%s): %w", dir, *lang, err)
	}
	fmt.Fprintln(env.stdout, "conformant")
	return nil
}
