package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/keys"
	"github.com/andromeda-runner/andromeda/node"
)

// withSigningKeys adds the node's signing keys (create, list, show, rm,
// import) to the keys command, beside gen's attestation key pairs.
func (env *cli) withSigningKeys(cmd *cobra.Command) *cobra.Command {
	cmd.Short = "Manage the node's signing keys, and make attestation key pairs"
	cmd.Long = `Keys manages the ed25519 keys a node signs submit envelopes with, one per
target: create, list, show and rm talk to the node (operator only), import
writes into a node's data dir directly. A key's private half stays in the
node's data dir (keys/TARGET.key, mode 0600); only its public half and
key id are ever shown, for the target's endpoint to check signatures with.

Gen makes a key pair for attestations, offline, in a file of yours.`
	cmd.Example = `  andromeda keys create vault-7
  andromeda keys list
  andromeda keys show vault-7 --json | jq -r .public_key
  andromeda keys rm vault-7
  andromeda keys gen hub.key`
	cmd.AddCommand(env.keysCreateCmd(), env.keysListCmd(), env.keysShowCmd(), env.keysRmCmd(), env.keysImportCmd())
	return cmd
}

const targetRule = "A target is 1 to 63 characters of [a-z0-9_-], starting with a letter\nor digit."

func (env *cli) keysCreateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create TARGET",
		Short: "Create the node's signing key for a target",
		Long: `Create makes a new ed25519 key on the node for TARGET and prints its
public half and key id: give the public key to the target's endpoint,
which checks the envelopes' signatures with it. A target's key is never
replaced: rm it first to make a new one.

` + targetRule,
		Example: `  andromeda keys create vault-7
  andromeda keys create vault-7 --json | jq -r .public_key`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return ask(env, cf, func(c *api.Client) (api.Key, error) { return c.CreateKey(cmd.Context(), args[0]) }, func(w io.Writer, k api.Key) {
			fmt.Fprintf(w, "created key %s for %s\npublic key: %s\n", k.KeyID, k.Target, b64(k.PublicKey))
		})
	}
	return cmd
}

func (env *cli) keysListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the node's signing keys",
		Long:    `List lists the node's signing keys by target: key id, creation time and public key.`,
		Example: `  andromeda keys list
  andromeda keys list --json | jq -r '.[].target'`,
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return ask(env, cf, func(c *api.Client) ([]api.Key, error) { return c.Keys(cmd.Context()) }, printKeys)
	}
	return cmd
}

func printKeys(w io.Writer, list []api.Key) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no signing keys (andromeda keys create TARGET makes one)")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "TARGET\tKEY ID\tCREATED\tPUBLIC KEY")
	for _, k := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Target, k.KeyID, ago(k.Created), b64(k.PublicKey))
	}
	tw.Flush()
}

func (env *cli) keysShowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "show TARGET",
		Short:   "Show the public half of a target's signing key",
		Long:    `Show prints a target's signing key: key id, creation time and public key.`,
		Example: "  andromeda keys show vault-7\n  andromeda keys show vault-7 --json",
		Args:    wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	cmd.ValidArgsFunction = env.keyTargets(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return ask(env, cf, func(c *api.Client) (api.Key, error) { return c.Key(cmd.Context(), args[0]) }, printKey)
	}
	return cmd
}

// b64 is a public key as --json and a sealed envelope's signature write
// it: standard, padded base64.
func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func printKey(w io.Writer, k api.Key) {
	tw := table(w)
	fmt.Fprintf(tw, "Target:\t%s\n", k.Target)
	fmt.Fprintf(tw, "Key ID:\t%s\n", k.KeyID)
	fmt.Fprintf(tw, "Public key:\t%s\n", b64(k.PublicKey))
	fmt.Fprintf(tw, "Created:\t%s (%s)\n", k.Created.Format(time.RFC3339), ago(k.Created))
	tw.Flush()
}

func (env *cli) keysRmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rm TARGET",
		Short: "Remove a target's signing key",
		Long: `Rm deletes a target's signing key from the node. The node signs nothing
more for the target, and its submit actions fail, until a key is created
or imported again. Envelopes already signed still verify with the old
public key: keep it (keys show) if receivers need it.`,
		Example: "  andromeda keys rm vault-7\n  andromeda keys rm vault-7 --json",
		Args:    wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	cmd.ValidArgsFunction = env.keyTargets(cf)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		remove := func(c *api.Client) (map[string]string, error) {
			return map[string]string{"removed": args[0]}, c.RemoveKey(cmd.Context(), args[0])
		}
		return ask(env, cf, remove, func(w io.Writer, _ map[string]string) { fmt.Fprintf(w, "removed the key for %s\n", args[0]) })
	}
	return cmd
}

func (env *cli) keysImportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import TARGET FILE",
		Short: "Put an existing key into a node's data dir as a target's key",
		Long: `Import writes the ed25519 key in FILE into the node data dir's keyring as
TARGET's signing key, directly, without the API: the private key never
crosses the network. Run it as the user the node runs as, on its machine;
the node uses the key from its next signing on. FILE is a PEM "PRIVATE
KEY" block in PKCS #8 (openssl genpkey -algorithm ed25519 writes one) or
the key's 32-byte seed as it is. A target's key is never replaced.

` + targetRule,
		Example: `  andromeda keys import vault-7 vault-7.pem
  andromeda keys import vault-7 seed.bin --data "$ANDROMEDA_DATA" --json`,
		Args: wantArgs(2, 2),
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) == 1 {
				return nil, cobra.ShellCompDirectiveDefault // FILE
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
	}
	var data string
	var asJSON bool
	addDataFlag(cmd, &data, "node data `DIR` whose keyring to write")
	addJSONFlag(cmd, &asJSON)
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		material, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		dir := env.dataDir(data)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("no node data dir at %s: pass the node's with --data or $ANDROMEDA_DATA", dir)
		}
		ring, err := keys.Open(filepath.Join(dir, node.KeysDir))
		if err != nil {
			return err
		}
		info, err := ring.Import(args[0], material)
		if err != nil {
			return err
		}
		k := api.Key{Target: info.Target, KeyID: info.KeyID, PublicKey: info.Public, Created: info.Created.UTC()}
		if asJSON {
			return printJSON(env.stdout, k)
		}
		fmt.Fprintf(env.stdout, "imported key %s for %s\npublic key: %s\n", k.KeyID, k.Target, b64(k.PublicKey))
		return nil
	}
	return cmd
}

// keyTargets completes TARGET with the targets the node has keys for, and
// nothing, quietly, when no node answers.
func (env *cli) keyTargets(cf *clientFlags) cobra.CompletionFunc {
	return env.firstArg(cf, func(ctx context.Context, c *api.Client) ([]cobra.Completion, error) {
		list, err := c.Keys(ctx)
		out := make([]cobra.Completion, len(list))
		for i, k := range list {
			out[i] = cobra.CompletionWithDesc(k.Target, "key "+k.KeyID)
		}
		return out, err
	})
}
