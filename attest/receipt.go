package attest

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// Receipt is a node's signed record of one admission decision: which code
// (ServiceDigest) was judged by which rules (PolicyDigest), with what
// verdict and reasons, when, and by which node (NodeKey). A peer or an
// auditor keeps receipts and checks them later with VerifyReceipt.
type Receipt struct {
	// Service and Version name the service judged.
	Service string `json:"service"`
	Version string `json:"version"`
	// ServiceDigest is the service's canonical digest.
	ServiceDigest string `json:"service_digest"`
	// PolicyDigest is the digest of the policy that decided (policy's
	// Policy.Digest).
	PolicyDigest string `json:"policy_digest"`
	// Verdict is run, forward or reject.
	Verdict string `json:"verdict"`
	// Reasons are the decision's reasons, in order.
	Reasons []Reason `json:"reasons"`
	// DecidedAt is when the decision was taken, in UTC.
	DecidedAt time.Time `json:"decided_at"`
	// NodeKey is the signing node's public key, "ed25519:<base64>"; set by
	// SignReceipt.
	NodeKey string `json:"node_key"`
	// Signature is the standard base64 of the ed25519 signature of
	// "andromeda receipt v1\n" followed by the receipt's JSON with
	// Signature empty; set by SignReceipt.
	Signature string `json:"signature"`
}

// Reason is one rule's finding, as policy reports it.
type Reason struct {
	Rule   string `json:"rule"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// SignReceipt returns r with NodeKey set to priv's public key and Signature
// set; DecidedAt is converted to UTC first.
func SignReceipt(priv PrivateKey, r Receipt) Receipt {
	r.DecidedAt = r.DecidedAt.UTC()
	r.NodeKey = priv.Public().String()
	r.Signature = ""
	r.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(ed25519.PrivateKey(priv), receiptMessage(r)))
	return r
}

// VerifyReceipt checks r's signature against r.NodeKey. It does not say
// whether that key is a node the caller trusts: compare NodeKey with the
// key you expect. The error names the field and wraps ErrKey, ErrMalformed
// or ErrInvalid.
func VerifyReceipt(r Receipt) error {
	key, err := ParsePublicKey(r.NodeKey)
	if err != nil {
		return fmt.Errorf("node_key: %w", err)
	}
	sig, err := ParseSignature(r.Signature)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	r.Signature = ""
	if !ed25519.Verify(ed25519.PublicKey(key), receiptMessage(r), sig) {
		return fmt.Errorf("signature: %w", ErrInvalid)
	}
	return nil
}

func receiptMessage(r Receipt) []byte {
	if r.Reasons == nil {
		r.Reasons = []Reason{} // null and [] sign the same
	}
	data, err := json.Marshal(r)
	if err != nil {
		panic("attest: encode receipt: " + err.Error()) // only strings, bools and a time
	}
	return append([]byte("andromeda receipt v1\n"), data...)
}
