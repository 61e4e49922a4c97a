package server

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/andromeda-runner/andromeda/api"
)

// The fake backend serves files too, so the OpenAPI tests see the routes:
// /out/a holds "hi", /out is a directory, anything else is outside every
// volume, and a volume has room for 4 bytes.
var _ FileBackend = (*fakeBackend)(nil)

func (f *fakeBackend) Volumes(ctx context.Context, p Principal, service string) ([]api.Volume, error) {
	return []api.Volume{{Name: "out", Path: "/out", Size: 4096, Used: 4096}}, nil
}

func (f *fakeBackend) OpenFile(ctx context.Context, p Principal, service, path string) (api.FileInfo, io.ReadCloser, *api.Listing, error) {
	switch path {
	case "/out/a":
		return api.FileInfo{Path: path, Name: "a", Type: "file", Size: 2}, io.NopCloser(strings.NewReader("hi")), nil, nil
	case "/out":
		return api.FileInfo{Path: path, Type: "dir"}, nil, &api.Listing{Path: path, Entries: []api.FileInfo{{Path: "/out/a", Name: "a", Type: "file", Size: 2}}}, nil
	}
	return api.FileInfo{}, nil, nil, Errorf(ErrInvalid, "path %s: not in a volume of service %s (/out)", path, service)
}

func (f *fakeBackend) WriteFile(ctx context.Context, p Principal, service, path string, body io.Reader) (api.FileInfo, error) {
	b, err := io.ReadAll(io.LimitReader(body, 5))
	if err != nil {
		return api.FileInfo{}, err
	}
	if len(b) > 4 {
		return api.FileInfo{}, Errorf(ErrTooLarge, "path %s: the file is larger than the free space of volume out", path)
	}
	return api.FileInfo{Path: path, Type: "file", Size: int64(len(b))}, nil
}

func (f *fakeBackend) RemoveFile(ctx context.Context, p Principal, service, path string) error {
	return nil
}

// TestFileRoutes: files and listings are told apart by a header, and the
// backend's kinds become 400 and 413.
func TestFileRoutes(t *testing.T) {
	s := New(&fakeBackend{}, Config{}, nil)
	for _, tc := range []struct {
		method, path, body string
		status             int
		kind, want         string
	}{
		{"GET", "/v1/services/x/volumes", "", 200, "", `"used": 4096`},
		{"GET", "/v1/services/x/files/out/a", "", 200, "file", "hi"},
		{"GET", "/v1/services/x/files/out", "", 200, "dir", `"name": "a"`},
		{"GET", "/v1/services/x/files/etc/passwd", "", 400, "", "not in a volume"},
		{"PUT", "/v1/services/x/files/out/b", "four", 201, "", `"size": 4`},
		{"PUT", "/v1/services/x/files/out/b", "five!", 413, "", "free space of volume out"},
		{"DELETE", "/v1/services/x/files/out/b", "", 204, "", ""},
	} {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer sub")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.want) || w.Header().Get(api.FileTypeHeader) != tc.kind {
			t.Errorf("%s %s = %d %s %q, want %d %s with %q", tc.method, tc.path, w.Code, w.Header().Get(api.FileTypeHeader), w.Body, tc.status, tc.kind, tc.want)
		}
	}
}
