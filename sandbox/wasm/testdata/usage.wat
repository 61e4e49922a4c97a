;; usage.wat: a reactor that reports usage counters through the andromeda
;; host module (docs/wasm-abi.md, "Host functions"): rows 1200 and rows 34,
;; which the host adds (result 0), then a bad name and a name outside its
;; memory, which the host refuses (result 1) and counts; any other result
;; traps. Its output is {"noop":"counted"}.
;; Assembled with: wat2wasm usage.wat -o usage.wasm
(module
  (import "andromeda" "usage" (func $usage (param i32 i32 f64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "rows")
  (data (i32.const 16) "Bad Name")
  (data (i32.const 32) "{\22noop\22:\22counted\22}")
  (func $expect (param $got i32) (param $want i32)
    (if (i32.ne (local.get $got) (local.get $want)) (then unreachable)))
  (func (export "andromeda_alloc") (param $size i32) (result i32)
    (i32.const 1024))
  (func (export "andromeda_invoke") (param $ptr i32) (param $len i32) (result i64)
    (call $expect (call $usage (i32.const 0) (i32.const 4) (f64.const 1200)) (i32.const 0))
    (call $expect (call $usage (i32.const 0) (i32.const 4) (f64.const 34)) (i32.const 0))
    (call $expect (call $usage (i32.const 16) (i32.const 8) (f64.const 1)) (i32.const 1))
    (call $expect (call $usage (i32.const 65530) (i32.const 40) (f64.const 1)) (i32.const 1))
    (i64.or (i64.shl (i64.const 32) (i64.const 32)) (i64.const 18)))
)
