;; spin.wat: a non-Go command that loops forever without calling the host.
;; Assembled with: wat2wasm spin.wat -o spin.wasm
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $spin (br $spin)))
)
