package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/decision"
	"github.com/andromeda-runner/andromeda/strictdoc/strictjson"
)

// SeedBackend takes the KLYNTAR service object on POST /service. A Backend
// that does not implement it answers that shape 501; a manifest body is
// SubmitSource's either way.
type SeedBackend interface {
	// SubmitSeed translates obj to a manifest and submits it like an
	// archive; the translation is in the decision's reasons.
	SubmitSeed(ctx context.Context, p Principal, obj api.SeedService, o api.SubmitOptions) (api.SubmitResult, error)
}

// Bounds of the seed object's strings, those of the manifest fields they
// become.
const (
	seedMaxTitle = 80
	seedMaxDesc  = 4096
)

// seedOnlyKeys are top-level keys a manifest never has (it says
// description and source.location): a body with any of them is the seed's
// object.
var seedOnlyKeys = []string{"desc", "archive", "location"}

// IsSeedService reports whether a POST /service body, a JSON object's
// top-level fields, is the KLYNTAR service object rather than an Andromeda
// manifest: it has desc, archive or a top-level location, or a title and no
// name. Anything else is read as a manifest, as before the seed object was
// understood.
func IsSeedService(fields map[string]json.RawMessage) bool {
	for _, k := range seedOnlyKeys {
		if _, ok := fields[k]; ok {
			return true
		}
	}
	_, title := fields["title"]
	_, name := fields["name"]
	return title && !name
}

// DecodeSeedService decodes the KLYNTAR service object strictly: title
// (1 to 80 characters on one line) and desc (at most 4096 characters) are
// required, and exactly one of location (an URL) and archive (standard
// base64 of at most maxArchive bytes); keywords (strings), reward (a number
// of KLY or {amount, unit}), and one of origin ("kind:id;stake=N"),
// symbiote or hostchain (an id, with an optional freeze ≥ 0) are optional.
// A known field of the wrong type or out of its bounds is an error naming
// it; an unknown field is not an error: it is listed in Unused, for the node
// to report. The error is an *Error of kind ErrInvalid listing every
// problem, or ErrTooLarge for an archive above maxArchive.
func DecodeSeedService(body []byte, maxArchive int64) (api.SeedService, error) {
	var fields map[string]json.RawMessage
	if err := strictjson.Unmarshal(body, &fields); err != nil {
		var se *strictjson.Error
		if errors.As(err, &se) && se.Path == "" && strings.HasPrefix(se.Rule, "must be") {
			return api.SeedService{}, Errorf(ErrInvalid, "service object: must be a JSON object with title, desc and archive or location")
		}
		return api.SeedService{}, Errorf(ErrInvalid, "service object: %v", err)
	}
	if fields == nil {
		return api.SeedService{}, Errorf(ErrInvalid, "service object: must be a JSON object with title, desc and archive or location")
	}
	var (
		obj      api.SeedService
		problems []string
		tooLarge bool
	)
	fail := func(field, format string, args ...any) {
		problems = append(problems, field+": "+fmt.Sprintf(format, args...))
	}
	// str decodes a string field; ok is false (and the problem noted) when
	// it is not one.
	str := func(field string, raw json.RawMessage) (string, bool) {
		var s string
		if err := strictjson.Unmarshal(raw, &s); err != nil || string(raw) == "null" {
			fail(field, "must be a string")
			return "", false
		}
		return s, true
	}
	var origins []string
	var freeze *float64
	for _, key := range sortedKeys(fields) {
		raw := fields[key]
		switch key {
		case "title":
			s, ok := str(key, raw)
			s = strings.TrimSpace(s)
			switch {
			case !ok:
			case s == "":
				fail(key, "must not be empty")
			case utf8.RuneCountInString(s) > seedMaxTitle:
				fail(key, "must be at most %d characters, got %d", seedMaxTitle, utf8.RuneCountInString(s))
			case strings.IndexFunc(s, unicode.IsControl) >= 0:
				fail(key, "must be one line without control characters")
			default:
				obj.Title = s
			}
		case "desc":
			s, ok := str(key, raw)
			s = strings.TrimSpace(s)
			switch {
			case !ok:
			case utf8.RuneCountInString(s) > seedMaxDesc:
				fail(key, "must be at most %d characters, got %d", seedMaxDesc, utf8.RuneCountInString(s))
			case strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0:
				fail(key, "must have no control characters but newlines and tabs")
			default:
				obj.Desc = s
			}
		case "location":
			if s, ok := str(key, raw); ok {
				if obj.Location = strings.TrimSpace(s); obj.Location == "" {
					fail(key, "must not be empty")
				}
			}
		case "archive":
			s, ok := str(key, raw)
			switch {
			case !ok:
			case strings.TrimSpace(s) == "":
				fail(key, "must not be empty: the base64 of the service's tar.gz")
			default:
				b, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					fail(key, "must be standard base64 (RFC 4648, with padding) of a tar.gz: %v", err)
				} else if int64(len(b)) > maxArchive {
					tooLarge = true
					fail(key, "the archive is %d bytes, more than the %d this node takes", len(b), maxArchive)
				} else {
					obj.Archive = b
				}
			}
		case "keywords":
			var kw []string
			if err := strictjson.Unmarshal(raw, &kw); err != nil {
				fail(key, "must be a list of strings")
			} else {
				obj.Keywords = kw
			}
		case "reward":
			obj.Reward = decodeReward(raw, fail)
		case "origin":
			origins = append(origins, key)
			if s, ok := str(key, raw); ok {
				o, err := decision.ParseOriginClaim(s)
				if err != nil {
					fail(key, "%v", err)
				} else {
					obj.Origin = o
				}
			}
		case "symbiote", "hostchain":
			origins = append(origins, key)
			if s, ok := str(key, raw); ok {
				if s = strings.TrimSpace(s); !decision.ValidOriginID(s) {
					fail(key, "must be an id of 1 to 128 printable characters without spaces")
				} else {
					obj.Origin.Kind, obj.Origin.ID = key, s
				}
			}
		case "freeze":
			var f float64
			if err := strictjson.Unmarshal(raw, &f); err != nil || string(raw) == "null" || f < 0 {
				fail(key, "must be a number ≥ 0 (the submitter's freeze, its stake at the origin)")
			} else {
				freeze = &f
			}
		default:
			obj.Unused = append(obj.Unused, key)
		}
	}
	if _, ok := fields["title"]; !ok {
		fail("title", "required: the KLYNTAR runner reads service.title")
	}
	if _, ok := fields["desc"]; !ok {
		fail("desc", "required: the KLYNTAR runner reads service.desc")
	}
	_, hasLoc := fields["location"]
	_, hasArc := fields["archive"]
	switch {
	case hasLoc && hasArc:
		fail("location, archive", "give one of them, not both")
	case !hasLoc && !hasArc:
		fail("archive", "required: give the service as archive (the base64 of its tar.gz) or location (its https URL)")
	}
	if len(origins) > 1 {
		fail(strings.Join(origins, ", "), "give at most one origin")
	}
	if freeze != nil {
		switch {
		case obj.Origin.Kind != "symbiote" && obj.Origin.Kind != "hostchain":
			fail("freeze", "only with symbiote or hostchain (origin carries its stake as ;stake=N)")
		case math.IsInf(*freeze, 0) || math.IsNaN(*freeze):
			fail("freeze", "must be a finite number")
		default:
			obj.Origin.Stake = *freeze
		}
	}
	if len(problems) > 0 {
		kind := ErrInvalid
		if tooLarge {
			kind = ErrTooLarge
		}
		msg := "service object: " + problems[0]
		if len(problems) > 1 {
			msg = fmt.Sprintf("service object: %d problems", len(problems))
		}
		return api.SeedService{}, &Error{Kind: kind, Msg: msg, Problems: problemsIf(problems)}
	}
	return obj, nil
}

// problemsIf is the problems list of an error with more than one; a single
// problem is the message itself.
func problemsIf(p []string) []string {
	if len(p) < 2 {
		return nil
	}
	return p
}

// decodeReward reads reward: a number of KLY, or {amount, unit}.
func decodeReward(raw json.RawMessage, fail func(field, format string, args ...any)) *api.SeedReward {
	var amount float64
	if err := strictjson.Unmarshal(raw, &amount); err == nil && string(raw) != "null" {
		if amount < 0 {
			fail("reward", "must be ≥ 0")
			return nil
		}
		return &api.SeedReward{Amount: amount, Unit: "KLY"}
	}
	var r struct {
		Amount *float64 `json:"amount"`
		Unit   string   `json:"unit"`
	}
	if err := strictjson.Unmarshal(raw, &r); err != nil || string(raw) == "null" {
		var se *strictjson.Error
		if errors.As(err, &se) && se.Path != "" {
			fail("reward."+se.Path, "%s", se.Rule)
		} else {
			fail("reward", "must be a number of KLY or {amount, unit}")
		}
		return nil
	}
	if r.Amount == nil || *r.Amount < 0 {
		fail("reward.amount", "required, a number ≥ 0")
		return nil
	}
	if r.Unit == "" {
		r.Unit = "KLY"
	}
	return &api.SeedReward{Amount: *r.Amount, Unit: r.Unit}
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// readSeedBody reads a POST /service body: room for a manifest
// (MaxJSONBytes) plus the base64 of an archive of MaxArchiveBytes (with
// line breaks), at the upload pace a submission keeps (UploadMinRate).
func (s *Server) readSeedBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	enc := int64(base64.StdEncoding.EncodedLen(int(min(s.cfg.MaxArchiveBytes, math.MaxInt32))))
	limit := s.cfg.MaxJSONBytes + enc + enc/38
	upload := &uploadBody{ReadCloser: r.Body, rc: http.NewResponseController(w), start: time.Now(), grace: s.cfg.ReadTimeout, rate: s.cfg.UploadMinRate}
	return io.ReadAll(http.MaxBytesReader(w, upload, limit))
}

// seedSubmit submits a POST /service body by its shape (IsSeedService):
// the seed object to the SeedBackend, a manifest to SubmitSource as
// before, within MaxJSONBytes.
func (s *Server) seedSubmit(ctx context.Context, p Principal, body []byte, o api.SubmitOptions) (api.SubmitResult, error) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil || !IsSeedService(fields) {
		if int64(len(body)) > s.cfg.MaxJSONBytes {
			return api.SubmitResult{}, Errorf(ErrTooLarge, "a manifest on POST /service is at most %d bytes, got %d", s.cfg.MaxJSONBytes, len(body))
		}
		return s.b.SubmitSource(ctx, p, body, o)
	}
	sb, ok := s.b.(SeedBackend)
	if !ok {
		return api.SubmitResult{}, Errorf(ErrInvalid, "service object: this node takes only manifests with source.location on POST /service")
	}
	obj, err := DecodeSeedService(body, s.cfg.MaxArchiveBytes)
	if err != nil {
		return api.SubmitResult{}, err
	}
	if !obj.Origin.IsZero() && !o.Origin.IsZero() && obj.Origin != o.Origin {
		return api.SubmitResult{}, Errorf(ErrInvalid, "service object: origin %s differs from the %s header's %s; give one", obj.Origin, decision.OriginHeader, o.Origin)
	}
	return sb.SubmitSeed(ctx, p, obj, o)
}

// seedAdmitted is the Andromeda-Reason of an OK: what was admitted.
func seedAdmitted(res api.SubmitResult) string {
	what := "admitted"
	if res.Unchanged {
		what = "unchanged"
	}
	return fmt.Sprintf("%s %s %s (%s)", what, res.Service.Name, res.Service.Version, res.Service.Digest)
}
