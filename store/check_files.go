package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/highwayhash"

	"github.com/andromeda-runner/andromeda/bus"
)

// The embedded server's file store, read without the server.
//
// Why: the server recovers a damaged block by truncating it at the first
// record that fails its checksum, so every intact record after the damage is
// gone once it has started, and it says so only in a warning (StreamInfo's
// Lost stays empty). Random bytes in the middle of a block are worse: the
// server trusts its index (index.db) when the block's last checksum still
// matches, counts the damaged record as present and then cannot read it, so
// a KV watcher waits for it forever. So the node reads the block files before
// the server starts: CheckFiles reports what is damaged, and RepairFiles
// rewrites a damaged block with every intact record (each record carries its
// own sequence and checksum, so records after the damage are found again),
// keeping the original in <dir>/damaged/.
//
// The format (nats-server filestore, msgs/<n>.blk): records of
//
//	total_len(4) seq(8) ts(8) subj_len(2) subj [hdr_len(4) hdr] msg hash(8)
//
// little endian; the high bit of total_len says headers follow; the hash is
// highwayhash-64 keyed by sha256("<stream>-<n>") over seq, ts, subject,
// headers and message. msgs/index.db starts with a magic byte, a version
// and uvarints msgs, bytes, first seq, (varint) first time, last seq,
// (varint) last time, and ends with a highwayhash-64 keyed by
// sha256("<stream>").
const (
	recHdrSize    = 22 // total_len, seq, ts, subj_len
	recHashSize   = 8
	recMinLen     = recHdrSize + recHashSize
	recMaxLen     = 32 << 20 // the server's own sanity bound
	recHeaderBit  = 1 << 31
	seqErasedBit  = 1 << 63
	seqTombBit    = 1 << 62
	indexMagic    = 11
	indexMaxVer   = 4
	blockSuffix   = ".blk"
	indexFile     = "index.db"
	damagedDir    = "damaged"
	resyncSeqSpan = 1 << 24 // how far past the last good sequence a record found after damage may be
)

// FileReport is what CheckFiles or RepairFiles found in the block files of
// an embedded server's data dir.
type FileReport struct {
	// Dir is the data dir that was read (the bus data dir, <data>/nats).
	Dir string `json:"dir"`
	// Streams has one entry per stream found, by name.
	Streams []StreamFiles `json:"streams"`
	// Quarantine is where RepairFiles moved the damaged originals; empty
	// when nothing was rewritten.
	Quarantine string `json:"quarantine,omitempty"`
	// Took is how long the scan (and repair) took.
	Took time.Duration `json:"took"`
}

// StreamFiles is what the block files of one stream hold.
type StreamFiles struct {
	Stream string `json:"stream"`
	Blocks int    `json:"blocks"`
	Bytes  int64  `json:"bytes"`
	// Records is how many intact records the files hold (messages, including
	// those the server has since deleted but not yet compacted, and
	// delete markers).
	Records int `json:"records"`
	// Damage lists every byte range that is not an intact record.
	Damage []DamagedRange `json:"damage,omitempty"`
	// Salvaged is how many intact records lie after a damaged range in
	// their block: the server alone would drop them; RepairFiles keeps them.
	Salvaged int `json:"salvaged,omitempty"`
	// Dropped is how many sequences fall inside damaged ranges: records
	// that cannot be read (an upper bound: some may have been deleted
	// already).
	Dropped uint64 `json:"dropped,omitempty"`
	// Missing is how many sequences the index recorded past the last one
	// found in the files: records cut off the end of the stream (an upper
	// bound, as Dropped).
	Missing uint64 `json:"missing,omitempty"`
	// IndexMsgs and IndexLastSeq are what the stream's index recorded when
	// the server last wrote it (zero when it has none or it is unreadable).
	IndexMsgs    uint64 `json:"index_msgs,omitempty"`
	IndexLastSeq uint64 `json:"index_last_seq,omitempty"`
	// LastSeq is the highest sequence found in the files.
	LastSeq uint64 `json:"last_seq"`
	// TornTail is the length of a record cut short at the end of the
	// stream, past what the index knew: the unacknowledged write of a
	// killed process, which the server drops at start. Not damage.
	TornTail int64 `json:"torn_tail,omitempty"`
	// Repaired says RepairFiles rewrote this stream's damaged blocks.
	Repaired bool `json:"repaired,omitempty"`

	indexLastTime int64 // of IndexLastSeq, unix nanoseconds
}

// DamagedRange is a byte range of a block file that holds no intact record.
type DamagedRange struct {
	Block  string `json:"block"` // file name, e.g. 1.blk
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	// After is the last sequence read intact before the range; Next the
	// first after it (0: none, the damage runs to the end of the stream).
	After  uint64 `json:"after"`
	Next   uint64 `json:"next,omitempty"`
	Reason string `json:"reason"`
}

// Damaged reports whether the stream's files lost anything.
func (f StreamFiles) Damaged() bool { return len(f.Damage) > 0 || f.Missing > 0 }

// Damaged lists the streams whose files lost anything.
func (r FileReport) Damaged() []StreamFiles {
	var out []StreamFiles
	for _, s := range r.Streams {
		if s.Damaged() {
			out = append(out, s)
		}
	}
	return out
}

// Stream returns the files report of one stream (zero when absent).
func (r FileReport) Stream(name string) StreamFiles {
	for _, s := range r.Streams {
		if s.Stream == name {
			return s
		}
	}
	return StreamFiles{Stream: name}
}

// Problem says in one sentence what is wrong with the stream's files, or ""
// when nothing is.
func (f StreamFiles) Problem() string {
	if !f.Damaged() {
		return ""
	}
	var parts []string
	if n := len(f.Damage); n > 0 {
		var bs int64
		for _, d := range f.Damage {
			bs += d.Length
		}
		p := fmt.Sprintf("%d damaged range(s), %d bytes (first in %s at offset %d: %s)", n, bs, f.Damage[0].Block, f.Damage[0].Offset, f.Damage[0].Reason)
		if f.Dropped > 0 {
			p += fmt.Sprintf(", up to %d record(s) unreadable", f.Dropped)
		} else {
			p += ", an unknown number of records unreadable"
		}
		if f.Salvaged > 0 {
			p += fmt.Sprintf(", %d intact record(s) after the damage", f.Salvaged)
		}
		parts = append(parts, p)
	}
	if f.Missing > 0 {
		parts = append(parts, fmt.Sprintf("the index recorded %d record(s) up to sequence %d but the files end at sequence %d: up to %d record(s) missing", f.IndexMsgs, f.IndexLastSeq, f.LastSeq, f.Missing))
	}
	return strings.Join(parts, "; ")
}

// critical reports whether the node cannot run without stream intact:
// every stream but the run records (history the node can lose with a
// warning) and the store's bookkeeping (rebuilt from what is there).
func critical(stream string) bool {
	return stream != bus.StreamRuns && stream != kvStream(bucketMeta)
}

// CheckFiles reads the block files of every stream under dir, the data dir
// of an embedded NATS server (the node's <data>/nats), verifying every
// record's checksum. It changes nothing. No server may be running on dir: a
// running server's files change under the reader. A dir without JetStream
// files gives an empty report.
func CheckFiles(dir string) (FileReport, error) {
	return scanFiles(dir, false)
}

// RepairFiles rewrites every damaged block under dir keeping each intact
// record, including those after the damage, with their own sequences; the
// server then rebuilds the stream's state from the blocks (its index is
// removed), counting the unreadable sequences as deleted. The originals
// (blocks and index) go to <dir>/damaged/<time>/<stream>/. A stream whose
// records were cut off the end is left as it is: the server keeps its last
// sequence. No server may be running on dir.
func RepairFiles(dir string) (FileReport, error) {
	return scanFiles(dir, true)
}

// PrepareFiles is what a node runs on its data dir before it starts the
// embedded server: it checks the block files, and
//   - when a stream the node cannot do without (all but the run records
//     and the store's bookkeeping) is damaged and repair is false, it
//     changes nothing and returns an error wrapping ErrDamaged that says
//     what is damaged and how to go on;
//   - otherwise it repairs what is damaged (run records always: the server
//     would otherwise drop the intact records after the damage) and
//     returns what it found and did.
func PrepareFiles(dir string, repair bool) (FileReport, error) {
	rep, err := CheckFiles(dir)
	if err != nil {
		return rep, err
	}
	damaged := rep.Damaged()
	if len(damaged) == 0 {
		return rep, nil
	}
	if !repair {
		var msgs []string
		for _, s := range damaged {
			if critical(s.Stream) {
				msgs = append(msgs, fmt.Sprintf("%s (%s): %s", kindOf(s.Stream), s.Stream, s.Problem()))
			}
		}
		if len(msgs) > 0 {
			return rep, damagedError(strings.Join(msgs, "; "), filepath.Dir(dir))
		}
	}
	took := rep.Took
	rep, err = RepairFiles(dir)
	rep.Took += took
	return rep, err
}

// damagedError is the error a node refuses to start with.
func damagedError(what, data string) error {
	return fmt.Errorf("store: %s: %w; nothing was changed. See what is damaged with `andromeda store check --data %s`, then either start with --repair (unreadable records are dropped and listed in the log; the damaged files are kept under %s) or restore a backup with `andromeda store restore`",
		what, ErrDamaged, data, filepath.Join(data, "nats", damagedDir))
}

func scanFiles(dir string, repair bool) (FileReport, error) {
	start := time.Now()
	rep := FileReport{Dir: dir}
	dirs, err := streamDirs(dir)
	if err != nil {
		return rep, err
	}
	var quarantine string
	for _, sd := range dirs {
		sf, blocks, err := scanStream(sd)
		if err != nil {
			return rep, err
		}
		if repair && len(sf.Damage) > 0 {
			if quarantine == "" {
				quarantine = filepath.Join(dir, damagedDir, time.Now().UTC().Format("20060102T150405Z"))
			}
			if err := repairStream(sd, quarantine, sf, blocks); err != nil {
				return rep, err
			}
			sf.Repaired = true
		}
		rep.Streams = append(rep.Streams, sf)
	}
	rep.Quarantine = quarantine
	rep.Took = time.Since(start)
	return rep, nil
}

// streamDir is one stream's msgs dir.
type streamDir struct {
	name string // stream name
	msgs string // path of its msgs dir
}

// streamDirs finds <...>/streams/<name>/msgs under dir, skipping the
// quarantine.
func streamDirs(dir string) ([]streamDir, error) {
	var out []streamDir
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return fs.SkipAll
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if p != dir && d.Name() == damagedDir && filepath.Dir(p) == dir {
			return fs.SkipDir
		}
		if d.Name() == "msgs" && filepath.Base(filepath.Dir(filepath.Dir(p))) == "streams" {
			out = append(out, streamDir{name: filepath.Base(filepath.Dir(p)), msgs: p})
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read %s: %w", dir, err)
	}
	slices.SortFunc(out, func(a, b streamDir) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// block is one parsed block file.
type block struct {
	index uint32
	name  string
	data  []byte
	recs  []record
}

// record is one intact record in a block.
type record struct {
	off, len int
	seq      uint64 // without the erased and tombstone bits
	tomb     bool   // a delete marker
}

func scanStream(sd streamDir) (StreamFiles, []block, error) {
	sf := StreamFiles{Stream: sd.name}
	entries, err := os.ReadDir(sd.msgs)
	if err != nil {
		return sf, nil, fmt.Errorf("store: read %s: %w", sd.msgs, err)
	}
	var blocks []block
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), blockSuffix)
		if !ok || e.IsDir() {
			continue
		}
		idx, err := strconv.ParseUint(n, 10, 32)
		if err != nil {
			continue
		}
		blocks = append(blocks, block{index: uint32(idx), name: e.Name()})
	}
	slices.SortFunc(blocks, func(a, b block) int { return int(a.index) - int(b.index) })
	if ix, ok := readIndex(filepath.Join(sd.msgs, indexFile), sd.name); ok {
		sf.IndexMsgs, sf.IndexLastSeq, sf.indexLastTime = ix.msgs, ix.lastSeq, ix.lastTime
	}
	var last uint64   // highest data sequence so far
	var maxSeq uint64 // highest sequence, delete markers included
	type open struct {
		i     int // index into sf.Damage
		after uint64
	}
	var pending []open // damaged ranges waiting for the next data sequence
	for bi := range blocks {
		b := &blocks[bi]
		data, err := os.ReadFile(filepath.Join(sd.msgs, b.name))
		if err != nil {
			return sf, nil, fmt.Errorf("store: read %s: %w", filepath.Join(sd.msgs, b.name), err)
		}
		b.data = data
		sf.Blocks++
		sf.Bytes += int64(len(data))
		key := sha256.Sum256(fmt.Appendf(nil, "%s-%d", sd.name, b.index))
		hh, err := highwayhash.New64(key[:])
		if err != nil {
			return sf, nil, fmt.Errorf("store: %w", err)
		}
		afterDamage := false
		for off := 0; off < len(data); {
			r, reason := parseRecord(data, off, hh)
			if reason == "" {
				b.recs = append(b.recs, r)
				sf.Records++
				if afterDamage {
					sf.Salvaged++
				}
				maxSeq = max(maxSeq, r.seq)
				if !r.tomb && r.seq > last {
					last = r.seq
					for _, p := range pending {
						sf.Damage[p.i].Next = r.seq
						sf.Dropped += r.seq - p.after - 1
					}
					pending = pending[:0]
				}
				off += r.len
				continue
			}
			next := resync(data, off+1, last, hh)
			end := next
			if next < 0 {
				end = len(data)
			}
			sf.Damage = append(sf.Damage, DamagedRange{Block: b.name, Offset: int64(off), Length: int64(end - off), After: last, Reason: reason})
			pending = append(pending, open{i: len(sf.Damage) - 1, after: last})
			afterDamage = true
			off = end
		}
		if !afterDamage { // only damaged blocks are kept for a repair
			b.data, b.recs = nil, nil
		}
	}
	// A record cut short at the very end of the last block, past
	// everything the index knew, is what a process killed in the middle of
	// a write leaves: the write never returned, so the record was never
	// acknowledged, and the server drops it itself at start. That is a
	// crash, not damage.
	if n := len(sf.Damage); n > 0 && len(blocks) > 0 {
		d, lastBlock := sf.Damage[n-1], blocks[len(blocks)-1]
		cut := strings.HasPrefix(d.Reason, "record cut short") || strings.HasPrefix(d.Reason, "record header cut short")
		if cut && d.Block == lastBlock.name && d.Offset+d.Length == int64(len(lastBlock.data)) &&
			len(pending) > 0 && pending[len(pending)-1].i == n-1 && sf.IndexLastSeq <= last {
			sf.TornTail = d.Length
			sf.Damage = sf.Damage[:n-1]
			pending = pending[:len(pending)-1]
		}
	}
	sf.LastSeq = maxSeq
	// Damage with no data record after it runs to the end of the stream:
	// what is lost is up to the last sequence the index knew.
	for _, p := range pending {
		if sf.IndexLastSeq > p.after {
			sf.Dropped += sf.IndexLastSeq - p.after
		}
	}
	if len(pending) == 0 && sf.IndexLastSeq > maxSeq {
		sf.Missing = min(sf.IndexLastSeq-maxSeq, max(sf.IndexMsgs, 1))
	}
	return sf, blocks, nil
}

// parseRecord checks the record at off: its lengths and its checksum. It
// returns the reason it is not intact, or "".
func parseRecord(buf []byte, off int, hh hashWriter) (record, string) {
	le := binary.LittleEndian
	if off+recHdrSize > len(buf) {
		return record{}, fmt.Sprintf("record header cut short (%d of %d bytes)", len(buf)-off, recHdrSize)
	}
	hdr := buf[off : off+recHdrSize]
	rl := le.Uint32(hdr[0:])
	hasHeaders := rl&recHeaderBit != 0
	rl &^= recHeaderBit
	slen := int(le.Uint16(hdr[20:]))
	shlen := slen
	if hasHeaders {
		shlen += 4
	}
	dlen := int(rl) - recHdrSize
	if rl > recMaxLen || dlen < recHashSize || shlen > dlen-recHashSize {
		return record{}, fmt.Sprintf("record length fields invalid (length %d, subject length %d)", rl, slen)
	}
	if off+int(rl) > len(buf) {
		return record{}, fmt.Sprintf("record cut short (%d of %d bytes)", len(buf)-off, rl)
	}
	data := buf[off+recHdrSize : off+int(rl)]
	hh.Reset()
	hh.Write(hdr[4:20])
	hh.Write(data[:slen])
	if hasHeaders {
		hh.Write(data[slen+4 : dlen-recHashSize])
	} else {
		hh.Write(data[slen : dlen-recHashSize])
	}
	var sum [recHashSize]byte
	if !bytes.Equal(hh.Sum(sum[:0]), data[dlen-recHashSize:]) {
		return record{}, "checksum mismatch"
	}
	seq := le.Uint64(hdr[4:])
	return record{off: off, len: int(rl), seq: seq &^ (seqErasedBit | seqTombBit), tomb: seq&seqTombBit != 0}, ""
}

// hashWriter is the part of hash.Hash64 parseRecord uses.
type hashWriter interface {
	io.Writer
	Reset()
	Sum([]byte) []byte
}

// resync finds the first offset at or after from where an intact record
// starts whose sequence is plausible after last, or -1.
func resync(buf []byte, from int, last uint64, hh hashWriter) int {
	le := binary.LittleEndian
	for off := from; off+recMinLen <= len(buf); off++ {
		rl := le.Uint32(buf[off:]) &^ recHeaderBit
		if rl < recMinLen || rl > recMaxLen || off+int(rl) > len(buf) {
			continue
		}
		raw := le.Uint64(buf[off+4:])
		seq := raw &^ (seqErasedBit | seqTombBit)
		if raw&seqTombBit == 0 && (seq <= last || seq > last+resyncSeqSpan) {
			continue
		}
		if raw&seqTombBit != 0 && (rl != recMinLen || seq > last+resyncSeqSpan) {
			continue
		}
		if _, reason := parseRecord(buf, off, hh); reason == "" {
			return off
		}
	}
	return -1
}

// indexState is the head of an index.db.
type indexState struct {
	msgs, lastSeq uint64
	lastTime      int64
}

// readIndex reads the message count and last sequence an index.db
// recorded; ok is false when there is none or it fails its checksum or
// version check.
func readIndex(path, stream string) (ix indexState, ok bool) {
	buf, err := os.ReadFile(path)
	if err != nil || len(buf) < 2+recHashSize+6 {
		return ix, false
	}
	key := sha256.Sum256([]byte(stream))
	hh, err := highwayhash.New64(key[:])
	if err != nil {
		return ix, false
	}
	body, sum := buf[:len(buf)-recHashSize], buf[len(buf)-recHashSize:]
	hh.Write(body)
	if !bytes.Equal(hh.Sum(nil), sum) || body[0] != indexMagic || body[1] < 1 || body[1] > indexMaxVer {
		return ix, false
	}
	// msgs, bytes, first seq, first time (signed), last seq, last time (signed)
	p := body[2:]
	var vals [6]uint64
	for i := range vals {
		var n int
		if i == 3 || i == 5 {
			var v int64
			v, n = binary.Varint(p)
			vals[i] = uint64(v)
		} else {
			vals[i], n = binary.Uvarint(p)
		}
		if n <= 0 {
			return ix, false
		}
		p = p[n:]
	}
	return indexState{msgs: vals[0], lastSeq: vals[4], lastTime: int64(vals[5])}, true
}

// repairStream rewrites the stream's damaged blocks with their intact
// records and removes its index, moving the originals to quarantine first.
func repairStream(sd streamDir, quarantine string, sf StreamFiles, blocks []block) error {
	qdir := filepath.Join(quarantine, sd.name)
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return fmt.Errorf("store: repair %s: %w", sd.name, err)
	}
	damaged := map[string]bool{}
	for _, d := range sf.Damage {
		damaged[d.Block] = true
	}
	for _, b := range blocks {
		if !damaged[b.name] {
			continue
		}
		if err := os.WriteFile(filepath.Join(qdir, b.name), b.data, 0o600); err != nil {
			return fmt.Errorf("store: repair %s: keep the damaged block: %w", sd.name, err)
		}
		var out []byte
		for _, r := range b.recs {
			out = append(out, b.data[r.off:r.off+r.len]...)
		}
		if err := writeFileSync(filepath.Join(sd.msgs, b.name), out); err != nil {
			return fmt.Errorf("store: repair %s: %w", sd.name, err)
		}
	}
	// The index counts the damaged records as present: without it the
	// server rebuilds the state from the blocks.
	idx := filepath.Join(sd.msgs, indexFile)
	if b, err := os.ReadFile(idx); err == nil {
		if err := os.WriteFile(filepath.Join(qdir, indexFile), b, 0o600); err != nil {
			return fmt.Errorf("store: repair %s: keep the index: %w", sd.name, err)
		}
		if err := os.Remove(idx); err != nil {
			return fmt.Errorf("store: repair %s: %w", sd.name, err)
		}
	}
	// Without its index the server would take the last sequence from the
	// blocks, and reuse the sequences cut off the end. It keeps them with
	// a delete marker for the last one in a block of its own; so do we.
	if sf.IndexLastSeq > sf.LastSeq {
		index := uint32(1)
		if len(blocks) > 0 {
			index = blocks[len(blocks)-1].index + 1
		}
		rec, err := tombstone(sd.name, index, sf.IndexLastSeq, sf.indexLastTime)
		if err != nil {
			return fmt.Errorf("store: repair %s: %w", sd.name, err)
		}
		if err := writeFileSync(filepath.Join(sd.msgs, strconv.FormatUint(uint64(index), 10)+blockSuffix), rec); err != nil {
			return fmt.Errorf("store: repair %s: %w", sd.name, err)
		}
	}
	return nil
}

// tombstone encodes a delete marker for seq as block index of stream
// holds it.
func tombstone(stream string, index uint32, seq uint64, ts int64) ([]byte, error) {
	key := sha256.Sum256(fmt.Appendf(nil, "%s-%d", stream, index))
	hh, err := highwayhash.New64(key[:])
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	rec := make([]byte, recHdrSize, recMinLen)
	le.PutUint32(rec[0:], recMinLen)
	le.PutUint64(rec[4:], seq|seqTombBit)
	le.PutUint64(rec[12:], uint64(ts))
	le.PutUint16(rec[20:], 0)
	hh.Write(rec[4:20])
	return hh.Sum(rec), nil
}

// writeFileSync replaces path with data through a synced temporary file.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".repair"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
