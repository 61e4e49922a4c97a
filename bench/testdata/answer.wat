;; answer.wat: a reactor (the andromeda_alloc / andromeda_invoke ABI) that
;; answers every input with the same decision, a 200 to a webhook, so that
;; the fire, webhook and event rows time the node's path (HTTP, trigger,
;; invoke, record) around the smallest guest.
;; Assembled with: wat2wasm answer.wat -o answer.wasm
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"http\":{\"status\":200,\"body\":\"ok\"}}")
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
  (func (export "andromeda_invoke") (param $ptr i32) (param $len i32) (result i64)
    (i64.const 35))
)
