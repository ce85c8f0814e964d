// Element-wise activations.
import Foundation

public enum Activations {
    /// tanh-approximate GELU (`gelu_pytorch_tanh`): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    @inline(__always)
    public static func geluTanh(_ x: Float) -> Float {
        let c: Float = 0.7978845608028654  // √(2/π)
        return 0.5 * x * (1 + tanhf(c * (x + 0.044715 * x * x * x)))
    }

    public static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        VectorMath.geluTanh(x, count: count)
    }

    /// GeGLU: out[i] = gelu(gate[i]) · up[i]; `out` may alias `gate`.
    public static func geglu(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int,
                             into out: UnsafeMutablePointer<Float>) {
        VectorMath.geglu(gate: gate, up: up, count: count, into: out)
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
