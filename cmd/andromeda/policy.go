package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/attest"
	"github.com/andromeda-runner/andromeda/manifest"
	"github.com/andromeda-runner/andromeda/node"
	"github.com/andromeda-runner/andromeda/policy"
)

func keysCmd(ctx context.Context, env *cli, args []string) error {
	fs := env.flagSet("keys", nil)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || pos[0] != "gen" {
		return errors.New("usage: andromeda keys gen FILE   (writes FILE, mode 0600, and FILE.pub)")
	}
	pub, err := attest.WriteKeyPair(pos[1])
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.stdout, map[string]string{"private": pos[1], "public": pos[1] + ".pub", "key": pub.String()})
	}
	fmt.Fprintf(env.stdout, "wrote %s (private, 0600) and %s\npublic key: %s\nput it in the policy's trusted_hubs of the nodes that should trust you\n", pos[1], pos[1]+".pub", pub)
	return nil
}

func attestCmd(ctx context.Context, env *cli, args []string) error {
	fs := env.flagSet("attest", nil)
	keyFile := fs.String("key", "", "private key file (andromeda keys gen)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *keyFile == "" {
		return errors.New("usage: andromeda attest DIR --key FILE")
	}
	key, err := attest.LoadPrivateKey(*keyFile)
	if err != nil {
		return err
	}
	if _, err := manifest.Load(pos[0]); err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	digest, err := archive.DigestDir(pos[0])
	if err != nil {
		return err
	}
	a := attest.Sign(key, digest)
	if err := attest.AddToDir(pos[0], a); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.stdout, a)
	}
	fmt.Fprintf(env.stdout, "signed %s\n  by %s\n  into %s/%s/attestations.json (sent with the next submit)\n", digest, key.Public(), pos[0], archive.MetaDir)
	return nil
}

func policyCmd(ctx context.Context, env *cli, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: andromeda policy explain DIR [--policy FILE | --config FILE] [--json]\n       andromeda policy import klyntar FILE [--json]")
	}
	switch args[0] {
	case "explain":
		return policyExplain(env, args[1:])
	case "import":
		return policyImport(env, args[1:])
	}
	return fmt.Errorf("unknown policy command %q: want explain or import", args[0])
}

// policyExplain prints the decision a policy takes for a service
// directory, offline: nothing is submitted and no node is needed.
func policyExplain(env *cli, args []string) error {
	fs := env.flagSet("policy explain", nil)
	policyFile := fs.String("policy", "", "a policy file (the policy section of a node config)")
	configFile := fs.String("config", "", "a node config file whose policy section to use")
	origin := fs.String("origin", "", "origin claim, kind:id[;stake=N]")
	asJSON := fs.Bool("json", false, "print the decision as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (*policyFile != "" && *configFile != "") {
		return errors.New("usage: andromeda policy explain DIR [--policy FILE | --config FILE] [--json]")
	}
	p := policy.DefaultPolicy()
	switch {
	case *policyFile != "":
		if p, err = policy.Load(*policyFile); err != nil {
			return err
		}
	case *configFile != "":
		cfg, err := node.LoadConfig(*configFile)
		if err != nil {
			return err
		}
		p = cfg.Policy
	}
	pol, err := policy.Compile(p)
	if err != nil {
		return err
	}
	dir := pos[0]
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
	atts, err := attest.ReadDir(dir)
	if err != nil {
		return err
	}
	sub := policy.Submission{Manifest: m, Digest: info.Digest, PayloadSize: int64(len(packed)), Attestations: atts}
	if *origin != "" {
		if sub.Origin, err = policy.ParseOriginClaim(*origin); err != nil {
			return err
		}
	}
	d := pol.Admit(sub, offlineNode())
	if *asJSON {
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
			"docker":  {Enabled: true, Network: true},
		},
		Targets: map[string]string{},
		Now:     time.Now().UTC(),
	}
}

func policyImport(env *cli, args []string) error {
	fs := env.flagSet("policy import", nil)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || pos[0] != "klyntar" {
		return errors.New("usage: andromeda policy import klyntar FILE [--json]")
	}
	data, err := os.ReadFile(pos[1])
	if err != nil {
		return err
	}
	k, err := policy.ImportKlyntar(data)
	if err != nil {
		return err
	}
	if *asJSON {
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
	}
	fmt.Fprintln(env.stderr, "\n# paste under policy: in the node config")
	b, err := yaml.Marshal(k.Policy)
	if err != nil {
		return err
	}
	env.stdout.Write(b)
	return nil
}
