// Package hooks benchmarks webhooks end to end: a request to an http
// trigger (auth none) of a warm wasm reactor, run, recorded and answered,
// measured with wrk in a separate process at 1, 16 and 64 connections,
// beside a bare net/http handler doing no work, in the same run. It holds
// a benchmark only: run it with
//
//	cd bench && go test -run NONE -bench Webhook -benchtime 1x ./hooks
//
// (-wrk.duration sets how long each load runs, default 10s). It skips
// when wrk is not installed (Debian: apt-get install wrk).
package hooks
