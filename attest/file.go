package attest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/andromeda-runner/andromeda/strictdoc/strictjson"
)

// FileName is where a service directory keeps its attestations, relative
// to the directory. `andromeda attest DIR` writes it and `andromeda submit
// DIR` sends its attestations beside the archive. The .andromeda directory
// is not part of the service: packing must skip it, so that attesting never
// changes the digest being attested.
const FileName = ".andromeda/attestations.json"

// HeaderName is the HTTP request header that carries a submission's
// attestations: the unpadded base64url (RFC 4648 §5) of the JSON array of
// the attestations. EncodeHeader and DecodeHeader convert it.
const HeaderName = "Andromeda-Attestations"

// DelegationsHeaderName is the HTTP request header that carries a
// submission's delegations, beside its attestations: the unpadded base64url
// of the JSON array of the delegations (EncodeDelegationsHeader,
// DecodeDelegationsHeader), at most MaxDelegations of them and MaxEncoded
// bytes.
const DelegationsHeaderName = "Andromeda-Delegations"

// Bounds on what DecodeHeader and ReadDir accept.
const (
	// MaxAttestations is the most attestations one submission or file may
	// carry.
	MaxAttestations = 64
	// MaxEncoded is the longest header value or file, in bytes.
	MaxEncoded = 64 << 10
)

// File is the content of FileName:
//
//	{"attestations": [{"key": …, "digest": …, "signature": …, "signed_at": …}, …],
//	 "delegations": [{"parent": …, "delegate": …, …}, …]}
//
// Attestations are kept sorted by key, one per key; delegations sorted by
// parent and delegate, one per pair. Delegations may be left out.
type File struct {
	Attestations []Attestation `json:"attestations"`
	Delegations  []Delegation  `json:"delegations,omitempty"`
}

// ReadDir returns the attestations in dir's FileName; none, without error,
// when the file does not exist. Decoding is strict (see DecodeFile).
func ReadDir(dir string) ([]Attestation, error) {
	f, err := ReadDirFile(dir)
	return f.Attestations, err
}

// ReadDirFile returns the attestations and delegations in dir's FileName;
// an empty File, without error, when the file does not exist. Decoding is
// strict (see DecodeFileAll).
func ReadDirFile(dir string) (File, error) {
	name := filepath.Join(dir, FileName)
	f, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return File{}, nil
	}
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxEncoded+1))
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", name, err)
	}
	file, err := DecodeFileAll(data)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", name, err)
	}
	return file, nil
}

// DecodeFile decodes the content of an attestations file strictly: one JSON
// object with the single key "attestations", no unknown field, at most
// MaxAttestations entries and MaxEncoded bytes. It checks the structure,
// not the signatures: an attestation whose signature is not base64 decodes,
// and Verify (or policy) says why it never counts.
func DecodeFile(data []byte) ([]Attestation, error) {
	f, err := DecodeFileAll(data)
	return f.Attestations, err
}

// DecodeFileAll decodes an attestations file as DecodeFile does, with its
// delegations: the key "delegations", when present, holds at most
// MaxDelegations of them, decoded strictly; like attestations their
// signatures are not checked here. A file must have "attestations" or
// "delegations".
func DecodeFileAll(data []byte) (File, error) {
	if len(data) > MaxEncoded {
		return File{}, fmt.Errorf("must be at most %d bytes", MaxEncoded)
	}
	var f struct {
		Attestations json.RawMessage `json:"attestations"`
		Delegations  json.RawMessage `json:"delegations"`
	}
	if err := strictjson.Unmarshal(data, &f); err != nil {
		return File{}, err
	}
	if f.Attestations == nil && f.Delegations == nil {
		return File{}, errors.New(`attestations: missing`)
	}
	var out File
	var err error
	if f.Attestations != nil {
		if out.Attestations, err = decodeList(f.Attestations); err != nil {
			return File{}, err
		}
	}
	if f.Delegations != nil {
		if out.Delegations, err = decodeItems[Delegation](f.Delegations, "delegations", MaxDelegations); err != nil {
			return File{}, err
		}
	}
	return out, nil
}

// AddToDir adds a to dir's FileName, replacing any attestation by the same
// key, and writes the file atomically (mode 0644), creating .andromeda if
// needed. The file's delegations are kept.
func AddToDir(dir string, a Attestation) error {
	f, err := ReadDirFile(dir)
	if err != nil {
		return err
	}
	as := slices.DeleteFunc(f.Attestations, func(o Attestation) bool { return o.Key == a.Key })
	as = append(as, a)
	slices.SortFunc(as, func(x, y Attestation) int { return strings.Compare(x.Key, y.Key) })
	if len(as) > MaxAttestations {
		return fmt.Errorf("%s: more than %d attestations", FileName, MaxAttestations)
	}
	f.Attestations = as
	return writeDirFile(dir, f)
}

// AddDelegationToDir adds d to dir's FileName, replacing any delegation
// with the same parent and delegate, and writes the file atomically as
// AddToDir does. The file's attestations are kept.
func AddDelegationToDir(dir string, d Delegation) error {
	f, err := ReadDirFile(dir)
	if err != nil {
		return err
	}
	ds := slices.DeleteFunc(f.Delegations, func(o Delegation) bool { return o.Parent == d.Parent && o.Delegate == d.Delegate })
	ds = append(ds, d)
	slices.SortFunc(ds, func(x, y Delegation) int {
		return strings.Compare(x.Parent+"\n"+x.Delegate, y.Parent+"\n"+y.Delegate)
	})
	if len(ds) > MaxDelegations {
		return fmt.Errorf("%s: more than %d delegations", FileName, MaxDelegations)
	}
	f.Delegations = ds
	return writeDirFile(dir, f)
}

func writeDirFile(dir string, f File) error {
	if f.Attestations == nil {
		f.Attestations = []Attestation{}
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	name := filepath.Join(dir, FileName)
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".attestations-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// EncodeHeader returns the HeaderName value carrying as; "" for none.
func EncodeHeader(as []Attestation) string {
	if len(as) == 0 {
		return ""
	}
	data, err := json.Marshal(as)
	if err != nil {
		panic("attest: encode header: " + err.Error()) // only strings and times
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

// DecodeHeader decodes a HeaderName value: none for "", otherwise the
// base64url (padding optional) of a JSON array of at most MaxAttestations
// attestations, decoded strictly. Like DecodeFile it checks structure, not
// signatures. Errors name the place: "header: not base64url: …",
// "attestations[2].sig: unknown field \"sig\"".
func DecodeHeader(v string) ([]Attestation, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	if len(v) > MaxEncoded {
		return nil, fmt.Errorf("%s header: must be at most %d bytes", HeaderName, MaxEncoded)
	}
	data, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimRight(v, "="))
	if err != nil {
		return nil, fmt.Errorf("%s header: not base64url: %s", HeaderName, trimB64(err))
	}
	return decodeList(data)
}

func decodeList(data []byte) ([]Attestation, error) {
	return decodeItems[Attestation](data, "attestations", MaxAttestations)
}

// decodeItems decodes a JSON array of at most limit objects strictly;
// errors name the list (attestations, delegations) and the item.
func decodeItems[T any](data []byte, list string, limit int) ([]T, error) {
	var raws []json.RawMessage
	if err := strictjson.Unmarshal(data, &raws); err != nil {
		return nil, within(list, err)
	}
	if len(raws) > limit {
		return nil, fmt.Errorf("%s: %d entries, at most %d allowed", list, len(raws), limit)
	}
	as := make([]T, len(raws))
	for i, raw := range raws {
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return nil, fmt.Errorf("%s[%d]: must be an object", list, i)
		}
		if err := strictjson.Unmarshal(raw, &as[i]); err != nil {
			return nil, within(fmt.Sprintf("%s[%d]", list, i), err)
		}
	}
	return as, nil
}

// EncodeDelegationsHeader returns the DelegationsHeaderName value carrying
// ds; "" for none.
func EncodeDelegationsHeader(ds []Delegation) string {
	if len(ds) == 0 {
		return ""
	}
	data, err := json.Marshal(ds)
	if err != nil {
		panic("attest: encode header: " + err.Error()) // only strings, numbers and times
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

// DecodeDelegationsHeader decodes a DelegationsHeaderName value: none for
// "", otherwise the base64url (padding optional) of a JSON array of at most
// MaxDelegations delegations, decoded strictly, at most MaxEncoded bytes.
// It checks structure, not signatures (policy says why a delegation does
// not count). Errors name the place: "delegations[0].share: …".
func DecodeDelegationsHeader(v string) ([]Delegation, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	if len(v) > MaxEncoded {
		return nil, fmt.Errorf("%s header: must be at most %d bytes", DelegationsHeaderName, MaxEncoded)
	}
	data, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimRight(v, "="))
	if err != nil {
		return nil, fmt.Errorf("%s header: not base64url: %s", DelegationsHeaderName, trimB64(err))
	}
	return decodeItems[Delegation](data, "delegations", MaxDelegations)
}

// within places an error of strictjson.Unmarshal on a part of the file or
// header, the value at path, in the whole: attestations[1] and key give
// attestations[1].key.
func within(path string, err error) error {
	var e *strictjson.Error
	if !errors.As(err, &e) {
		return fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case e.Path == "":
	case strings.HasPrefix(e.Path, "["):
		path += e.Path
	default:
		path += "." + e.Path
	}
	return &strictjson.Error{Path: path, Rule: e.Rule}
}

// Check reports every attestation in as that does not parse, naming it:
// "attestations[1].signature: malformed attestation: not base64: input byte
// 4". The CLI uses it to warn before submitting; the node does not reject a
// submission for it (policy reports why such an attestation never counts).
func Check(as []Attestation) error {
	var errs []error
	for i, a := range as {
		if _, err := a.Parse(); err != nil {
			errs = append(errs, fmt.Errorf("attestations[%d].%w", i, err))
		}
	}
	return errors.Join(errs...)
}
