package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
)

// secretChange is what secrets set and rm print with --json.
type secretChange struct {
	Name   string `json:"name"`
	Action string `json:"action"` // set or removed
}

func (env *cli) secretsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "Manage the secrets webhooks are checked with",
		Long: `Secrets are the values webhooks (http triggers) are checked with: a
manifest names a secret (auth: {bearer: NAME} or {hmac: {secret: NAME,
...}}), never its value. A secret is held in the node config (secrets:
{NAME: VALUE}) or set at run time with andromeda secrets set, which takes
effect for the next request, without a restart. The config wins: a name
it holds cannot be set or removed here. Operator only.`,
		Example: `  printf %s "$GITHUB_WEBHOOK_SECRET" | andromeda secrets set github
  andromeda secrets set stripe --from-file stripe.key
  andromeda secrets list
  andromeda secrets rm github`,
	}

	list := &cobra.Command{
		Use:               "list",
		Aliases:           []string{"ls"},
		Short:             "List the secrets' names and where each is held, never their values",
		Example:           "  andromeda secrets list\n  andromeda secrets list --json",
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	lcf := addClientFlags(list)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		return ask(env, lcf, func(c *api.Client) ([]api.Secret, error) {
			s, err := c.Secrets(cmd.Context())
			if s == nil {
				s = []api.Secret{}
			}
			return s, err
		}, printSecrets)
	}

	set := &cobra.Command{
		Use:   "set NAME",
		Short: "Set a secret's value, read from standard input or a file",
		Long: `Set sets the secret NAME ([a-z0-9_-]{1,64}) to a value read from standard
input, or from the file --from-file names, never from the command line,
where other users and the shell's history could read it. One trailing
newline is dropped (echo adds one); the value must not be empty and is
at most 64 KiB. Webhooks naming the secret use it from their next
request.`,
		Example: `  printf %s "$SECRET" | andromeda secrets set deploy-token
  andromeda secrets set github --from-file github.key`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	scf := addClientFlags(set)
	from := set.Flags().String("from-file", "", "read the value from `FILE` instead of standard input")
	set.RunE = func(cmd *cobra.Command, args []string) error {
		value, err := readSecret(cmd.InOrStdin(), *from)
		if err != nil {
			return err
		}
		return ask(env, scf, func(c *api.Client) (secretChange, error) {
			return secretChange{args[0], "set"}, c.SetSecret(cmd.Context(), args[0], value)
		}, printSecretChange)
	}

	rm := &cobra.Command{
		Use:               "rm NAME",
		Aliases:           []string{"remove"},
		Short:             "Remove a secret set at run time",
		Example:           "  andromeda secrets rm github",
		Long:              "Rm removes the secret NAME set at run time; webhooks naming it answer 503\nuntil it is set again. A secret held in the node config is removed there.",
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	rcf := addClientFlags(rm)
	rm.RunE = func(cmd *cobra.Command, args []string) error {
		return ask(env, rcf, func(c *api.Client) (secretChange, error) {
			return secretChange{args[0], "removed"}, c.DeleteSecret(cmd.Context(), args[0])
		}, printSecretChange)
	}
	cmd.AddCommand(list, set, rm)
	return cmd
}

// readSecret reads a secret's value from file, or from stdin when file is
// empty, and drops one trailing newline.
func readSecret(stdin io.Reader, file string) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	if file != "" {
		b, err = os.ReadFile(file)
	} else {
		b, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
	}
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	if bytes.HasSuffix(b, []byte("\r\n")) {
		b = b[:len(b)-2]
	} else if bytes.HasSuffix(b, []byte("\n")) {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		where := "standard input"
		if file != "" {
			where = file
		}
		return nil, usagef("the secret's value is empty: write it to %s", where)
	}
	return b, nil
}

func printSecrets(w io.Writer, list []api.Secret) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no secrets")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "NAME\tSOURCE\tUPDATED")
	for _, s := range list {
		updated := "-"
		if !s.Updated.IsZero() {
			updated = s.Updated.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Source, updated)
	}
	tw.Flush()
}

func printSecretChange(w io.Writer, c secretChange) {
	fmt.Fprintf(w, "secret %s %s\n", c.Name, c.Action)
}
