;; A module whose start function traps. Validation compiles the module
;; and must never run it.
(module
  (func $boom unreachable)
  (start $boom)
  (func (export "run") (result i32) (i32.const 1)))
