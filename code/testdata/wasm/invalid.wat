;; Well-formed text that is not a valid module: "half" declares an i32
;; result but leaves an f32 on the stack. wat2wasm accepts it only with
;; --no-check.
(module
  (func (export "half") (param $x f32) (result i32)
    (f32.mul (local.get $x) (f32.const 0.5))))
