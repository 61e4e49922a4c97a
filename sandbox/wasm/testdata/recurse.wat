;; recurse.wat: a reactor (docs/wasm-abi.md) whose andromeda_invoke calls
;; itself without end, so the call stack runs out. Its allocator is
;; reactor.wat's.
;; Assembled with: wat2wasm recurse.wat -o recurse.wasm
(module
  (memory (export "memory") 1)
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
  (func $invoke (export "andromeda_invoke") (param $ptr i32) (param $len i32) (result i64)
    (call $invoke (i32.add (local.get $ptr) (i32.const 1)) (local.get $len)))
)
