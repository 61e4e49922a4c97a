// Package browser is the browser as a runtime: a page the node serves
// that runs flow modules written in JavaScript, connected to the node over
// a WebSocket. It holds the Hub, which serves the page and its module
// worker, keeps the runtimes the pages announce and invokes modules on
// them, and the page itself (page/, embedded). It does not route flows or
// queue messages: the node calls Invoke, and when the page is gone
// (ErrGone) queues the message until Wait says the runtime is back, or
// sends it to another runtime, as the flow's placement says.
//
// A page runs the same module code as the Node.js shim: its module worker
// is the shim's module loader section (runtimes/node, Loader), cut out of
// shim.cjs, followed by a small CommonJS wrapper, so a module's handler is
// found, called and its output encoded, and what it throws described, by
// the same source in both. A module is CommonJS source text (what
// module.exports holds, or exports.handle / exports.decide); require is
// an error naming the module, and ES module syntax is not accepted.
//
// # The page's protocol
//
// The node serves the page at Config.Path (default /runtime/browser),
// its module worker at Path/worker.js and the WebSocket at Path/ws, all
// from the binary, with nothing from the internet. A person opens
// Path#token=TOKEN[&runtime=ID][&name=NAME]: the token is in the fragment,
// which a browser never sends to a server, so it is in no request line or
// log; the page keeps it, and the runtime id (random unless given), in the
// tab's session storage, so that a reload or a return to the page in the
// same tab is the same runtime, and takes the fragment out of the address
// bar.
//
// Messages are WebSocket text messages, each one JSON object with a
// string type and id, at most Config.MaxMessage bytes (default 8 MiB)
// either way; unknown fields, and messages of an unknown type after the
// handshake, are ignored. The page sends first, and nothing but this is
// accepted before the node welcomes it:
//
//	{"type":"auth","id":"auth","token":"…"}
//	{"type":"hello","id":"hello","runtime":"b-3f…","name":"kiosk","version":"<user agent>","languages":["javascript"],"protocol":1}
//
// The node checks the token with Config.Authorize and the role it grants
// against Config.Role (runtime). A missing or bad token, a first message
// that is not auth, or no hello within Config.HandshakeTimeout closes the
// connection with status 1008 (policy violation) and a reason the page
// shows; the page does not reconnect after 1008, 1002 (a protocol or a
// hello the node does not take), 1003 or 4000. Then the node answers
//
//	{"type":"welcome","id":"hello","runtime":"b-3f…","protocol":1,"max_in_flight":16,"max_message":8388608,"cancel_grace_ms":250}
//
// and the runtime is listed (Hub.Runtimes). A node that knows
// Config.MaxRuntimes runtimes, each connected, closes a new one with 1013
// (try again later), and the page tries again later. A page that connects with the
// id of a connected one replaces it: the older is closed with 4000. After
// the welcome the node sends:
//
//	{"type":"load","id":"<key>","module":"<key>","name":"upper","code":"module.exports = …","config":{…}}
//	{"type":"unload","id":"<key>","module":"<key>"}
//	{"type":"invoke","id":"<id>","module":"<key>","input":{…},"deadline":1767323045123}
//	{"type":"cancel","id":"<id>"}
//
// A load gives the page a module's code under its key (a digest of its
// id, code and config), once per connection, before the first invoke of
// it; unload drops a key the module's new code replaced. The page answers
// neither: a module that did not load answers each of its invokes with an
// error of code init. An invoke is the runtime protocol's
// (docs/runtime-protocol.md), with module naming a loaded key, and the
// node spells its start exactly so, `{"type":"invoke","id":"<id>",`. Each
// is answered by exactly one message, its acknowledgement, as the Node.js
// shim answers:
//
//	{"type":"result","id":"<id>","output":{…}}
//	{"type":"error","id":"<id>","error":{"code":"error","message":"…","stack":"…"}}
//
// with codes error and oom (the handler threw), init (the module did not
// load), bad_input and cancelled. A cancel stops an invocation the node no
// longer waits for (its context ended): its signal is aborted and it is
// answered cancelled; one that does not stop within cancel_grace_ms (a
// loop that never yields) has the page restart its module worker, which
// ends every invocation in flight there. While an invocation runs, the
// page may send its ctx.log lines and ctx.usage reports, spelled as the
// runtime protocol's log and usage; the node logs the first and ignores
// the second.
//
// A page that sends a binary message, a message that is not a JSON object
// of the protocol, a result whose output is not an object, or a message
// longer than MaxMessage is disconnected (1002, 1003 or 1009); nothing it
// sends can stop the node. The node pings each page every PingInterval
// and disconnects one that does not answer.
//
// # When the page goes
//
// When a page's connection ends (the tab closed or reloaded, the page
// left for another, the network lost, the node shutting down), every
// invocation in flight on it returns ErrGone at once: it may or may not
// have run. A page the browser keeps when it is left (its back-forward
// cache) closes its connection as it goes, rather than keep it frozen,
// and connects again if it is shown again. The page reconnects with
// backoff (up to 10 s) and is the same runtime, with no module loaded:
// the node loads each again before its next invoke. Modules run in a
// dedicated worker whose content security policy allows evaluating code
// and nothing else: they cannot reach the page, the token or the network.
// A browser slows the timers of a hidden tab, not its WebSocket: a page
// in a background tab keeps answering, but reconnects later.
package browser
