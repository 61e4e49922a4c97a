;; balloon.wat: a non-Go command that grows its memory 1 MiB at a time and
;; traps (like Rust's or C's abort on allocation failure) when a grow is
;; refused. Assembled with: wat2wasm balloon.wat -o balloon.wasm
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1))
        (then unreachable))
      (br $grow)))
)
