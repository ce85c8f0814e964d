// Element-wise activations.
import Foundation

public enum Activations {
    /// tanh-approximate GELU (`gelu_pytorch_tanh`): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    @inline(__always)
    public static func geluTanh(_ x: Float) -> Float {
        let c: Float = 0.7978845608028654  // √(2/π)
        return 0.5 * x * (1 + tanhf(c * (x + 0.044715 * x * x * x)))
    }

    /// In place, split over `Parallel.threads` at multiples of 8 elements, so each element takes the
    /// same (vector or scalar-tail) path whatever the thread count.
    public static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        Parallel.forEachChunk((count + 7) / 8, grain: 8192) { r in
            let lo = r.lowerBound * 8, hi = min(r.upperBound * 8, count)
            VectorMath.geluTanh(x + lo, count: hi - lo)
        }
    }

    /// GeGLU: out[i] = gelu(gate[i]) · up[i]; `out` may alias `gate`. Split as `geluTanh`.
    public static func geglu(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int,
                             into out: UnsafeMutablePointer<Float>) {
        Parallel.forEachChunk((count + 7) / 8, grain: 8192) { r in
            let lo = r.lowerBound * 8, hi = min(r.upperBound * 8, count)
            VectorMath.geglu(gate: gate + lo, up: up + lo, count: hi - lo, into: out + lo)
        }
    }

    /// s = cap · tanh(s / cap) (Gemma 2 soft-capping).
    public static func softcap(_ x: UnsafeMutablePointer<Float>, count: Int, cap: Float) {
        VectorMath.softcap(x, count: count, cap: cap)
    }
}

extension Reference {
    public static func geluTanh(_ x: Double) -> Double {
        0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
    }
}
