package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

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
	limit := fs.Int("limit", 20, "how many runs, 1 to 1000")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return errors.New("usage: andromeda runs [NAME] [--limit N] [--json]")
	}
	if *limit < 1 || *limit > 1000 {
		return errors.New("--limit: must be from 1 to 1000")
	}
	c, err := env.client(&cf)
	if err != nil {
		return err
	}
	name := ""
	if len(pos) == 1 {
		name = pos[0]
	}
	runs, err := c.Runs(ctx, name, *limit)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(env.stdout, runs)
	}
	printRuns(env.stdout, runs)
	return nil
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
