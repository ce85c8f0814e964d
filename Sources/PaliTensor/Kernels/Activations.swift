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
        for i in 0..<count { x[i] = geluTanh(x[i]) }
    }

    /// GeGLU over a fused [R, 2F] buffer holding gate | up per row: out[R, F] = gelu(gate) · up.
    public static func geglu(gateUp: UnsafePointer<Float>, rows: Int, features f: Int,
                             into out: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let g = gateUp + r * 2 * f, u = g + f, o = out + r * f
            for i in 0..<f { o[i] = geluTanh(g[i]) * u[i] }
        }
    }

    /// s = cap · tanh(s / cap) (Gemma 2 soft-capping).
    public static func softcap(_ x: UnsafeMutablePointer<Float>, count: Int, cap: Float) {
        for i in 0..<count { x[i] = cap * tanhf(x[i] / cap) }
    }
}

extension Reference {
    public static func geluTanh(_ x: Double) -> Double {
        0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
    }
}
