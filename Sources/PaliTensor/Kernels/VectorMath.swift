// Vectorised exp/tanh for the element-wise hot loops (GELU, softmax, soft-caps), 8 lanes at a time.
// exp: x = n·ln2 + r, |r| ≤ ln2/2, e^r by a degree-7 polynomial, scaled by 2^n through the exponent
// bits: within 2 ulp of expf over the float range. tanh(x) = 1 − 2/(e^{2x} + 1): absolute error
// ≈ 1e-7, which is what GELU and soft-capping need (they add tanh to 1 or multiply it by the cap).
// Scalar `expf`/`tanhf` remain the reference (tests compare on dense grids).

import Foundation

public enum VectorMath {
    public typealias V = SIMD8<Float>

    @inline(__always)
    public static func exp(_ x: V) -> V {
        // Above 88.3 the result saturates at e^88.3 (our callers never need more); below -87.3 it is 0.
        // (Compare-and-blend: `clamped(lowerBound:upperBound:)` compiles to out-of-line calls here.)
        let lo = V(repeating: -87.3), hi = V(repeating: 88.3)
        var xc = x.replacing(with: lo, where: x .< lo)
        xc = xc.replacing(with: hi, where: xc .> hi)
        // n = round(x·log2 e) by the 1.5·2^23 trick: the sum's low mantissa bits hold n.
        let magic = V(repeating: 12_582_912)
        let t = xc * 1.442_695_04 + magic
        let n = t - magic
        var r = xc - n * 0.693_145_75       // ln2 high part
        r = r - n * 1.428_606_8e-6          // ln2 low part
        // e^r ≈ Σ r^k / k!, k ≤ 7 (Horner)
        var p = V(repeating: 1.0 / 5040)
        p = p * r + 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        let bits = (unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
        return (p * unsafeBitCast(bits, to: V.self)).replacing(with: 0, where: x .< -87.3)
    }

    @inline(__always)
    public static func tanh(_ x: V) -> V {
        let e = exp(x * 2)
        return 1 - 2 / (e + 1)
    }

    @inline(__always)
    static func geluTanh(_ x: V) -> V {
        let inner = 0.797_884_560_802_865_4 * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1 + tanh(inner))
    }

    /// x ← gelu_tanh(x)
    public static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        let raw = UnsafeMutableRawPointer(x)
        while i + 8 <= count {
            let v = raw.loadUnaligned(fromByteOffset: i * 4, as: V.self)
            raw.storeBytes(of: geluTanh(v), toByteOffset: i * 4, as: V.self)
            i += 8
        }
        while i < count { x[i] = Activations.geluTanh(x[i]); i += 1 }
    }

    /// out ← gelu_tanh(gate) · up
    public static func geglu(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int,
                             into out: UnsafeMutablePointer<Float>) {
        var i = 0
        let g = UnsafeRawPointer(gate), u = UnsafeRawPointer(up), o = UnsafeMutableRawPointer(out)
        while i + 8 <= count {
            let r = geluTanh(g.loadUnaligned(fromByteOffset: i * 4, as: V.self)) * u.loadUnaligned(fromByteOffset: i * 4, as: V.self)
            o.storeBytes(of: r, toByteOffset: i * 4, as: V.self)
            i += 8
        }
        while i < count { out[i] = Activations.geluTanh(gate[i]) * up[i]; i += 1 }
    }

    /// x ← cap · tanh(x / cap)
    public static func softcap(_ x: UnsafeMutablePointer<Float>, count: Int, cap: Float) {
        var i = 0
        let raw = UnsafeMutableRawPointer(x)
        let inv = 1 / cap
        while i + 8 <= count {
            let v = raw.loadUnaligned(fromByteOffset: i * 4, as: V.self)
            raw.storeBytes(of: cap * tanh(v * inv), toByteOffset: i * 4, as: V.self)
            i += 8
        }
        // The last < 8 go through the same vector arithmetic (zero-padded), so an element's result does not
        // depend on where it sits in the array: attention soft-caps blocks of score rows of any length.
        if i < count {
            var v = V(repeating: 0)
            for l in 0..<(count - i) { v[l] = x[i + l] }
            let r = cap * tanh(v * inv)
            for l in 0..<(count - i) { x[i + l] = r[l] }
        }
    }

    /// x[i] ← exp(x[i] − m); returns Σ.
    public static func expShifted(_ x: UnsafeMutablePointer<Float>, count: Int, minus m: Float) -> Float {
        var i = 0
        let raw = UnsafeMutableRawPointer(x)
        var acc = V(repeating: 0)
        let mv = V(repeating: m)
        while i + 8 <= count {
            let e = exp(raw.loadUnaligned(fromByteOffset: i * 4, as: V.self) - mv)
            raw.storeBytes(of: e, toByteOffset: i * 4, as: V.self)
            acc += e
            i += 8
        }
        var s = acc.sum()
        while i < count { let e = expf(x[i] - m); x[i] = e; s += e; i += 1 }
        return s
    }
}
