// Package usage holds the signed usage record: what one run consumed (wall
// and CPU time, peak memory and whose peak it is, the custom counters the
// service reported), of which code (service, version, digest), on which
// driver and node, signed by the node's key so that a requestor or a
// billing system can check what it is charged for. Sign makes a record's
// sealed body; Verify checks one against the node key the caller trusts.
//
// It holds no keys and does no I/O: the node signs with its node key (the
// one that signs its admission receipts, whose public half GET /v1/node
// shows as node_key), and a verifier gets that key however it trusts it.
// Standard library and envelope (canonical JSON, digests, key ids) only.
//
// # The sealed body
//
//	{"digest":"sha256:<hex>",
//	 "record":{"counters":{…},"counters_dropped":0,"cpu_ns":…,"digest":"sha256:…","driver":"process",
//	           "memory_scope":"worker","node":"ed25519:<base64>","outcome":"ok","peak_memory_bytes":…,
//	           "run_id":"…","service":"…","start":"…","trigger":"cron","version":"…","wall_ns":…},
//	 "signature":{"alg":"ed25519","key_id":"<16 hex>","public_key":"<base64>","value":"<base64>"}}
//
// all of it in canonical JSON (RFC 8785; written here on several lines).
// digest is the SHA-256 of the record's canonical bytes; the signature is
// ed25519 over "andromeda usage v1\n" followed by those bytes (the prefix
// keeps a usage signature from passing for any other document the node
// key signs); public_key is the standard base64 of the 32-byte key, and
// node is the same key as "ed25519:<base64>", the node's id. A verifier
// re-canonicalizes the record member, so re-indenting the body does not
// break it.
package usage

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/andromeda-runner/andromeda/envelope"
)

var (
	// ErrInvalid marks a body that is not a sealed usage record: bad JSON,
	// a member missing or of the wrong kind, a record naming another node
	// than the key that signed it.
	ErrInvalid = errors.New("invalid usage record")
	// ErrDigest marks a body whose digest is not its record's.
	ErrDigest = envelope.ErrDigest
	// ErrSignature marks a body whose signature does not verify.
	ErrSignature = envelope.ErrSignature
	// ErrOtherKey marks a body signed with another key than the trusted one.
	ErrOtherKey = envelope.ErrOtherKey
)

// Domain is what the signed bytes start with, before the canonical record.
const Domain = "andromeda usage v1\n"

// Record is one run's usage as the node signs it. Every member but the
// network bytes is always present in the signed form (zero values
// included), so that a verifier sees exactly what was signed.
type Record struct {
	// Node is the signing node's public key, "ed25519:<base64>": its id.
	// Sign sets it.
	Node    string `json:"node"`
	Service string `json:"service"`
	Version string `json:"version"`
	// Digest is the digest of the service's code that ran.
	Digest string `json:"digest"`
	RunID  string `json:"run_id"`
	// Trigger is the kind of trigger that fired the run (cron, http, …).
	Trigger string    `json:"trigger"`
	Start   time.Time `json:"start"`
	Outcome string    `json:"outcome"`
	// Driver is the driver that ran it: wasm, process, …
	Driver string `json:"driver"`
	WallNS int64  `json:"wall_ns"`
	CPUNS  int64  `json:"cpu_ns"`
	// PeakMemory is a memory high-water mark in bytes, MemoryScope whose:
	// "run" (an instance or worker that served this run alone) or "worker"
	// (a warm one shared with other runs: its peak since it started).
	PeakMemory  int64  `json:"peak_memory_bytes"`
	MemoryScope string `json:"memory_scope"`
	// Counters are the sums of the custom counters the service reported;
	// CountersDropped the reports the node refused.
	Counters        map[string]float64 `json:"counters"`
	CountersDropped int                `json:"counters_dropped"`
	// NetworkRx and NetworkTx are the bytes the guest received and sent
	// over the network, where its driver measures them (docker). Unlike
	// the other members they are left out when 0: a run without them
	// (every run before they existed, and every driver that does not
	// measure them) signs to the same bytes as it always did, so records
	// signed before still compare equal to the same run signed now.
	NetworkRx int64 `json:"network_rx_bytes,omitempty"`
	NetworkTx int64 `json:"network_tx_bytes,omitempty"`
}

// canonical returns r's canonical JSON.
func (r Record) canonical() ([]byte, error) {
	r.Start = r.Start.UTC()
	if r.Counters == nil {
		r.Counters = map[string]float64{}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return envelope.CanonicalJSON(b)
}

// NodeID is the node id a public key gives: "ed25519:<base64>".
func NodeID(pub ed25519.PublicKey) string {
	return "ed25519:" + base64.StdEncoding.EncodeToString(pub)
}

// body is the sealed form, before canonicalization.
type body struct {
	Digest    string          `json:"digest"`
	Record    json.RawMessage `json:"record"`
	Signature signature       `json:"signature"`
}

type signature struct {
	Alg       string `json:"alg"`
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"`
	Value     string `json:"value"`
}

// Sign sets r.Node to priv's node id and returns the sealed body, in
// canonical JSON. Counters that JSON cannot hold (NaN, infinities) are
// refused with ErrInvalid.
func Sign(r Record, priv ed25519.PrivateKey) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign usage record: %w: not an ed25519 private key", ErrInvalid)
	}
	pub := priv.Public().(ed25519.PublicKey)
	r.Node = NodeID(pub)
	canon, err := r.canonical()
	if err != nil {
		return nil, fmt.Errorf("sign usage record of run %s: %w", r.RunID, err)
	}
	sig := ed25519.Sign(priv, append([]byte(Domain), canon...))
	// The body's other members are hex and base64 strings, which need no
	// escaping: written in canonical order, it is canonical as it stands.
	var b bytes.Buffer
	b.Grow(len(canon) + 300)
	b.WriteString(`{"digest":"` + envelope.Digest(canon) + `","record":`)
	b.Write(canon)
	b.WriteString(`,"signature":{"alg":"` + envelope.Alg + `","key_id":"` + envelope.KeyID(pub) +
		`","public_key":"` + base64.StdEncoding.EncodeToString(pub) + `","value":"` + base64.StdEncoding.EncodeToString(sig) + `"}}`)
	return b.Bytes(), nil
}

// Verify checks a sealed body: its record is well formed, its digest is
// the record's, it is signed with trusted (ErrOtherKey otherwise; key_id
// must name it too), the signature verifies, and the record's node is that
// key. It returns the record as signed.
func Verify(sealed []byte, trusted ed25519.PublicKey) (Record, error) {
	var b body
	if err := json.Unmarshal(sealed, &b); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(b.Record) == 0 || b.Digest == "" || b.Signature.Value == "" || b.Signature.PublicKey == "" {
		return Record{}, fmt.Errorf("%w: digest, record and signature (public_key, value) are required", ErrInvalid)
	}
	canon, err := envelope.CanonicalJSON(b.Record)
	if err != nil {
		return Record{}, fmt.Errorf("%w: record: %v", ErrInvalid, err)
	}
	var r Record
	if err := json.Unmarshal(canon, &r); err != nil {
		return Record{}, fmt.Errorf("%w: record: %v", ErrInvalid, err)
	}
	if b.Signature.Alg != envelope.Alg {
		return Record{}, fmt.Errorf("%w: signature.alg %q: want %q", ErrInvalid, b.Signature.Alg, envelope.Alg)
	}
	pub, err := base64.StdEncoding.DecodeString(b.Signature.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return Record{}, fmt.Errorf("%w: signature.public_key: want the base64 of 32 bytes", ErrInvalid)
	}
	if len(trusted) != ed25519.PublicKeySize || !bytes.Equal(pub, trusted) {
		return Record{}, fmt.Errorf("%w: signed by %s, not by %s", ErrOtherKey, NodeID(pub), NodeID(trusted))
	}
	if b.Signature.KeyID != envelope.KeyID(pub) {
		return Record{}, fmt.Errorf("%w: signature.key_id %q does not name its public key (%s)", ErrInvalid, b.Signature.KeyID, envelope.KeyID(pub))
	}
	if r.Node != NodeID(pub) {
		return Record{}, fmt.Errorf("%w: record.node %q is not the signing key %s", ErrInvalid, r.Node, NodeID(pub))
	}
	if got := envelope.Digest(canon); b.Digest != got {
		return Record{}, fmt.Errorf("%w: digest %s, the record's is %s", ErrDigest, b.Digest, got)
	}
	sig, err := base64.StdEncoding.DecodeString(b.Signature.Value)
	if err != nil || !ed25519.Verify(pub, append([]byte(Domain), canon...), sig) {
		return Record{}, fmt.Errorf("%w: usage record of run %s", ErrSignature, r.RunID)
	}
	return r, nil
}

// Totals are sums over many records.
type Totals struct {
	Runs     int                `json:"runs"`
	WallNS   int64              `json:"wall_ns"`
	CPUNS    int64              `json:"cpu_ns"`
	Counters map[string]float64 `json:"counters"`
	// CountersDropped sums the records' refused counter reports.
	CountersDropped int `json:"counters_dropped"`
	// NetworkRx and NetworkTx sum the records' network bytes.
	NetworkRx int64 `json:"network_rx_bytes,omitempty"`
	NetworkTx int64 `json:"network_tx_bytes,omitempty"`
}

// Add adds r to t.
func (t *Totals) Add(r Record) {
	t.Runs++
	t.WallNS += r.WallNS
	t.CPUNS += r.CPUNS
	t.CountersDropped += r.CountersDropped
	t.NetworkRx += r.NetworkRx
	t.NetworkTx += r.NetworkTx
	if t.Counters == nil {
		t.Counters = map[string]float64{}
	}
	for k, v := range r.Counters {
		t.Counters[k] += v
	}
}
