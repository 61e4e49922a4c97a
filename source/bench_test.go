package source

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/andromeda-runner/andromeda/archive"
	"github.com/andromeda-runner/andromeda/internal/gittest"
)

// BenchmarkFetch compares fetching the same service (a manifest and a
// 256 KiB module) as one commit of a git repository, through git
// http-backend over TLS on loopback, and as its canonical archive from an
// HTTPS server on loopback. Each fetch is verified against the pinned
// digest. It reports the 50th and 99th percentile latency.
func BenchmarkFetch(b *testing.B) {
	s := gittest.Start(b)
	r := s.NewRepo(b, "bench")
	module := make([]byte, 256<<10)
	rand.Read(module)
	r.Write("svc/andromeda.yaml", "name: bench\nversion: 1.0.0\nruntime: {entry: main.wasm}\n", 0o644)
	r.Write("svc/main.wasm", string(module), 0o644)
	dir := filepath.Join(r.Dir, "svc")
	digest, err := archive.DigestDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	commit := r.Commit("bench")
	r.Push()
	data, err := archive.Pack(dir)
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(data) }))
	b.Cleanup(ts.Close)
	u, _ := url.Parse(ts.URL)
	ctx := context.Background()

	b.Run("git", func(b *testing.B) {
		o := gitOpts(s, "bench", commit, digest)
		measureFetch(b, func() error { _, err := FetchGit(ctx, o); return err })
	})
	b.Run("archive", func(b *testing.B) {
		measureFetch(b, func() error {
			_, err := Fetch(ctx, ts.Client(), ts.URL+"/bench.tar.gz", digest, archive.Limits{}, []string{u.Host})
			return err
		})
	})
}

func measureFetch(b *testing.B, fetch func() error) {
	b.ReportAllocs()
	var lat []time.Duration
	for b.Loop() {
		t := time.Now()
		if err := fetch(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
