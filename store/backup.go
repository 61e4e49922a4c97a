package store

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/andromeda-runner/andromeda/bus"
)

// Backups are JetStream's own stream snapshots (the server's
// $JS.API.STREAM.SNAPSHOT and RESTORE requests, which the jetstream client
// package does not wrap), every stream of the account in one tar file:
//
//	andromeda-backup.json      BackupInfo
//	<stream>/request.json      the stream's config and state, as restore takes them
//	<stream>/snapshot          the snapshot as the server sent it (s2-compressed)
//
// The server checks every record's checksum while it takes a snapshot, so
// a damaged stream is not backed up: repair it first.
const (
	backupFormat   = "andromeda-backup/v1"
	backupManifest = "andromeda-backup.json"
	backupRequest  = "request.json"
	backupSnapshot = "snapshot"

	apiSnapshot = "$JS.API.STREAM.SNAPSHOT."
	apiRestore  = "$JS.API.STREAM.RESTORE."

	// snapshotChunk is the chunk size asked of the server and sent to it.
	snapshotChunk = 128 << 10
	// chunkTimeout bounds the wait for one chunk or its acknowledgement.
	chunkTimeout = 30 * time.Second
	// restoreTimeout bounds the server's work after the last chunk.
	restoreTimeout = 10 * time.Minute
)

// BackupInfo describes a backup.
type BackupInfo struct {
	Format  string         `json:"format"`
	Created time.Time      `json:"created"`
	Streams []BackupStream `json:"streams"`
}

// BackupStream is one stream of a backup.
type BackupStream struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Size is the snapshot's size in the backup.
	Size int64 `json:"size"`
}

// apiError is the error of a JetStream API response.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("JetStream: %s (%d/%d)", e.Description, e.Code, e.ErrCode)
}

// Backup writes a snapshot of every stream on the bus to w, as one tar
// file. The snapshots are staged in temporary files first, so nothing is
// written to w unless every stream was read. Backing up a running node's
// store is consistent per stream, not across streams: stop the node (the
// CLI does it offline) for one point in time.
func Backup(ctx context.Context, b *bus.Bus, w io.Writer) (BackupInfo, error) {
	info := BackupInfo{Format: backupFormat, Created: time.Now().UTC()}
	var names []string
	lister := b.JS.StreamNames(ctx)
	for n := range lister.Name() {
		names = append(names, n)
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return info, fmt.Errorf("store: backup: list streams: %w", err)
	}
	// The registry's mark before the registry: in a backup of a running
	// store the mark is then never ahead of the registry, which Open would
	// take for lost records.
	slices.SortFunc(names, func(a, b string) int {
		if (a == kvStream(bucketMeta)) != (b == kvStream(bucketMeta)) {
			if a == kvStream(bucketMeta) {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	type staged struct {
		req  []byte
		file *os.File
	}
	var files []staged
	defer func() {
		for _, f := range files {
			f.file.Close()
			os.Remove(f.file.Name())
		}
	}()
	for _, name := range names {
		f, err := os.CreateTemp("", "andromeda-backup-*")
		if err != nil {
			return info, fmt.Errorf("store: backup: %w", err)
		}
		files = append(files, staged{file: f})
		req, st, err := snapshot(ctx, b.Conn, name, f)
		if err != nil {
			return info, fmt.Errorf("store: backup %s: %w", name, err)
		}
		size, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return info, fmt.Errorf("store: backup %s: %w", name, err)
		}
		files[len(files)-1].req = req
		info.Streams = append(info.Streams, BackupStream{Name: name, Kind: kindOf(name), Messages: st.Msgs, Bytes: st.Bytes, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, Size: size})
	}
	tw := tar.NewWriter(w)
	manifest, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return info, err
	}
	put := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: info.Created, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	if err := put(backupManifest, int64(len(manifest)), bytes.NewReader(manifest)); err != nil {
		return info, fmt.Errorf("store: backup: write: %w", err)
	}
	for i, s := range info.Streams {
		f := files[i]
		if _, err := f.file.Seek(0, io.SeekStart); err != nil {
			return info, fmt.Errorf("store: backup %s: %w", s.Name, err)
		}
		if err := put(path.Join(s.Name, backupRequest), int64(len(f.req)), bytes.NewReader(f.req)); err != nil {
			return info, fmt.Errorf("store: backup: write: %w", err)
		}
		if err := put(path.Join(s.Name, backupSnapshot), s.Size, f.file); err != nil {
			return info, fmt.Errorf("store: backup: write: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return info, fmt.Errorf("store: backup: write: %w", err)
	}
	return info, nil
}

// snapshot asks the server for a snapshot of one stream, writes its chunks
// to w and returns the restore request (config and state) and the state.
func snapshot(ctx context.Context, nc *nats.Conn, name string, w io.Writer) ([]byte, jetstream.StreamState, error) {
	var state jetstream.StreamState
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, state, err
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(map[string]any{"deliver_subject": inbox, "chunk_size": snapshotChunk, "jsck": true})
	rctx, cancel := context.WithTimeout(ctx, chunkTimeout)
	msg, err := nc.RequestWithContext(rctx, apiSnapshot+name, req)
	cancel()
	if err != nil {
		return nil, state, err
	}
	var resp struct {
		Error  *apiError       `json:"error"`
		Config json.RawMessage `json:"config"`
		State  json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, state, fmt.Errorf("snapshot response: %w", err)
	}
	if resp.Error != nil {
		return nil, state, resp.Error
	}
	if err := json.Unmarshal(resp.State, &state); err != nil {
		return nil, state, fmt.Errorf("snapshot state: %w", err)
	}
	restoreReq, _ := json.Marshal(map[string]json.RawMessage{"config": resp.Config, "state": resp.State})
	for {
		cctx, cancel := context.WithTimeout(ctx, chunkTimeout)
		m, err := sub.NextMsgWithContext(cctx)
		cancel()
		if err != nil {
			return nil, state, fmt.Errorf("wait for a chunk: %w", err)
		}
		if len(m.Data) == 0 { // the end, with a status when something went wrong
			if st := m.Header.Get("Status"); st != "" && st != "204" {
				return nil, state, fmt.Errorf("server ended the snapshot: %s %s", st, m.Header.Get("Description"))
			}
			return restoreReq, state, nil
		}
		if _, err := w.Write(m.Data); err != nil {
			return nil, state, err
		}
		if m.Reply != "" {
			if err := m.Respond(nil); err != nil {
				return nil, state, fmt.Errorf("acknowledge a chunk: %w", err)
			}
		}
	}
}

// Restore creates every stream of a backup read from r. No stream of the
// backup may exist yet: restore into an empty data dir, then open the
// store on it.
func Restore(ctx context.Context, b *bus.Bus, r io.Reader) (BackupInfo, error) {
	var info BackupInfo
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != backupManifest {
		return info, fmt.Errorf("store: restore: not an andromeda backup (no %s first)", backupManifest)
	}
	if err := json.NewDecoder(tr).Decode(&info); err != nil || info.Format != backupFormat {
		return info, fmt.Errorf("store: restore: not an andromeda backup (format %q, %v)", info.Format, err)
	}
	var exist []string
	for _, s := range info.Streams {
		if _, err := b.JS.Stream(ctx, s.Name); err == nil {
			exist = append(exist, s.Name)
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return info, fmt.Errorf("store: restore: %w", err)
		}
	}
	if len(exist) > 0 {
		return info, fmt.Errorf("store: restore: stream(s) %s exist already: restore into an empty data dir", strings.Join(exist, ", "))
	}
	var req []byte
	restored := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return info, fmt.Errorf("store: restore: read: %w", err)
		}
		stream, file := path.Split(hdr.Name)
		stream = strings.TrimSuffix(stream, "/")
		switch file {
		case backupRequest:
			if req, err = io.ReadAll(tr); err != nil {
				return info, fmt.Errorf("store: restore %s: read: %w", stream, err)
			}
		case backupSnapshot:
			if req == nil {
				return info, fmt.Errorf("store: restore %s: snapshot before its request", stream)
			}
			if err := restoreStream(ctx, b.Conn, stream, req, tr); err != nil {
				return info, fmt.Errorf("store: restore %s: %w", stream, err)
			}
			req = nil
			restored++
		}
	}
	if restored != len(info.Streams) {
		return info, fmt.Errorf("store: restore: %d of %d streams restored: the backup is cut short", restored, len(info.Streams))
	}
	return info, nil
}

// restoreStream sends one stream's snapshot to the server.
func restoreStream(ctx context.Context, nc *nats.Conn, name string, req []byte, snap io.Reader) error {
	rctx, cancel := context.WithTimeout(ctx, chunkTimeout)
	msg, err := nc.RequestWithContext(rctx, apiRestore+name, req)
	cancel()
	if err != nil {
		return err
	}
	var resp struct {
		Error          *apiError `json:"error"`
		DeliverSubject string    `json:"deliver_subject"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("restore response: %w", err)
	}
	if resp.Error != nil {
		return resp.Error
	}
	var created struct {
		Error *apiError `json:"error"`
	}
	buf := make([]byte, snapshotChunk)
	for {
		n, rerr := io.ReadFull(snap, buf)
		if n > 0 {
			cctx, cancel := context.WithTimeout(ctx, chunkTimeout)
			ack, err := nc.RequestWithContext(cctx, resp.DeliverSubject, buf[:n])
			cancel()
			if err != nil {
				return fmt.Errorf("send a chunk: %w", err)
			}
			if len(ack.Data) > 0 {
				if json.Unmarshal(ack.Data, &created) == nil && created.Error != nil {
					return created.Error
				}
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	fctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	done, err := nc.RequestWithContext(fctx, resp.DeliverSubject, nil)
	if err != nil {
		return fmt.Errorf("finish: %w", err)
	}
	if err := json.Unmarshal(done.Data, &created); err != nil {
		return fmt.Errorf("finish: %w", err)
	}
	if created.Error != nil {
		return created.Error
	}
	return nil
}
