;; Vector kernels over f32 arrays in linear memory. Exports, in this
;; order: the functions saxpy, dot and fill, the memory and a global.
;; clamp is a helper that is not exported.
(module
  (memory (export "memory") 1 16)
  (global (export "lanes") i32 (i32.const 4))

  (func $clamp (param $v f32) (param $lo f32) (param $hi f32) (result f32)
    (f32.min (f32.max (local.get $v) (local.get $lo)) (local.get $hi)))

  ;; y[i] = clamp(a * x[i] + y[i], -1e30, 1e30) for i < n
  (func (export "saxpy") (param $a f32) (param $x i32) (param $y i32) (param $n i32)
    (local $i i32) (local $yp i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $yp (i32.add (local.get $y) (i32.shl (local.get $i) (i32.const 2))))
        (f32.store (local.get $yp)
          (call $clamp
            (f32.add
              (f32.mul (local.get $a)
                (f32.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2)))))
              (f32.load (local.get $yp)))
            (f32.const -1e30) (f32.const 1e30)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))

  ;; sum of x[i] * y[i] for i < n, n a multiple of 4, four lanes at a time
  (func (export "dot") (param $x i32) (param $y i32) (param $n i32) (result f32)
    (local $i i32) (local $acc v128)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $acc
          (f32x4.add (local.get $acc)
            (f32x4.mul
              (v128.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2))))
              (v128.load (i32.add (local.get $y) (i32.shl (local.get $i) (i32.const 2)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $next)))
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
      (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc)))))

  ;; p[i] = v for i < n
  (func (export "fill") (param $p i32) (param $v f32) (param $n i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (f32.store (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2))) (local.get $v))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))))
