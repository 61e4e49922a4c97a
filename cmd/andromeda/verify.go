package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/strictdoc/strictjson"

	"github.com/andromeda-runner/andromeda/attest"
)

func (env *cli) verifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check what the node signed: decision receipts and usage records",
		Long: `Verify checks the node's signatures on what it gives away: the receipt of
an admission decision (which code was judged by which policy, the verdict
and its reasons) and the usage record of a run. Verification needs no
node when the node's key is given with --key ("ed25519:<base64>", as GET
/v1/node shows it as node_key); without --key the node is asked for it,
which proves only that the node stands by what it signed.`,
		Example: `  andromeda verify receipt price-watch
  andromeda inspect price-watch --json > svc.json && andromeda verify receipt svc.json --key ed25519:3q2+7w...
  andromeda verify usage 06h3a2nyj3pfa646574g`,
	}
	cmd.AddCommand(env.verifyReceiptCmd(), env.verifyUsageCmd())
	return cmd
}

func (env *cli) verifyReceiptCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "receipt FILE|-|SERVICE",
		Short: "Check a decision receipt's signature and signer",
		Long: `Receipt checks a decision receipt: its signature verifies over the receipt
as signed, and its signer (node_key) is the key trusted (--key, or the
node's own). FILE (or - for standard input) holds a receipt or a service
as "andromeda inspect NAME --json" prints it; a name that is not a file
is a service, whose receipt is asked of the node. The exit status is
non-zero when the receipt does not verify.`,
		Example: `  andromeda verify receipt price-watch
  andromeda inspect price-watch --json | andromeda verify receipt - --key ed25519:3q2+7w...`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	keyFlag := cmd.Flags().String("key", "", "the node's public `KEY`, ed25519:<base64> (default: ask the node)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		data, err := env.fileOrAsk(cmd, cf, args[0], "verify receipt", "service", func(c *api.Client) (any, error) {
			return c.Service(cmd.Context(), args[0])
		})
		if err != nil {
			return err
		}
		r, err := receiptIn(data)
		if err != nil {
			return err
		}
		pub, key, err := env.trustedKey(cmd, cf, *keyFlag, "verify receipt")
		if err != nil {
			return err
		}
		res := checkReceipt(r, pub, key)
		if cf.json {
			if perr := printJSON(env.stdout, res); perr != nil {
				return perr
			}
		} else if res.Error == "" {
			fmt.Fprintf(env.stdout, "ok\t%s %s: %s, decided %s under policy %s, signed by %s\n", r.Service, r.Version, r.Verdict,
				r.DecidedAt.Format(time.RFC3339), r.PolicyDigest, r.NodeKey)
		} else {
			fmt.Fprintf(env.stdout, "FAILED\t%s %s: %s\n", r.Service, r.Version, res.Error)
		}
		if res.Error != "" {
			return errors.New("verify receipt: " + res.Error)
		}
		return nil
	}
	return cmd
}

func (env *cli) verifyUsageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "usage FILE|-|RUN",
		Short: "Check signed usage records against the node's key",
		Long: `Usage checks usage records, as "andromeda usage verify" does: FILE (or -
for standard input) holds one sealed record, a run or a usage report; a
run id that is not a file is a run, read from the node.`,
		Example: `  andromeda verify usage 06h3a2nyj3pfa646574g
  andromeda usage price-watch --json | andromeda verify usage - --key ed25519:3q2+7w...`,
		Args: wantArgs(1, 1),
	}
	cf := addClientFlags(cmd)
	keyFlag := cmd.Flags().String("key", "", "the node's public `KEY`, ed25519:<base64> (default: ask the node)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		data, err := env.fileOrAsk(cmd, cf, args[0], "verify usage", "run", func(c *api.Client) (any, error) {
			return c.RunByID(cmd.Context(), args[0])
		})
		if err != nil {
			return err
		}
		return env.verifyUsageAndSay(cmd, cf, *keyFlag, data)
	}
	return cmd
}

// fileOrAsk is standard input for "-", the file arg, or, when there is
// no such file, what ask gets from the node (arg names a kind there), as
// JSON; what names the command in errors.
func (env *cli) fileOrAsk(cmd *cobra.Command, cf *clientFlags, arg, what, kind string, ask func(*api.Client) (any, error)) ([]byte, error) {
	var data []byte
	var err error
	if arg == "-" {
		data, err = io.ReadAll(cmd.InOrStdin())
	} else {
		data, err = os.ReadFile(arg)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return data, nil
	}
	c, err := env.client(cf)
	if err != nil {
		return nil, err
	}
	v, err := ask(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %s is not a file, and as a %s: %w", what, arg, kind, err)
	}
	return json.Marshal(v)
}

// receiptIn is the receipt in data: a receipt, or a service with one.
func receiptIn(data []byte) (attest.Receipt, error) {
	var doc struct {
		Receipt   *attest.Receipt `json:"receipt"`
		Signature *string         `json:"signature"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return attest.Receipt{}, fmt.Errorf("verify receipt: not JSON: %w", err)
	}
	var r attest.Receipt
	switch {
	case doc.Receipt != nil:
		r = *doc.Receipt
	case doc.Signature != nil:
		if err := strictjson.Unmarshal(data, &r); err != nil {
			return attest.Receipt{}, fmt.Errorf("verify receipt: not a receipt: %w", err)
		}
	default:
		return attest.Receipt{}, errors.New("verify receipt: no receipt: want a receipt, or a service with one (andromeda inspect NAME --json)")
	}
	return r, nil
}

// receiptCheck is verify receipt's answer.
type receiptCheck struct {
	Service string `json:"service"`
	Version string `json:"version"`
	Verdict string `json:"verdict"`
	NodeKey string `json:"node_key"`
	Error   string `json:"error,omitempty"`
}

// checkReceipt checks r's signature and that its signer is pub (key).
func checkReceipt(r attest.Receipt, pub ed25519.PublicKey, key string) receiptCheck {
	res := receiptCheck{Service: r.Service, Version: r.Version, Verdict: r.Verdict, NodeKey: r.NodeKey}
	if err := attest.VerifyReceipt(r); err != nil {
		res.Error = err.Error()
		return res
	}
	signer, err := attest.ParsePublicKey(r.NodeKey)
	if err != nil || !bytes.Equal(signer, pub) {
		res.Error = fmt.Sprintf("signed by %s, not by the key trusted (%s)", r.NodeKey, strings.TrimSpace(key))
	}
	return res
}
