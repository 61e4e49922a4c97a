package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Volume is one of a service's volumes: its manifest entry and what it
// holds now, in bytes as volume sizes count them (each file rounded up to
// whole 4 KiB blocks, one block for every other entry). Used is -1 when it
// could not be measured.
type Volume struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Size int64  `json:"size"`
	Used int64  `json:"used"`
}

// FileInfo describes one entry of a volume.
type FileInfo struct {
	// Path is the entry's guest path, under its volume's path.
	Path string `json:"path"`
	Name string `json:"name"`
	// Type is file, dir, link or other.
	Type     string    `json:"type"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}

// Listing is a directory of a volume and its entries, sorted by name.
// A directory of more entries than one answer holds (10,000) lists its
// first by name, with Truncated set and Total counting them all.
type Listing struct {
	Path      string     `json:"path"`
	Entries   []FileInfo `json:"entries"`
	Total     int        `json:"total"`
	Truncated bool       `json:"truncated,omitempty"`
}

// FileTypeHeader is the header a files GET answers with: "file" with the
// file's bytes as the body, "dir" with a Listing.
const FileTypeHeader = "Andromeda-File-Type"

// filesPath is the files route of a guest path ("/out/a.txt").
func filesPath(service, path string) string {
	var b strings.Builder
	b.WriteString("/v1/services/" + url.PathEscape(service) + "/files")
	for _, seg := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		b.WriteString("/" + url.PathEscape(seg))
	}
	return b.String()
}

// Volumes lists a service's volumes with what each holds.
func (c *Client) Volumes(ctx context.Context, service string) ([]Volume, error) {
	var out []Volume
	return out, c.getJSON(ctx, "/v1/services/"+url.PathEscape(service)+"/volumes", &out)
}

// ListFiles lists the directory at path (a volume's path or below it).
func (c *Client) ListFiles(ctx context.Context, service, path string) (Listing, error) {
	var l Listing
	resp, err := c.stream(ctx, http.MethodGet, filesPath(service, path), nil, -1)
	if err != nil {
		return l, err
	}
	defer resp.Body.Close()
	if t := resp.Header.Get(FileTypeHeader); t != "dir" {
		return l, fmt.Errorf("%s: not a directory", path)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&l); err != nil {
		return l, fmt.Errorf("list %s: decode answer: %w", path, err)
	}
	return l, nil
}

// GetFile copies the file at path to w and returns how many bytes it
// copied. A directory is an error: list it with ListFiles.
func (c *Client) GetFile(ctx context.Context, service, path string, w io.Writer) (int64, error) {
	resp, err := c.stream(ctx, http.MethodGet, filesPath(service, path), nil, -1)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if t := resp.Header.Get(FileTypeHeader); t != "file" {
		return 0, fmt.Errorf("%s: is a directory (list it with andromeda files)", path)
	}
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("%s: got %d of %d bytes", path, n, resp.ContentLength)
	}
	return n, err
}

// PutFile writes the file at path from r, size bytes (-1: unknown),
// creating the directories above it in its volume and replacing a file
// there. The node refuses a file larger than the volume's free space (413)
// and a path outside every volume (400).
func (c *Client) PutFile(ctx context.Context, service, path string, r io.Reader, size int64) (FileInfo, error) {
	var fi FileInfo
	resp, err := c.stream(ctx, http.MethodPut, filesPath(service, path), r, size)
	if err != nil {
		return fi, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&fi); err != nil {
		return fi, fmt.Errorf("put %s: decode answer: %w", path, err)
	}
	return fi, nil
}

// RemoveFile removes the file or directory (with what it holds) at path; a
// volume's own directory cannot be removed.
func (c *Client) RemoveFile(ctx context.Context, service, path string) error {
	resp, err := c.stream(ctx, http.MethodDelete, filesPath(service, path), nil, -1)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// stream sends a request whose body and answer are not held in memory; an
// answer of 300 or more is returned as an *Error.
func (c *Client) stream(ctx context.Context, method, path string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
		if size >= 0 {
			req.ContentLength = size
		}
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return nil, answerError(resp, data)
}
