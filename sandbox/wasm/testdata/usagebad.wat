;; usagebad.wat: a command that imports andromeda.usage with the wrong
;; type; Deploy must refuse it.
;; Assembled with: wat2wasm usagebad.wat -o usagebad.wasm
(module
  (import "andromeda" "usage" (func $usage (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (drop (call $usage (i32.const 0) (i32.const 0) (i32.const 1))))
)
