// Package archive packs a service directory into a deterministic tar.gz,
// unpacks a submitted tar.gz safely (every entry checked, every size capped
// while streaming, nothing left behind on error), and computes the service's
// canonical digest: the sha256 that signatures sign and that stays the same
// however the archive was produced.
//
// Every function is safe for concurrent use.
//
// It does not parse manifests, fetch archives, store artifacts or decide what
// an archive may contain beyond safety; those belong to manifest, store and
// policy.
//
// # Canonical digest
//
// The digest describes the tree an archive unpacks to, not the archive's
// bytes, so the same files packed by Pack, GNU tar or git archive, at
// any gzip level, in any entry order, with any mtimes, owners or permission
// bits other than the exec bit, give the same digest. It is computed as:
//
//  1. Take every node of the tree except its root and the root's MetaDir
//     (".andromeda", where attestations live; an archive may not carry it): each directory (listed in
//     the archive or only implied by a deeper path), regular file (a hard
//     link counts as a regular file with its target's content and exec bit)
//     and symlink. Its path is slash-separated, relative, path.Clean'ed,
//     with no leading "./" and no trailing "/". Paths are valid UTF-8 without
//     control characters, so they hold no tab or newline.
//  2. Sort the nodes by path, comparing bytes.
//  3. Write one line per node, its fields separated by a tab and ended by a
//     newline, as shown below.
//  4. The digest is "sha256:" followed by the lowercase hex sha256 of all the
//     lines concatenated. An empty tree hashes the empty string.
//
// The lines, with <TAB> for "\t" and <LF> for "\n":
//
//	dir<TAB>path<LF>
//	file<TAB>path<TAB>mode<TAB>size<TAB>sha256<LF>
//	symlink<TAB>path<TAB>target<LF>
//
// mode is "755" if any exec bit is set and "644" otherwise; size is the
// content length in decimal; sha256 is the lowercase hex sha256 of the
// content; target is the symlink target exactly as stored.
//
// For example, a directory holding bin/run (executable, "hi\n") and a symlink
// run -> bin/run hashes the three lines
//
//	dir	bin
//	file	bin/run	755	3	98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4
//	symlink	run	bin/run
//
// so its digest is
// sha256:3f27045965703b7f0143840d0e8b63ff586d63235ae21c0b9ca8e2f6a22126b8.
//
// # Errors
//
// Every rule an archive breaks is reported as an *Error naming the entry and
// the rule, wrapping one of ErrUnsafe, ErrTooLarge or ErrFormat. The HTTP
// layer maps ErrTooLarge to 413 and ErrUnsafe and ErrFormat to 400. Any other
// error (the destination exists, the disk is full, the reader failed) is the
// node's or the transport's, not the archive's, and is returned wrapped as is.
package archive

import (
	"errors"
	"fmt"
	"strconv"
)

var (
	// ErrUnsafe marks an entry that breaks a safety rule: a path escaping the
	// service directory, a link out of the tree, a device node, a duplicate.
	// HTTP 400.
	ErrUnsafe = errors.New("unsafe archive entry")
	// ErrTooLarge marks an archive over one of its Limits: compressed or
	// total size, one file's size, entry count, compression ratio. HTTP 413.
	ErrTooLarge = errors.New("archive too large")
	// ErrFormat marks input that is not a well-formed tar.gz: not gzip,
	// corrupt, truncated, or with trailing garbage. HTTP 400.
	ErrFormat = errors.New("malformed archive")
)

// Error is a rule an archive (or a directory being packed) breaks. It wraps
// its Kind, so errors.Is(err, ErrTooLarge) picks the HTTP status, and its
// Cause, if any.
type Error struct {
	Entry string // entry name as given in the archive, or path relative to the packed directory; empty when the error concerns the whole stream
	Rule  string // the rule broken, e.g. "path escapes the service directory"
	Kind  error  // ErrUnsafe, ErrTooLarge or ErrFormat
	Cause error  // the underlying error, e.g. from compress/gzip; may be nil
}

func (e *Error) Error() string {
	s := "archive: "
	if e.Entry != "" {
		s += strconv.Quote(e.Entry) + ": "
	}
	s += e.Rule
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns Kind and Cause.
func (e *Error) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Cause}
}

func refuse(entry, format string, args ...any) *Error {
	return &Error{Entry: entry, Rule: fmt.Sprintf(format, args...), Kind: ErrUnsafe}
}

func tooLarge(entry, format string, args ...any) *Error {
	return &Error{Entry: entry, Rule: fmt.Sprintf(format, args...), Kind: ErrTooLarge}
}

func malformed(entry, rule string, cause error) *Error {
	return &Error{Entry: entry, Rule: rule, Kind: ErrFormat, Cause: cause}
}

// Limits caps what Unpack and Inspect accept. Every cap is enforced while the
// archive streams in, so an oversized or bomb archive is stopped as soon as it
// crosses one, before its content is written. A zero field takes its default;
// a negative field is invalid.
type Limits struct {
	// MaxCompressed caps the bytes read from the input. Default 16 MiB.
	MaxCompressed int64
	// MaxSize caps the total bytes of regular files (hard links count as
	// copies). The decompressed tar stream as a whole, headers and padding
	// included, is capped at MaxSize + 4 KiB per MaxEntries + 1 MiB.
	// Default 64 MiB.
	MaxSize int64
	// MaxFileSize caps the bytes of one regular file. Default 32 MiB.
	MaxFileSize int64
	// MaxEntries caps the nodes of the tree: files, symlinks and
	// directories, listed or implied by a deeper path. Default 4096.
	MaxEntries int
	// MaxPathLen caps an entry's clean path, in bytes. Default 1024.
	MaxPathLen int
	// MaxDepth caps the elements of an entry's clean path. Default 32.
	MaxDepth int
	// MaxRatio caps decompressed tar bytes per compressed byte read, checked
	// once RatioFloor bytes have been decompressed. Default 100.
	MaxRatio int64
	// RatioFloor is how many bytes may be decompressed before MaxRatio
	// applies, so small archives of very compressible files are not refused.
	// Default 1 MiB.
	RatioFloor int64
}

// DefaultLimits returns the limits a node applies unless its operator
// configures others.
func DefaultLimits() Limits {
	return Limits{
		MaxCompressed: 16 << 20,
		MaxSize:       64 << 20,
		MaxFileSize:   32 << 20,
		MaxEntries:    4096,
		MaxPathLen:    1024,
		MaxDepth:      32,
		MaxRatio:      100,
		RatioFloor:    1 << 20,
	}
}

// Validate reports a negative field. Zero fields are valid: they take their
// defaults.
func (l Limits) Validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxCompressed", l.MaxCompressed},
		{"MaxSize", l.MaxSize},
		{"MaxFileSize", l.MaxFileSize},
		{"MaxEntries", int64(l.MaxEntries)},
		{"MaxPathLen", int64(l.MaxPathLen)},
		{"MaxDepth", int64(l.MaxDepth)},
		{"MaxRatio", l.MaxRatio},
		{"RatioFloor", l.RatioFloor},
	} {
		if f.v < 0 {
			return fmt.Errorf("archive: limits: %s is negative (%d)", f.name, f.v)
		}
	}
	return nil
}

// withDefaults validates l and fills its zero fields from DefaultLimits.
func (l Limits) withDefaults() (Limits, error) {
	if err := l.Validate(); err != nil {
		return l, err
	}
	d := DefaultLimits()
	set := func(v *int64, def int64) {
		if *v == 0 {
			*v = def
		}
	}
	set(&l.MaxCompressed, d.MaxCompressed)
	set(&l.MaxSize, d.MaxSize)
	set(&l.MaxFileSize, d.MaxFileSize)
	set(&l.MaxRatio, d.MaxRatio)
	set(&l.RatioFloor, d.RatioFloor)
	if l.MaxEntries == 0 {
		l.MaxEntries = d.MaxEntries
	}
	if l.MaxPathLen == 0 {
		l.MaxPathLen = d.MaxPathLen
	}
	if l.MaxDepth == 0 {
		l.MaxDepth = d.MaxDepth
	}
	return l, nil
}

// Info describes the tree an archive or directory holds.
type Info struct {
	Digest string // "sha256:<hex>" over the canonical form (see the package doc)
	Files  int    // regular files (hard links included) and symlinks
	Dirs   int    // directories, listed or implied, not counting the root
	Size   int64  // total bytes of regular files
}
