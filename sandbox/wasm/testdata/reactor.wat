;; reactor.wat: the smallest guest of the reactor ABI (docs/wasm-abi.md), in
;; plain WebAssembly with no imports. Its output is its input, so a valid
;; output given as input ({"noop":"..."}) comes back as the run's output.
;; Assembled with: wat2wasm reactor.wat -o reactor.wasm
(module
  (memory (export "memory") 1)
  ;; andromeda_alloc(size) -> ptr: the input buffer starts at 1024; grow the
  ;; memory so that it holds size bytes, trap if the grow is refused.
  (func (export "andromeda_alloc") (param $size i32) (result i32)
    (local $pages i32)
    (local.set $pages
      (i32.shr_u (i32.add (i32.add (local.get $size) (i32.const 1024)) (i32.const 65535))
                 (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then unreachable))))
    (i32.const 1024))
  ;; andromeda_invoke(ptr, len) -> ptr<<32 | len: the output is the input.
  (func (export "andromeda_invoke") (param $ptr i32) (param $len i32) (result i64)
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
      (i64.extend_i32_u (local.get $len))))
)
