package main

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/policy"
)

func (env *cli) keysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "keys",
		Short:   "Make ed25519 key pairs for attestations",
		Example: `  andromeda keys gen hub.key`,
	}
	gen := &cobra.Command{
		Use:   "gen FILE",
		Short: "Make an ed25519 key pair for attestations",
		Long: `Gen writes a new private key to FILE (mode 0600) and its public key to
FILE.pub. Sign services with "andromeda attest DIR --key FILE"; nodes that
list the public key in their policy's trusted_hubs trust the signatures.`,
		Example: `  andromeda keys gen hub.key
  andromeda keys gen hub.key --json`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: fileArgs(1),
	}
	var asJSON bool
	addJSONFlag(gen, &asJSON)
	gen.RunE = func(_ *cobra.Command, args []string) error {
		file := args[0]
		pub, err := attest.WriteKeyPair(file)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(env.stdout, map[string]string{"private": file, "public": file + ".pub", "key": pub.String()})
		}
		fmt.Fprintf(env.stdout, "wrote %s (private, 0600) and %s\npublic key: %s\nput it in the policy's trusted_hubs of the nodes that should trust you\n", file, file+".pub", pub)
		return nil
	}
	cmd.AddCommand(gen)
	return cmd
}

func (env *cli) attestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "attest DIR --key FILE",
		Short: "Sign a service's digest (sent with its next submit)",
		Long: fmt.Sprintf(`Attest signs the digest of the service in DIR with a private key from
"andromeda keys gen" and adds the attestation to DIR/%s/attestations.json,
which the next submit sends with the archive. A node whose policy trusts
the key counts the signature.`, archive.MetaDir),
		Example: `  andromeda attest ./greeter --key hub.key
  andromeda attest ./greeter --key hub.key --json`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: dirArgs(1),
	}
	var asJSON bool
	keyFile := cmd.Flags().String("key", "", "private key `FILE` (andromeda keys gen)")
	addJSONFlag(cmd, &asJSON)
	cmd.MarkFlagFilename("key")
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		dir := args[0]
		if *keyFile == "" {
			return usagef("--key FILE: required")
		}
		key, err := attest.LoadPrivateKey(*keyFile)
		if err != nil {
			return err
		}
		if _, err := manifest.Load(dir); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		digest, err := archive.DigestDir(dir)
		if err != nil {
			return err
		}
		a := attest.Sign(key, digest)
		if err := attest.AddToDir(dir, a); err != nil {
			return err
		}
		if asJSON {
			return printJSON(env.stdout, a)
		}
		fmt.Fprintf(env.stdout, "signed %s\n  by %s\n  into %s/%s/attestations.json (sent with the next submit)\n", digest, key.Public(), dir, archive.MetaDir)
		return nil
	}
	return cmd
}

func (env *cli) policyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Explain a decision offline; convert a KLYNTAR config",
		Example: `  andromeda policy explain ./greeter --config andromeda.yaml
  andromeda policy import klyntar runner.json > policy.yaml`,
	}
	explain := &cobra.Command{
		Use:   "explain DIR",
		Short: "Explain the decision a policy takes for a service directory",
		Long: `Explain packs the service in DIR and prints the decision a policy takes
for it — run, forward or reject, with the driver, network and limits, and a
reason for every rule that looked at it — offline: nothing is submitted and
no node is needed, and every driver this binary has is assumed available.
The policy is the default one, or a policy file, or the policy section of a
node config.`,
		Example: `  andromeda policy explain ./greeter
  andromeda policy explain ./greeter --policy policy.yaml --origin 'hostchain:btc;stake=250'
  andromeda policy explain ./greeter --config andromeda.yaml --json
  andromeda policy explain ./greeter --policy policy.yaml --revocation r.json`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: dirArgs(1),
	}
	var o explainOptions
	explain.Flags().StringVar(&o.policyFile, "policy", "", "a policy `FILE` (the policy section of a node config)")
	explain.Flags().StringVar(&o.configFile, "config", "", "a node config `FILE` whose policy section to use")
	explain.Flags().StringVar(&o.origin, "origin", "", "origin claim, `kind:id[;stake=N]`")
	explain.Flags().StringArrayVar(&o.revocations, "revocation", nil, "a revocation `FILE` (andromeda attest revoke -o) to judge delegations against, as a node holding it would; repeatable")
	addJSONFlag(explain, &o.json)
	explain.MarkFlagFilename("policy", "yaml", "yml", "json")
	explain.MarkFlagFilename("config", "yaml", "yml", "json")
	explain.RunE = func(_ *cobra.Command, args []string) error { return env.policyExplain(args[0], o) }

	importCmd := &cobra.Command{
		Use:     "import",
		Short:   "Convert another runner's policy config",
		Example: `  andromeda policy import klyntar runner.json`,
	}
	klyntar := &cobra.Command{
		Use:   "klyntar FILE",
		Short: "Convert a KLYNTAR runner config into a policy",
		Long: `Klyntar converts a KLYNTAR runner config into the policy section of a node
config, printed as YAML on standard output. Standard error shows what each
KLYNTAR key became, and the Docker engine it named. With --json, one
document holds the policy, the Docker settings and the mappings.`,
		Example: `  andromeda policy import klyntar runner.json > policy.yaml
  andromeda policy import klyntar runner.json --json`,
		Args:              wantArgs(1, 1),
		ValidArgsFunction: fileArgs(1),
	}
	var importJSON bool
	addJSONFlag(klyntar, &importJSON)
	klyntar.RunE = func(_ *cobra.Command, args []string) error { return env.policyImport(args[0], importJSON) }
	importCmd.AddCommand(klyntar)
	cmd.AddCommand(explain, importCmd)
	return cmd
}

// explainOptions are the flags of `policy explain`.
type explainOptions struct {
	policyFile, configFile, origin string
	revocations                    []string
	json                           bool
}

// policyExplain prints the decision a policy takes for a service
// directory, offline: nothing is submitted and no node is needed.
func (env *cli) policyExplain(dir string, o explainOptions) error {
	if o.policyFile != "" && o.configFile != "" {
		return usagef("--policy and --config: give one of them")
	}
	var err error
	p := policy.DefaultPolicy()
	switch {
	case o.policyFile != "":
		if p, err = policy.Load(o.policyFile); err != nil {
			return err
		}
	case o.configFile != "":
		cfg, err := node.LoadConfig(o.configFile)
		if err != nil {
			return err
		}
		p = cfg.Policy
	}
	pol, err := policy.Compile(p)
	if err != nil {
		return err
	}
	m, err := manifest.Load(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	packed, err := archive.Pack(dir)
	if err != nil {
		return err
	}
	info, err := archive.Inspect(bytes.NewReader(packed), archive.Limits{MaxCompressed: 1 << 40, MaxSize: 1 << 40, MaxFileSize: 1 << 40})
	if err != nil {
		return err
	}
	file, err := attest.ReadDirFile(dir)
	if err != nil {
		return err
	}
	sub := policy.Submission{Manifest: m, Digest: info.Digest, PayloadSize: int64(len(packed)), Attestations: file.Attestations, Delegations: file.Delegations}
	if o.origin != "" {
		if sub.Origin, err = policy.ParseOriginClaim(o.origin); err != nil {
			return usagef("--origin: %w", err)
		}
	}
	// Offline, no admission plugin can be consulted: the decision is the
	// built-in rules', each plugin rule saying it was not consulted.
	view := offlineNode()
	for _, f := range o.revocations {
		data, err := os.ReadFile(f)
		if err != nil {
			return usagef("--revocation: %w", err)
		}
		r, err := attest.DecodeRevocation(data)
		if err != nil {
			return usagef("--revocation %s: %w", f, err)
		}
		if view.Revoked == nil {
			view.Revoked = map[string][]attest.Revocation{}
		}
		view.Revoked[r.Delegation] = append(view.Revoked[r.Delegation], r)
	}
	d := pol.Preliminary(sub, view)
	if o.json {
		return printJSON(env.stdout, d)
	}
	fmt.Fprintf(env.stdout, "%s %s (digest %s) under policy %s\n", m.Name, m.Version, info.Digest, pol.Digest())
	fmt.Fprintf(env.stdout, "verdict: %s", d.Verdict)
	if d.Forward != nil {
		fmt.Fprintf(env.stdout, " to %s (depth %d)", d.Forward.Peer, d.Forward.Depth)
	}
	fmt.Fprintf(env.stdout, "; driver %s; network %s; limits memory %s, cpu %g, timeout %s, pids %d, concurrency %d\n",
		d.Driver, d.Network, size(d.Limits.Memory), d.Limits.CPU, time.Duration(d.Limits.TimeoutMS)*time.Millisecond, d.Limits.Pids, d.Limits.Concurrency)
	printReasons(env.stdout, d.Reasons)
	fmt.Fprintln(env.stdout, "(explained offline: every driver this binary has is assumed available)")
	return nil
}

// offlineNode is what explain assumes about a node it cannot see.
func offlineNode() policy.Node {
	return policy.Node{
		Drivers: map[string]policy.DriverInfo{
			"wasm":    {Enabled: true, Languages: []string{"go", "rust", "c", "wasm"}},
			"process": {Enabled: true, Network: true, Languages: []string{"node", "python", "exec"}},
			"docker":  {Enabled: true, Network: true, Languages: policy.DockerLanguages}, // a runtime image for each
		},
		Targets: map[string]string{},
		Now:     time.Now().UTC(),
	}
}

func (env *cli) policyImport(file string, asJSON bool) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	k, err := policy.ImportKlyntar(data)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(env.stdout, map[string]any{"policy": k.Policy, "docker": k.Docker, "mappings": k.Mappings})
	}
	tw := table(env.stderr)
	fmt.Fprintln(tw, "KLYNTAR KEY\tBECAME\tNOTE")
	for _, m := range k.Mappings {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Key, m.To, m.Note)
	}
	tw.Flush()
	if k.Docker.Host != "" {
		fmt.Fprintf(env.stderr, "docker engine: %s (tls %v)\n", k.Docker.Host, k.Docker.TLS)
		fmt.Fprintf(env.stderr, "# in the node config: docker: {host: %q}", k.Docker.Host)
		if k.Docker.TLS {
			fmt.Fprint(env.stderr, ", with docker.tls {ca, cert, key}: the files of the client TLS the engine expects")
		}
		fmt.Fprintln(env.stderr)
	}
	fmt.Fprintln(env.stderr, "\n# paste under policy: in the node config")
	b, err := yaml.Marshal(k.Policy)
	if err != nil {
		return err
	}
	env.stdout.Write(b)
	return nil
}
