;; hostimport.wat: a command that imports a host function the wasm driver
;; does not provide; Deploy must refuse it.
;; Assembled with: wat2wasm hostimport.wat -o hostimport.wasm
(module
  (import "env" "open_socket" (func $open (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (drop (call $open)))
)
