// Rotary position embedding, non-interleaved "rotate half" form (SPEC §2.4):
//   x' = x·cos + concat(−x[h:], x[:h])·sin, pairs (i, i+h), h = headDim/2,
//   θ_i = pos · invFreq_i, invFreq_i = 1 / θbase^(2i/headDim), all in float32 as transformers computes them.
import Foundation

/// cos/sin of θ for a list of positions: [positions, headDim/2] each.
public struct RoPETable: Sendable {
    public let headDim: Int
    public let cos: [Float]
    public let sin: [Float]
    public let count: Int

    public init(positions: [Int], headDim: Int, theta: Float) {
        precondition(headDim % 2 == 0, "RoPE needs an even head_dim, got \(headDim)")
        let half = headDim / 2
        // transformers: 1 / base ** (arange(0, dim, 2).float() / dim), in float32.
        let invFreq = (0..<half).map { i -> Float in 1 / powf(theta, Float(2 * i) / Float(headDim)) }
        var c = [Float](repeating: 0, count: positions.count * half)
        var s = c
        for (p, pos) in positions.enumerated() {
            for i in 0..<half {
                let angle = Float(pos) * invFreq[i]
                c[p * half + i] = Foundation.cos(angle)
                s[p * half + i] = Foundation.sin(angle)
            }
        }
        self.headDim = headDim
        self.cos = c
        self.sin = s
        self.count = positions.count
    }

    /// Rotates `heads` heads of each of `rows` rows in place. Row r uses table entry `first + r`;
    /// head j of row r starts at x + r·rowStride + j·headDim.
    public func apply(_ x: UnsafeMutablePointer<Float>, rows: Int, rowStride: Int, heads: Int, first: Int = 0) {
        let half = headDim / 2
        cos.withUnsafeBufferPointer { cp in
            sin.withUnsafeBufferPointer { sp in
                for r in 0..<rows {
                    let c = cp.baseAddress! + (first + r) * half, s = sp.baseAddress! + (first + r) * half
                    for h in 0..<heads {
                        let v = x + r * rowStride + h * headDim
                        for i in 0..<half {
                            let a = v[i], b = v[i + half]
                            v[i] = a * c[i] - b * s[i]
                            v[i + half] = b * c[i] + a * s[i]
                        }
                    }
                }
            }
        }
    }
}

extension Reference {
    /// Rotate-half RoPE of one head vector in double precision.
    public static func rope(_ x: [Float], position: Int, theta: Double) -> [Float] {
        let d = x.count, half = d / 2
        var y = [Float](repeating: 0, count: d)
        for i in 0..<half {
            let angle = Double(position) / pow(theta, Double(2 * i) / Double(d))
            let a = Double(x[i]), b = Double(x[i + half])
            y[i] = Float(a * Foundation.cos(angle) - b * Foundation.sin(angle))
            y[i + half] = Float(b * Foundation.cos(angle) + a * Foundation.sin(angle))
        }
        return y
    }
}
