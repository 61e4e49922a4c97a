;; library.wat: a module that is neither a command (no _start) nor a reactor
;; of the Andromeda ABI; Deploy must refuse it.
;; Assembled with: wat2wasm library.wat -o library.wasm
(module
  (memory (export "memory") 1)
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
)
