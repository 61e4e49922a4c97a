;; echo.wat: the wasm driver's self-test module, and the "tiny" non-Go guest
;; of the command-mode benchmark. A WASI command that copies standard input to
;; standard output, so an input that is itself a valid output ({"noop":"..."})
;; comes back as the run's output. Assembled with: wat2wasm echo.wat -o echo.wasm
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  ;; Layout: iovec {ptr, len} at 0, nread/nwritten at 8, buffer at 16..65536.
  (func (export "_start")
    (local $n i32)
    (local $p i32)
    (loop $read
      (i32.store (i32.const 0) (i32.const 16))
      (i32.store (i32.const 4) (i32.const 65520))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
        (then (call $proc_exit (i32.const 1))))
      (local.set $n (i32.load (i32.const 8)))
      (if (i32.eqz (local.get $n)) (then (return)))
      (local.set $p (i32.const 16))
      (loop $write
        (i32.store (i32.const 0) (local.get $p))
        (i32.store (i32.const 4) (local.get $n))
        (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 1))))
        (local.set $p (i32.add (local.get $p) (i32.load (i32.const 8))))
        (local.set $n (i32.sub (local.get $n) (i32.load (i32.const 8))))
        (br_if $write (local.get $n)))
      (br $read)))
)
