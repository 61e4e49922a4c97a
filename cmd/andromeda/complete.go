package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// completionTimeout bounds the API call behind a completion: a shell
// waits for it.
const completionTimeout = 2 * time.Second

// serviceNames completes the service NAME a command takes as its first
// argument with the names of the node's services; when the node cannot be
// reached it offers nothing, silently.
func (env *cli) serviceNames(cf *clientFlags) cobra.CompletionFunc {
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
		list, err := c.Services(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, s := range list {
			if strings.HasPrefix(s.Name, toComplete) {
				out = append(out, cobra.CompletionWithDesc(s.Name, s.Version+" "+s.Status))
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
