package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

// completionTimeout bounds the API call behind a completion: a shell
// waits for it.
const completionTimeout = 2 * time.Second

// serviceNames completes the service NAME a command takes as its first
// argument with the names of the node's services; when the node cannot be
// reached it offers nothing, silently.
func (env *cli) serviceNames(cf *clientFlags) cobra.CompletionFunc {
	return env.firstArg(cf, func(ctx context.Context, c *api.Client) ([]cobra.Completion, error) {
		list, err := c.Services(ctx)
		out := make([]cobra.Completion, len(list))
		for i, s := range list {
			out[i] = cobra.CompletionWithDesc(s.Name, s.Version+" "+s.Status)
		}
		return out, err
	})
}

// firstArg completes a command's first argument with what names returns
// (each a completion with its description) that starts with what was
// typed; nothing, quietly, when no node answers.
func (env *cli) firstArg(cf *clientFlags, names func(context.Context, *api.Client) ([]cobra.Completion, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := env.client(cf)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		list, err := names(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, n := range list {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// addedDeps completes the PKG of `deps rm NAME PKG` with the packages added
// to NAME, after completing NAME as serviceNames does.
func (env *cli) addedDeps(cf *clientFlags) cobra.CompletionFunc {
	names := env.serviceNames(cf)
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) != 1 {
			return names(cmd, args, toComplete)
		}
		c, err := env.client(cf)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		deps, err := c.Deps(ctx, args[0])
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, d := range deps {
			if d.Added && strings.HasPrefix(d.Name, toComplete) {
				out = append(out, cobra.CompletionWithDesc(d.Name, d.Language+" "+d.Version))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// dirArgs completes the first n arguments with directories, and nothing
// after them.
func dirArgs(n int) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) < n {
			return nil, cobra.ShellCompDirectiveFilterDirs
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}

// fileArgs completes the first n arguments with files, and nothing after
// them.
func fileArgs(n int) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) < n {
			return nil, cobra.ShellCompDirectiveDefault
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}

// words completes a flag with fixed values.
func words(v ...string) cobra.CompletionFunc {
	return cobra.FixedCompletions(v, cobra.ShellCompDirectiveNoFileComp)
}

// completionExamples adds how to load the scripts to cobra's completion
// command.
func completionExamples(root *cobra.Command) {
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Example = `  source <(andromeda completion bash)
  andromeda completion zsh > "${fpath[1]}/_andromeda"
  andromeda completion fish > ~/.config/fish/completions/andromeda.fish`
		}
	}
}
