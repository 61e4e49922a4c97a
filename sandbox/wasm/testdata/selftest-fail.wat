;; selftest-fail.wat: the reactor of reactor.wat with a self-test
;; (andromeda_test, docs/wasm-abi.md) that fails with a message.
;; Assembled with: wat2wasm selftest-fail.wat -o selftest-fail.wasm
(module
  (memory (export "memory") 1)
  (data (i32.const 512) "self-test: the answer is not 42")
  (func (export "andromeda_alloc") (param $size i32) (result i32)
    (if (i32.gt_u (local.get $size) (i32.const 60000)) (then unreachable))
    (i32.const 1024))
  (func (export "andromeda_invoke") (param $ptr i32) (param $len i32) (result i64)
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
      (i64.extend_i32_u (local.get $len))))
  ;; andromeda_test() -> 0 on success, else ptr<<32 | len of the reason.
  (func (export "andromeda_test") (result i64)
    (i64.or (i64.shl (i64.const 512) (i64.const 32)) (i64.const 31)))
)
