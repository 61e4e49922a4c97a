package main

import (
	"github.com/andromeda-runner/andromeda/bench/goplugin"
	"github.com/andromeda-runner/andromeda/sandbox/process"
)

// rows is everything the command measures, in the order of the table. In
// each group the floor is what no host of that kind can beat and the
// peers are the other runners' ways of doing the same thing.
func rows() []row {
	return []row{
		{group: "wasm call", name: "andromeda wasm driver (reactor, time cap)", kind: andromeda, setup: wasmDriver},
		{group: "wasm call", name: "extism go-sdk (timeout set)", kind: peer, setup: extismRow(true)},
		{group: "wasm call", name: "extism go-sdk (no timeout)", kind: peer, setup: extismRow(false)},
		{group: "wasm call", name: "bare wazero (no time cap)", kind: floor, setup: bareWazero},

		{group: "process call", name: "andromeda exec worker (Go)", kind: andromeda, setup: processRow(process.LangExec)},
		{group: "process call", name: "andromeda node worker", kind: andromeda, setup: processRow(process.LangNode)},
		{group: "process call", name: "andromeda python worker", kind: andromeda, setup: processRow(process.LangPython)},
		{group: "process call", name: "go-plugin net/rpc", kind: peer, setup: goPluginRow(goplugin.VersionNetRPC)},
		{group: "process call", name: "go-plugin gRPC", kind: peer, setup: goPluginRow(goplugin.VersionGRPC)},
		{group: "process call", name: "bare pipe round trip", kind: floor, setup: barePipe},

		{group: "http, one caller", name: "andromeda fire (run recorded)", kind: andromeda, setup: nodeRow(fire)},
		{group: "http, one caller", name: "andromeda webhook (run recorded)", kind: andromeda, setup: nodeRow(webhook)},
		{group: "http, one caller", name: "andromeda event (published → run recorded)", kind: andromeda, setup: nodeRow(event)},
		{group: "http, one caller", name: "bare net/http handler", kind: floor, setup: bareHTTP},

		{group: "http, 64 callers", name: "andromeda fire (run recorded)", kind: andromeda, conc: *conns, setup: nodeRow(fire)},
		{group: "http, 64 callers", name: "andromeda webhook (run recorded)", kind: andromeda, conc: *conns, setup: nodeRow(webhook)},
		{group: "http, 64 callers", name: "bare net/http handler", kind: floor, conc: *conns, setup: bareHTTP},

		{group: "cron", name: "andromeda tick lag (run start − scheduled)", kind: andromeda, measure: cronLag},
	}
}
