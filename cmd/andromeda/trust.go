package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/attest"
)

// withDelegation adds delegate and revoke to the attest command: the trust
// tree's offline half, signed with key files like attest itself.
func (env *cli) withDelegation(cmd *cobra.Command) *cobra.Command {
	cmd.AddCommand(env.attestDelegateCmd(), env.attestRevokeCmd())
	return cmd
}

func (env *cli) attestDelegateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delegate [DIR] --key FILE --to KEY --expires WHEN",
		Short: "Let another key's attestations count in your key's name",
		Long: fmt.Sprintf(`Delegate signs, with the private key in FILE, a delegation to the public
key KEY (or the key in a .pub file): the delegate's attestations count for
SHARE of your weight, for services in its scope, until it expires. A node
counts them when your key is one of its trusted hubs, or a delegate of one,
within the policy's trust.max_depth and the max-depth of every delegation
above.

With DIR, the delegation goes into DIR/%s/attestations.json, beside the
attestations, and the next submit sends it; with -o it is written to FILE;
otherwise it is printed. A delegation written to a file is added to a
service directory with --from.`, archive.MetaDir),
		Example: `  andromeda attest delegate --key hub.key --to reviewer.key.pub --share 0.5 --scope 'weather-*' --expires 720h --max-depth 1 -o reviewer.json
  andromeda attest delegate ./weather --from reviewer.json
  andromeda attest delegate ./weather --key reviewer.key --to ed25519:… --expires 2026-12-31T00:00:00Z`,
		Args:              wantArgs(0, 1),
		ValidArgsFunction: dirArgs(1),
	}
	var (
		keyFile, to, expires, out, from string
		share                           float64
		scope, keywords                 []string
		maxDepth                        int
		asJSON                          bool
	)
	cmd.Flags().StringVar(&keyFile, "key", "", "the delegating private key `FILE` (andromeda keys gen)")
	cmd.Flags().StringVar(&to, "to", "", "the delegate's public `KEY` (ed25519:…) or a .pub file holding it")
	cmd.Flags().Float64Var(&share, "share", 1, "the part of your weight the delegate counts for, more than 0 and at most 1")
	cmd.Flags().StringArrayVar(&scope, "scope", nil, "a service `NAME` the delegate may attest; a trailing * matches a prefix (repeatable; none: whatever you may)")
	cmd.Flags().StringArrayVar(&keywords, "keyword", nil, "the delegate may attest only services carrying one of these `KEYWORD`s (repeatable)")
	cmd.Flags().StringVar(&expires, "expires", "", "when the delegation ends: a `DURATION` from now (720h) or an RFC 3339 time")
	cmd.Flags().IntVar(&maxDepth, "max-depth", 0, "how many levels below the delegate may be delegated further, 0 to 16")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the delegation to `FILE` instead of a service directory")
	cmd.Flags().StringVar(&from, "from", "", "add the delegation in `FILE` (written with -o) to DIR instead of signing one")
	addJSONFlag(cmd, &asJSON)
	cmd.MarkFlagFilename("key")
	cmd.MarkFlagFilename("to", "pub")
	cmd.MarkFlagFilename("from", "json")
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		dir := ""
		if len(args) == 1 {
			dir = args[0]
		}
		var d attest.Delegation
		switch {
		case from != "":
			if dir == "" || keyFile != "" || out != "" {
				return usagef("--from FILE: give DIR, and no --key or -o")
			}
			data, err := os.ReadFile(from)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(data, &d); err != nil {
				return fmt.Errorf("%s: %w", from, err)
			}
			p, err := d.Parse()
			if err != nil {
				return fmt.Errorf("%s: %w", from, err)
			}
			if !p.Valid() {
				return fmt.Errorf("%s: the delegation's signature by %s does not verify: it was changed after signing or signed by another key; nothing added", from, p.Parent.Short())
			}
		default:
			if keyFile == "" || to == "" || expires == "" {
				return usagef("--key FILE, --to KEY and --expires WHEN: required")
			}
			if dir != "" && out != "" {
				return usagef("DIR and -o FILE: give one of them")
			}
			key, err := attest.LoadPrivateKey(keyFile)
			if err != nil {
				return err
			}
			delegate, err := publicKeyArg(to)
			if err != nil {
				return usagef("--to: %w", err)
			}
			now := time.Now().UTC().Truncate(time.Second)
			until, err := whenArg(expires, now)
			if err != nil {
				return usagef("--expires: %w", err)
			}
			d, err = attest.Delegate(key, attest.Delegation{
				Delegate: delegate.String(), Share: share, Scope: attest.Scope{Services: scope, Keywords: keywords},
				MaxDepth: maxDepth, IssuedAt: now, Expires: until,
			})
			if err != nil {
				return usagef("%w", err)
			}
		}
		p, _ := d.Parse()
		switch {
		case dir != "":
			if err := attest.AddDelegationToDir(dir, d); err != nil {
				return err
			}
		case out != "":
			if err := writeJSONFile(out, d); err != nil {
				return err
			}
		default:
			return printJSON(env.stdout, d)
		}
		if asJSON {
			return printJSON(env.stdout, map[string]any{"id": p.ID, "delegation": d})
		}
		where := out
		if dir != "" {
			where = dir + "/" + archive.MetaDir + "/attestations.json (sent with the next submit)"
		}
		fmt.Fprintf(env.stdout, "delegation %s\n  from %s\n  to   %s, share %g, scope %s, max depth %d, expires %s\n  into %s\n",
			p.ID, p.Parent, p.Delegate, p.Share, p.Scope, p.MaxDepth, p.Expires.Format(time.RFC3339), where)
		return nil
	}
	return cmd
}

func (env *cli) attestRevokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke ID|FILE --key FILE",
		Short: "Sign the revocation of a delegation",
		Long: `Revoke signs, with the private key in --key, the revocation of a
delegation, named by its id (sha256:…, as delegate and policy explain show
it) or by a file holding the delegation. The revocation counts when the key
is the delegation's parent or a key above it in the trust tree. It is
written to -o FILE or printed; send it to a node with
"andromeda trust revoke FILE".`,
		Example: `  andromeda attest revoke reviewer.json --key hub.key -o revoke.json
  andromeda attest revoke sha256:… --key hub.key | andromeda trust revoke -`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: fileArgs(1),
	}
	var keyFile, out, at string
	cmd.Flags().StringVar(&keyFile, "key", "", "the revoking private key `FILE`")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the revocation to `FILE` instead of printing it")
	cmd.Flags().StringVar(&at, "at", "", "when it takes effect: an RFC 3339 `TIME` (default now)")
	cmd.MarkFlagFilename("key")
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		if keyFile == "" {
			return usagef("--key FILE: required")
		}
		key, err := attest.LoadPrivateKey(keyFile)
		if err != nil {
			return err
		}
		id := args[0]
		if !strings.HasPrefix(id, "sha256:") {
			data, err := os.ReadFile(id)
			if err != nil {
				return err
			}
			var d attest.Delegation
			if err := json.Unmarshal(data, &d); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			p, err := d.Parse()
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			id = p.ID
		}
		when := time.Now().UTC().Truncate(time.Second)
		if at != "" {
			if when, err = time.Parse(time.RFC3339Nano, at); err != nil {
				return usagef("--at: must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
			}
		}
		r, err := attest.Revoke(key, id, when)
		if err != nil {
			return usagef("%w", err)
		}
		if out == "" {
			return printJSON(env.stdout, r)
		}
		if err := writeJSONFile(out, r); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "revoked %s\n  by %s from %s\n  into %s (send it: andromeda trust revoke %s)\n", id, r.Key, r.RevokedAt.Format(time.RFC3339), out, out)
		return nil
	}
	return cmd
}

func (env *cli) trustCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Send a node revocations of delegations; list them",
		Example: `  andromeda trust revoke revoke.json
  andromeda trust revocations`,
	}
	revoke := &cobra.Command{
		Use:   "revoke FILE",
		Short: "Send a node a revocation (andromeda attest revoke writes one)",
		Long: `Revoke sends the node the revocation in FILE ("-": standard input). Any
token may send a revocation signed by a trusted hub of the node's policy:
one whose signature verifies can only take trust away. A revocation signed
by another key (a delegate revoking a delegation it made) needs the
operator's token; the node refuses it from other tokens (403), so that
strangers' keys cannot fill its bounded store of revocations. The node
keeps it and, from its next decision on, no longer counts the delegation
(nor the keys below it) when the revocation's key is the delegation's
parent or a key above it. Of one key's revocations of one delegation the
node keeps the earliest revoked_at: sending one dated later changes
nothing, and the command says which one the node holds.`,
		Example: `  andromeda trust revoke revoke.json
  andromeda attest revoke reviewer.json --key hub.key | andromeda trust revoke -`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: fileArgs(1),
	}
	cf := addClientFlags(revoke)
	revoke.RunE = func(cmd *cobra.Command, args []string) error {
		var data []byte
		var err error
		if args[0] == "-" {
			data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), attest.MaxRevocationSize+1))
		} else {
			data, err = os.ReadFile(args[0])
		}
		if err != nil {
			return err
		}
		r, err := attest.DecodeRevocation(data)
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		return ask(env, cf, func(c *api.Client) (attest.Revocation, error) { return c.Revoke(cmd.Context(), r) }, func(w io.Writer, held attest.Revocation) {
			if held.RevokedAt.Before(r.RevokedAt) {
				fmt.Fprintf(w, "unchanged: the node already holds the revocation of %s by %s from %s, earlier than %s\n",
					held.Delegation, held.Key, held.RevokedAt.Format(time.RFC3339), r.RevokedAt.UTC().Format(time.RFC3339))
				return
			}
			fmt.Fprintf(w, "the node holds the revocation of %s by %s from %s\n", held.Delegation, held.Key, held.RevokedAt.Format(time.RFC3339))
		})
	}
	list := &cobra.Command{
		Use:               "revocations",
		Short:             "List the revocations a node holds",
		Example:           "  andromeda trust revocations\n  andromeda trust revocations --json",
		Args:              wantArgs(0, 0),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	lf := addClientFlags(list)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		return ask(env, lf, func(c *api.Client) ([]attest.Revocation, error) { return c.Revocations(cmd.Context()) }, func(w io.Writer, rs []attest.Revocation) {
			if len(rs) == 0 {
				fmt.Fprintln(w, "no revocations")
				return
			}
			tw := table(w)
			fmt.Fprintln(tw, "DELEGATION\tREVOKED BY\tFROM")
			for _, r := range rs {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Delegation, r.Key, r.RevokedAt.Format(time.RFC3339))
			}
			tw.Flush()
		})
	}
	cmd.AddCommand(revoke, list)
	return cmd
}

// publicKeyArg reads a public key given as text or as a file holding it.
func publicKeyArg(s string) (attest.PublicKey, error) {
	if strings.HasPrefix(strings.TrimSpace(s), attest.PublicPrefix) {
		return attest.ParsePublicKey(s)
	}
	data, err := os.ReadFile(s)
	if err != nil {
		return nil, fmt.Errorf("neither a key (ed25519:…) nor a readable file: %w", err)
	}
	k, err := attest.ParsePublicKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	return k, nil
}

// whenArg reads a time given as a duration from now or an RFC 3339 time.
func whenArg(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("must be a positive duration")
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("must be a duration from now (720h) or an RFC 3339 time (2026-12-31T00:00:00Z)")
	}
	return t, nil
}

// writeJSONFile writes v as indented JSON and a newline to name (mode
// 0644).
func writeJSONFile(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(name, append(data, '\n'), 0o644)
}
