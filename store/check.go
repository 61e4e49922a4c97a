package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
)

// bucketMeta is the KV bucket of the store's own bookkeeping.
const bucketMeta = bus.BucketMeta

// markRegistry is the meta key of the registry's mark.
const markRegistry = "registry"

// Kinds of stream, as reports name them.
const (
	KindRegistry  = "registry"
	KindTokens    = "tokens"
	KindState     = "state"
	KindPending   = "pending"
	KindArtifacts = "artifacts"
	KindRuns      = "runs"
	KindMeta      = "meta"
	KindLedger    = "ledger" // action executions, and the index of those not ended
	KindTrust     = "revocations"
	KindFlows     = "flows"
	KindFlowRuns  = "flow-runs"
	KindForwards  = "forwards"
	KindOther     = "other"
)

// kindOf names what a stream holds.
func kindOf(stream string) string {
	switch stream {
	case kvStream(bus.BucketServices):
		return KindRegistry
	case kvStream(bus.BucketTokens):
		return KindTokens
	case kvStream(bus.BucketState):
		return KindState
	case kvStream(bus.BucketPending):
		return KindPending
	case kvStream(bucketMeta):
		return KindMeta
	case "OBJ_" + bus.ObjectArtifacts:
		return KindArtifacts
	case bus.StreamRuns:
		return KindRuns
	case kvStream(ledgerBucket), kvStream(openBucket):
		return KindLedger
	case kvStream(bus.BucketRevocations):
		return KindTrust
	case kvStream(bus.BucketFlows), kvStream(bus.BucketFlowContext):
		return KindFlows
	case bus.StreamFlowQueue, bus.StreamFlowRuns:
		return KindFlowRuns
	case bus.StreamForwards:
		return KindForwards
	}
	return KindOther
}

func kvStream(bucket string) string { return "KV_" + bucket }

// streamOrder is the order reports list the store's streams in.
var streamOrder = []string{
	kvStream(bus.BucketServices), kvStream(bus.BucketTokens), kvStream(bus.BucketState),
	kvStream(bus.BucketPending), "OBJ_" + bus.ObjectArtifacts, bus.StreamRuns, kvStream(bucketMeta),
	kvStream(ledgerBucket), kvStream(openBucket), kvStream(bus.BucketRevocations), kvStream(bus.BucketFlows),
	kvStream(bus.BucketFlowContext), bus.StreamFlowQueue, bus.StreamFlowRuns, bus.StreamForwards,
}

// Report is what the store found in JetStream when it opened (Recovery) or
// when it read everything (Check), per stream.
type Report struct {
	Streams []StreamReport `json:"streams"`
	// Repair says the store was opened with Config.Repair.
	Repair bool `json:"repair,omitempty"`
	// Quarantine is where damaged block files were moved before the
	// server started (see RepairFiles); empty when none were.
	Quarantine string `json:"quarantine,omitempty"`
	// Took is how long the check took.
	Took time.Duration `json:"took"`
}

// StreamReport is one stream: what JetStream holds, what it recovered or
// dropped, and what could not be read.
type StreamReport struct {
	Stream string `json:"stream"`
	// Kind is what the stream holds: registry, tokens, state, pending,
	// artifacts, runs, meta, ledger, revocations, flows, flow-runs, forwards or
	// other.
	Kind string `json:"kind"`
	// Records is how many messages JetStream holds (for a bucket: values
	// and deletion markers).
	Records  uint64 `json:"records"`
	Bytes    uint64 `json:"bytes"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Deleted is how many sequences between the first and the last are
	// gone: normal for a bucket (older values) and for the bounded runs,
	// and where repaired damage shows.
	Deleted int `json:"deleted"`
	// Readable is how many records were read and, where the store knows
	// their form, decoded (-1: not read, Recovery reads only the registry
	// and the tokens).
	Readable int `json:"readable"`
	// Unreadable is how many records JetStream lists but cannot return.
	Unreadable int `json:"unreadable"`
	// Undecodable is how many records were read but are not what the store
	// wrote.
	Undecodable int `json:"undecodable"`
	// Lost is how many records are gone: reported lost by JetStream, in
	// damaged block ranges, or cut off the end (the last two are upper
	// bounds).
	Lost uint64 `json:"lost"`
	// Salvaged is how many intact records after damaged ranges were kept
	// (by RepairFiles; JetStream alone drops them).
	Salvaged int `json:"salvaged,omitempty"`
	// Skipped names the keys or sequences that could not be read or
	// decoded.
	Skipped []string `json:"skipped,omitempty"`
	// Problems says in words what is wrong; empty when nothing is.
	Problems []string `json:"problems,omitempty"`
}

// Damaged reports whether anything was lost or unreadable in any stream.
func (r Report) Damaged() bool {
	for _, s := range r.Streams {
		if len(s.Problems) > 0 {
			return true
		}
	}
	return false
}

// Problems lists what is wrong, one line per problem, naming the stream.
func (r Report) Problems() []string {
	var out []string
	for _, s := range r.Streams {
		for _, p := range s.Problems {
			out = append(out, fmt.Sprintf("%s (%s): %s", s.Kind, s.Stream, p))
		}
	}
	return out
}

// damaged lists the problems of the streams the node cannot do without.
func (r Report) damaged() []string {
	var out []string
	for _, s := range r.Streams {
		if critical(s.Stream) && len(s.Problems) > 0 {
			out = append(out, fmt.Sprintf("%s (%s): %s", s.Kind, s.Stream, strings.Join(s.Problems, "; ")))
		}
	}
	return out
}

// Stream returns the report of one stream (zero when absent).
func (r Report) Stream(name string) StreamReport {
	for _, s := range r.Streams {
		if s.Stream == name {
			return s
		}
	}
	return StreamReport{Stream: name, Kind: kindOf(name)}
}

// Recovery is what the store found when it opened: per stream what
// JetStream holds, what it lost and what PrepareFiles repaired. The node
// logs it and serves it with its readiness.
func (s *Store) Recovery() Report {
	r := s.recovery
	r.Streams = slices.Clone(r.Streams)
	return r
}

// recover builds the report of Open: stream states, the files report, a
// read of the registry and the tokens, and the registry's mark.
func (s *Store) recover(ctx context.Context) (Report, error) {
	rep := Report{Repair: s.cfg.Repair, Quarantine: s.cfg.Files.Quarantine}
	for _, name := range streamOrder {
		st, err := s.js.Stream(ctx, name)
		if err != nil {
			return rep, fmt.Errorf("store: stream %s: %w", name, err)
		}
		sr, err := s.streamReport(ctx, st)
		if err != nil {
			return rep, err
		}
		switch sr.Kind {
		case KindRegistry:
			if err := checkKV(ctx, st, &sr, decodeService); err != nil {
				return rep, err
			}
			if err := s.checkMark(ctx, &sr); err != nil {
				return rep, err
			}
		case KindTokens:
			if err := checkKV(ctx, st, &sr, decodeToken); err != nil {
				return rep, err
			}
		}
		rep.Streams = append(rep.Streams, sr)
	}
	return rep, nil
}

// streamReport reads a stream's state and folds in what its files showed.
func (s *Store) streamReport(ctx context.Context, st jetstream.Stream) (StreamReport, error) {
	name := st.CachedInfo().Config.Name
	sr := StreamReport{Stream: name, Kind: kindOf(name), Readable: -1}
	info, err := st.Info(ctx)
	if err != nil {
		return sr, fmt.Errorf("store: stream %s: %w", name, err)
	}
	state := info.State
	sr.Records, sr.Bytes, sr.FirstSeq, sr.LastSeq, sr.Deleted = state.Msgs, state.Bytes, state.FirstSeq, state.LastSeq, state.NumDeleted
	if l := state.Lost; l != nil && len(l.Msgs) > 0 {
		sr.Lost += uint64(len(l.Msgs))
		sr.Problems = append(sr.Problems, fmt.Sprintf("JetStream lost %d record(s), %d bytes, at recovery", len(l.Msgs), l.Bytes))
	}
	if f := s.cfg.Files.Stream(name); f.Damaged() {
		sr.Lost += f.Dropped + f.Missing
		sr.Salvaged = f.Salvaged
		p := "block files: " + f.Problem()
		if f.Repaired {
			p += "; repaired, the damaged originals are in " + filepath.Join(s.cfg.Files.Quarantine, name)
		}
		sr.Problems = append(sr.Problems, p)
	}
	return sr, nil
}

// checkKV reads every current value of a bucket and decodes it, filling
// sr's Readable, Unreadable, Undecodable and Skipped.
func checkKV(ctx context.Context, st jetstream.Stream, sr *StreamReport, decode func([]byte) error) error {
	vals, unreadable, err := kvValues(ctx, nil, st)
	if err != nil {
		return err
	}
	sr.Readable = 0
	for _, k := range unreadable {
		sr.Unreadable++
		sr.Skipped = append(sr.Skipped, k)
	}
	for _, v := range vals {
		if v.deleted {
			continue
		}
		if decode(v.value) != nil {
			sr.Undecodable++
			sr.Skipped = append(sr.Skipped, v.key)
			continue
		}
		sr.Readable++
	}
	if sr.Unreadable > 0 {
		sr.Problems = append(sr.Problems, fmt.Sprintf("%d record(s) listed but unreadable: %s", sr.Unreadable, strings.Join(unreadable, ", ")))
	}
	if sr.Undecodable > 0 {
		sr.Problems = append(sr.Problems, fmt.Sprintf("%d record(s) undecodable: %s", sr.Undecodable, strings.Join(sr.Skipped[sr.Unreadable:], ", ")))
	}
	return nil
}

func decodeService(b []byte) error {
	var svc Service
	return json.Unmarshal(b, &svc)
}

func decodeToken(b []byte) error {
	var t TokenRecord
	return json.Unmarshal(b, &t)
}

// kvValue is the current value of one key.
type kvValue struct {
	key     string
	value   []byte
	deleted bool   // a deletion or purge marker
	seq     uint64 // its sequence in the stream: the key's revision
}

// kvValues reads the current value of every key of the bucket stream: one
// stream info lists the keys, one pass of a consumer delivering the last
// record of each subject reads them in batches (lastValues), and one read
// per key fetches what that pass did not bring. Unlike a KV watcher it
// cannot wait forever on a record JetStream lists but cannot return: the
// pass gives up after a short wait, and such keys come back in unreadable.
func kvValues(ctx context.Context, js jetstream.JetStream, st jetstream.Stream) (vals []kvValue, unreadable []string, err error) {
	stream := st.CachedInfo().Config.Name
	prefix := "$KV." + strings.TrimPrefix(stream, "KV_") + "."
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, nil, fmt.Errorf("store: read %s: %w", stream, err)
	}
	subjects := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		subjects = append(subjects, subj)
	}
	slices.Sort(subjects)
	got := lastValues(ctx, st, prefix, len(subjects))
	for _, subj := range subjects {
		key := strings.TrimPrefix(subj, prefix)
		if v, ok := got[key]; ok {
			vals = append(vals, v)
			continue
		}
		m, err := st.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) && js != nil {
			m, err = leaderLastMsg(ctx, js, stream, subj)
		}
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			unreadable = append(unreadable, key)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("store: read %s key %s: %w", stream, key, err)
		}
		op := m.Header.Get("KV-Operation")
		vals = append(vals, kvValue{key: key, value: m.Data, deleted: op == "DEL" || op == "PURGE", seq: m.Sequence})
	}
	return vals, unreadable, nil
}

// lastValues reads the last record of each subject under prefix with one
// ephemeral consumer (deliver last per subject, no acks, in memory), in
// batches of up to 1,000: one round trip per batch instead of one per key.
// A listing of 5,000 services took 154 ms with a read per key. It is a
// best effort: it returns what it read, and stops at the first error or
// when a batch waits longer than a quarter of a second; kvValues reads
// the rest key by key. Registries of a few keys are read key by key.
func lastValues(ctx context.Context, st jetstream.Stream, prefix string, want int) map[string]kvValue {
	got := make(map[string]kvValue, want)
	if want < batchReadFrom {
		return got
	}
	cons, err := createReader(ctx, st, jetstream.ConsumerConfig{
		FilterSubject: prefix + ">", DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return got
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = st.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	left := int(cons.CachedInfo().NumPending)
	for left > 0 {
		batch, err := cons.Fetch(min(left, 1000), jetstream.FetchMaxWait(250*time.Millisecond))
		if err != nil {
			return got
		}
		n := 0
		for m := range batch.Messages() {
			n++
			op := m.Headers().Get("KV-Operation")
			key := strings.TrimPrefix(m.Subject(), prefix)
			var seq uint64
			if meta, err := m.Metadata(); err == nil {
				seq = meta.Sequence.Stream
			}
			got[key] = kvValue{key: key, value: m.Data(), deleted: op == "DEL" || op == "PURGE", seq: seq}
		}
		if batch.Error() != nil || n == 0 {
			return got
		}
		left -= n
	}
	return got
}

// batchReadFrom is the fewest keys lastValues reads in batches.
var batchReadFrom = 32

// registryMark is what the registry held at its last write.
type registryMark struct {
	Records uint64    `json:"records"`
	LastSeq uint64    `json:"last_seq"`
	At      time.Time `json:"at"`
}

// checkMark compares the registry with its mark: it never shrinks (a value
// replaced or deleted leaves a record) and its sequence never goes back,
// so either means records were lost, say its files were emptied or
// removed. With no mark (a new store, or one from before marks), a
// registry with no records but a last sequence was emptied. The mark is
// then set to what the registry holds now, unless that is damage the
// store was not told to repair.
func (s *Store) checkMark(ctx context.Context, sr *StreamReport) error {
	var mark registryMark
	e, err := s.meta.Get(ctx, markRegistry)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if sr.Records == 0 && sr.LastSeq > 0 {
			sr.Problems = append(sr.Problems, fmt.Sprintf("holds no records although %d were written: its records are gone", sr.LastSeq))
		}
	case err != nil:
		return fmt.Errorf("store: read the registry's mark: %w", err)
	default:
		if json.Unmarshal(e.Value(), &mark) != nil {
			break // a mark we cannot read is replaced
		}
		switch {
		case sr.LastSeq < mark.LastSeq:
			sr.Problems = append(sr.Problems, fmt.Sprintf("its last write was number %d (%s) but it now ends at %d: writes are missing (it held %d records, now %d)",
				mark.LastSeq, mark.At.Format(time.RFC3339), sr.LastSeq, mark.Records, sr.Records))
			sr.Lost = max(sr.Lost, mark.Records-min(mark.Records, sr.Records))
		case sr.Records < mark.Records:
			sr.Problems = append(sr.Problems, fmt.Sprintf("it held %d records (services and deletion markers) at its last write (%s) and now holds %d",
				mark.Records, mark.At.Format(time.RFC3339), sr.Records))
			sr.Lost = max(sr.Lost, mark.Records-sr.Records)
		}
	}
	if len(sr.Problems) > 0 && !s.cfg.Repair {
		return nil
	}
	if mark.Records == sr.Records && mark.LastSeq == sr.LastSeq {
		return nil
	}
	return s.putMark(ctx, registryMark{Records: sr.Records, LastSeq: sr.LastSeq, At: time.Now().UTC()})
}

func (s *Store) putMark(ctx context.Context, m registryMark) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := s.meta.Put(ctx, markRegistry, b); err != nil {
		return fmt.Errorf("store: write the registry's mark: %w", err)
	}
	return nil
}

// markRegistryWrite records what the registry holds after a write. It is
// best effort: a mark left behind by a failed write is older, so lower,
// which the check on open never takes for damage.
func (s *Store) markRegistryWrite(ctx context.Context) {
	info, err := s.registry.Info(ctx)
	if err != nil {
		return
	}
	s.putMark(ctx, registryMark{Records: info.State.Msgs, LastSeq: info.State.LastSeq, At: time.Now().UTC()})
}

// Check reads every record of every stream of the store, decoding those
// whose form it knows, and adds what it found to the Recovery report: per
// stream the records read, unreadable and undecodable, and per artifact
// whether its content matches its digest. It makes one read per record, so
// it is slow on a large store; `andromeda store check` runs it on a copy
// of a stopped node's data. Each read takes at most Config.Timeout.
func (s *Store) Check(ctx context.Context) (Report, error) {
	start := time.Now()
	rep := s.Recovery()
	for i := range rep.Streams {
		sr := &rep.Streams[i]
		st, err := s.js.Stream(ctx, sr.Stream)
		if err != nil {
			return rep, fmt.Errorf("store: check %s: %w", sr.Stream, err)
		}
		// Recovery read the registry and the tokens key by key already.
		if sr.Readable < 0 {
			if err := s.checkStream(ctx, st, sr); err != nil {
				return rep, err
			}
		}
		if sr.Kind == KindArtifacts {
			if err := s.checkArtifacts(ctx, sr); err != nil {
				return rep, err
			}
		}
	}
	rep.Took = time.Since(start)
	return rep, nil
}

// decoders says how a record of each kind decodes.
var decoders = map[string]func([]byte) error{
	KindRegistry: decodeService,
	KindTokens:   decodeToken,
	KindState: func(b []byte) error {
		_, err := decodeState(b)
		return err
	},
	KindPending: decodeRun,
	KindRuns:    decodeRun,
	KindFlows: func(b []byte) error {
		var probe struct {
			Values json.RawMessage `json:"values"`
		}
		if json.Unmarshal(b, &probe) == nil && probe.Values != nil {
			_, err := decodeFlowContext(b) // a flow's context
			return err
		}
		_, err := decodeFlow(b)
		return err
	},
	KindFlowRuns: func(b []byte) error {
		var m struct {
			Run, ID string
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		if m.Run == "" && m.ID == "" {
			return errors.New("no flow run id")
		}
		return nil
	},
	KindMeta: func(b []byte) error {
		var m registryMark
		return json.Unmarshal(b, &m)
	},
}

func decodeRun(b []byte) error {
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	if r.ID == "" || r.Service == "" {
		return errors.New("no run id or service")
	}
	return nil
}

// checkStream reads every record of st from the first sequence to the
// last, skipping deleted sequences (a read asks for the next record at or
// after a sequence; JetStream skips records it cannot read, so what it
// holds but did not return is unreadable).
func (s *Store) checkStream(ctx context.Context, st jetstream.Stream, sr *StreamReport) error {
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("store: check %s: %w", sr.Stream, err)
	}
	decode := decoders[sr.Kind]
	sr.Records = info.State.Msgs
	read, readable, undecodable := 0, 0, 0
	var skipped []string
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; {
		rctx, cancel := s.bounded(ctx)
		m, err := st.GetMsg(rctx, seq, jetstream.WithGetMsgSubject(">"))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break // nothing readable at seq or after it
		}
		if err != nil {
			return s.deadline(ctx, fmt.Errorf("store: check %s at %d: %w", sr.Stream, seq, err))
		}
		read++
		seq = m.Sequence + 1
		op := m.Header.Get("KV-Operation")
		if decode == nil || op == "DEL" || op == "PURGE" || strings.HasPrefix(m.Subject, "$O.") {
			readable++
			continue
		}
		if err := decode(m.Data); err != nil {
			undecodable++
			skipped = append(skipped, fmt.Sprintf("%s#%d", m.Subject, m.Sequence))
			continue
		}
		readable++
	}
	sr.Readable, sr.Undecodable = readable, undecodable
	sr.Unreadable = int(sr.Records) - min(read, int(sr.Records))
	sr.Skipped = skipped
	if sr.Unreadable > 0 {
		sr.Problems = append(sr.Problems, fmt.Sprintf("%d of %d record(s) unreadable", sr.Unreadable, sr.Records))
	}
	if undecodable > 0 {
		sr.Problems = append(sr.Problems, fmt.Sprintf("%d record(s) undecodable: %s", undecodable, strings.Join(skipped, ", ")))
	}
	return nil
}

// checkArtifacts reads every artifact; the object store checks each
// against its digest.
func (s *Store) checkArtifacts(ctx context.Context, sr *StreamReport) error {
	objs, err := s.artifacts.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		return s.deadline(ctx, fmt.Errorf("store: check artifacts: %w", err))
	}
	var bad []string
	for _, o := range objs {
		rctx, cancel := s.bounded(ctx)
		_, err := s.artifacts.GetBytes(rctx, o.Name)
		cancel()
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s (%v)", o.Name, err))
		}
	}
	if len(bad) > 0 {
		sr.Undecodable += len(bad)
		sr.Skipped = append(sr.Skipped, bad...)
		sr.Problems = append(sr.Problems, fmt.Sprintf("%d artifact(s) unreadable or not matching their digest: %s", len(bad), strings.Join(bad, ", ")))
	}
	return nil
}

// leaderLastMsg asks stream's leader for the last message on subj, past
// direct gets: a bucket allows direct gets, which any replica answers,
// and one catching up (a node back from a partition, or a write a moment
// old) says "not found" for a key the stream holds. A listing must not
// call such a key unreadable: it asks the leader before it does.
func leaderLastMsg(ctx context.Context, js jetstream.JetStream, stream, subj string) (*jetstream.RawStreamMsg, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": subj})
	if err != nil {
		return nil, err
	}
	resp, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, err
	}
	var r struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, fmt.Errorf("message get answer: %w", err)
	}
	if r.Error != nil {
		if r.Error.Code == 404 {
			return nil, jetstream.ErrMsgNotFound
		}
		return nil, fmt.Errorf("message get: %s (%d)", r.Error.Description, r.Error.ErrCode)
	}
	if r.Message == nil {
		return nil, jetstream.ErrMsgNotFound
	}
	msg := &jetstream.RawStreamMsg{Subject: r.Message.Subject, Sequence: r.Message.Seq, Data: r.Message.Data, Time: r.Message.Time}
	if len(r.Message.Header) > 0 {
		hdr, err := nats.DecodeHeadersMsg(r.Message.Header)
		if err != nil {
			return nil, fmt.Errorf("message get: headers: %w", err)
		}
		msg.Header = hdr
	}
	return msg, nil
}
