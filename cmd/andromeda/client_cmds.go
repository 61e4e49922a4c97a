package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/api"
)

func lsCmd(ctx context.Context, env *cli, args []string) error {
	var cf clientFlags
	fs := env.flagSet("ls", &cf)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return errors.New("usage: andromeda ls [--json]")
	}
	c, err := env.client(&cf)
	if err != nil {
		return err
	}
	list, err := c.Services(ctx)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(env.stdout, list)
	}
	printServices(env.stdout, list)
	return nil
}

func inspectCmd(ctx context.Context, env *cli, args []string) error {
	var cf clientFlags
	fs := env.flagSet("inspect", &cf)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: andromeda inspect NAME [--json]")
	}
	c, err := env.client(&cf)
	if err != nil {
		return err
	}
	s, err := c.Service(ctx, pos[0])
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(env.stdout, s)
	}
	printService(env.stdout, s)
	return nil
}

func fireCmd(ctx context.Context, env *cli, args []string) error {
	var cf clientFlags
	fs := env.flagSet("fire", &cf)
	input := fs.String("input", "", "JSON message to pass to the service")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: andromeda fire NAME [--input JSON] [--json]")
	}
	var msg json.RawMessage
	if *input != "" {
		if !json.Valid([]byte(*input)) {
			return errors.New("--input: must be valid JSON (quote strings: --input '\"text\"')")
		}
		msg = json.RawMessage(*input)
	}
	c, err := env.client(&cf)
	if err != nil {
		return err
	}
	r, err := c.Fire(ctx, pos[0], msg)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(env.stdout, r)
	}
	printRun(env.stdout, r)
	return nil
}

func runsCmd(ctx context.Context, env *cli, args []string) error {
	var cf clientFlags
	fs := env.flagSet("runs", &cf)
	limit := fs.Int("limit", 20, "how many runs at most, newest first (more than 1000 are read a page at a time)")
	all := fs.Bool("all", false, "every run the node keeps, instead of --limit")
	since := fs.String("since", "", "only runs started at or after this: an RFC 3339 time, or a duration before now (30m, 1h, 7d)")
	until := fs.String("until", "", "only runs started before this: an RFC 3339 time, or a duration before now")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return errors.New("usage: andromeda runs [NAME] [--limit N | --all] [--since T] [--until T] [--json]")
	}
	limitSet := false
	fs.Visit(func(f *flag.Flag) { limitSet = limitSet || f.Name == "limit" })
	if *all && limitSet {
		return errors.New("--all and --limit: give one of them")
	}
	if *limit < 1 {
		return errors.New("--limit: must be 1 or more")
	}
	now := time.Now()
	var q api.RunQuery
	if q.Since, err = parseWhen("since", *since, now); err != nil {
		return err
	}
	if q.Until, err = parseWhen("until", *until, now); err != nil {
		return err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return errors.New("--until: must be after --since")
	}
	c, err := env.client(&cf)
	if err != nil {
		return err
	}
	name := ""
	if len(pos) == 1 {
		name = pos[0]
	}
	// Follow the pages' cursors until the runs asked for are in.
	const page = 1000
	var runs []api.Run
	more := false
	for {
		q.Limit = page
		if !*all {
			q.Limit = min(page, *limit-len(runs))
		}
		l, err := c.ListRuns(ctx, name, q)
		if err != nil {
			return err
		}
		runs = append(runs, l.Runs...)
		if l.Next == "" {
			break
		}
		if !*all && len(runs) >= *limit {
			more = true
			break
		}
		q.Cursor = l.Next
	}
	if cf.json {
		if runs == nil {
			runs = []api.Run{}
		}
		err = printJSON(env.stdout, runs)
	} else {
		printRuns(env.stdout, runs)
	}
	if more {
		fmt.Fprintf(env.stderr, "more runs than these %d: see them with --limit or --all\n", len(runs))
	}
	return err
}

// parseWhen reads a --since or --until value: an RFC 3339 time, or a
// duration (Go's form, or whole days: 7d) meaning that long before now.
func parseWhen(flagName, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if days, ok := strings.CutSuffix(v, "d"); ok && err != nil {
		var n int
		if n, err = strconv.Atoi(days); err == nil {
			d = time.Duration(n) * 24 * time.Hour
		}
	}
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("--%s: must be an RFC 3339 time (2026-01-02T15:04:05Z) or a duration before now (30m, 1h, 7d)", flagName)
	}
	return now.Add(-d), nil
}

func rmCmd(ctx context.Context, env *cli, args []string) error {
	var cf clientFlags
	fs := env.flagSet("rm", &cf)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: andromeda rm NAME")
	}
	c, err := env.client(&cf)
	if err != nil {
		return err
	}
	if err := c.Remove(ctx, pos[0]); err != nil {
		return err
	}
	if cf.json {
		return printJSON(env.stdout, map[string]any{"removed": pos[0]})
	}
	fmt.Fprintf(env.stdout, "removed %s\n", pos[0])
	return nil
}

func tokenCmd(ctx context.Context, env *cli, args []string) error {
	var cf clientFlags
	fs := env.flagSet("token", &cf)
	name := fs.String("name", "", "token name (the owner of what it submits)")
	role := fs.String("role", api.RoleSubmitter, "submitter or operator")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "create" {
		return errors.New("usage: andromeda token create --name NAME [--role submitter|operator]")
	}
	c, err := env.client(&cf)
	if err != nil {
		return err
	}
	t, err := c.CreateToken(ctx, *name, *role)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(env.stdout, t)
	}
	fmt.Fprintf(env.stdout, "created %s token %q; it is shown only once:\n%s\n", t.Role, t.Name, t.Secret)
	return nil
}
