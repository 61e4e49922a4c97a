package attest

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/andromeda-runner/andromeda/strictdoc/strictjson"
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
	// ForwardTo and RedirectDepth, on a forward verdict: the peer the
	// service is sent to and the redirect depth it carries there.
	ForwardTo     string `json:"forward_to,omitempty"`
	RedirectDepth int    `json:"redirect_depth,omitempty"`
	// Path is the nodes (base URLs) a forwarded service came through,
	// oldest first, ending with the signing node when it forwards it.
	Path []string `json:"path,omitempty"`
	// Submitter is who submitted the service to the first node of Path,
	// as that node knows them.
	Submitter string `json:"submitter,omitempty"`
	// Advertise marks a node's offer of a service it runs (verdict run)
	// to the peer ForwardTo, which may run it too; RedirectDepth is then
	// how many more hops the offer may travel from there.
	Advertise bool `json:"advertise,omitempty"`
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

// ForwardHeaderName is the HTTP header a forwarded submission carries: the
// forwarding node's signed receipt of its decision to forward (verdict
// forward, ForwardTo naming the receiving node), or of its decision to run
// a service it advertises (Advertise), standard base64 of its JSON.
const ForwardHeaderName = "Andromeda-Forwarded-By"

// MaxReceiptHeader bounds the header's value.
const MaxReceiptHeader = 64 << 10

// EncodeReceiptHeader encodes r for ForwardHeaderName.
func EncodeReceiptHeader(r Receipt) string {
	data, err := json.Marshal(r)
	if err != nil {
		panic("attest: encode receipt: " + err.Error()) // only strings, ints, bools and a time
	}
	return base64.StdEncoding.EncodeToString(data)
}

// DecodeReceiptHeader decodes a ForwardHeaderName value strictly: nil for
// an empty value; an error naming the header, and the field, otherwise. It
// does not verify the signature (VerifyReceipt).
func DecodeReceiptHeader(v string) (*Receipt, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	if len(v) > MaxReceiptHeader {
		return nil, fmt.Errorf("%s header: must be at most %d bytes", ForwardHeaderName, MaxReceiptHeader)
	}
	data, err := base64.StdEncoding.Strict().DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("%s header: not base64: %s", ForwardHeaderName, trimB64(err))
	}
	var r Receipt
	if err := strictjson.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s header: %w", ForwardHeaderName, within("receipt", err))
	}
	return &r, nil
}
