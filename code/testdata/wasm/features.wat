;; A module that touches every section and most encodings the validator
;; walks: imports of each kind, tables, shared memory and atomics, globals
;; with constant initializers of several kinds, element segments in all
;; their forms, active and passive data, a data count, SIMD, bulk memory,
;; reference types and multiple results. Assembled with a name section.
(module
  (type $binop (func (param i32 i32) (result i32)))
  (type $pair (func (param i64) (result i32 i32)))
  (import "env" "log" (func $log (param i32)))
  (import "env" "table" (table $imported 1 funcref))
  (import "env" "base" (global $base i32))
  (import "env" "mem" (memory $mem 1 4 shared))

  (table $t 4 8 funcref)
  (table $refs 2 externref)

  (global $counter (mut i32) (i32.const 0))
  (global $wide i64 (i64.const -1))
  (global $half f32 (f32.const 0.5))
  (global $tau f64 (f64.const 6.283185307179586))
  (global $lanes v128 (v128.const i32x4 1 2 3 4))
  (global $fn funcref (ref.func $add))
  (global $none externref (ref.null extern))
  (global $copy i32 (global.get $base))

  (elem (i32.const 0) $add $sub)
  (elem $passive func $add $split)
  (elem declare func $sub)
  (elem (table $t) (i32.const 2) funcref (ref.func $add) (ref.null func))
  (elem $exprs funcref (ref.func $sub))

  (data (i32.const 16) "kernel")
  (data $later "\01\02\03\04")

  (func $add (export "add") (type $binop)
    (i32.add (local.get 0) (local.get 1)))

  (func $sub (type $binop)
    (i32.sub (local.get 0) (local.get 1)))

  (func $split (export "split") (type $pair)
    (i32.wrap_i64 (local.get 0))
    (i32.wrap_i64 (i64.shr_u (local.get 0) (i64.const 32))))

  (func (export "bump") (result i32)
    (i32.atomic.rmw.add (i32.const 0) (i32.const 1)))

  (func (export "init") (local $v v128) (local $r externref)
    (memory.init $later (i32.const 32) (i32.const 0) (i32.const 4))
    (data.drop $later)
    (table.init $t $passive (i32.const 0) (i32.const 0) (i32.const 2))
    (elem.drop $passive)
    (local.set $v (i32x4.add (global.get $lanes) (global.get $lanes)))
    (call $log (i32x4.extract_lane 0 (local.get $v)))
    (table.set $refs (i32.const 0) (local.get $r))
    (global.set $counter
      (call_indirect $t (type $binop) (i32.const 1) (i32.const 2) (i32.const 0)))))
