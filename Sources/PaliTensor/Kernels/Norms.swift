// Normalisations. Shapes: x [R, D] (R rows of width D), computed per row in float32.
import Foundation

public enum Norms {
    /// LayerNorm: (x − mean) / sqrt(var_biased + eps) · γ + β (SigLIP, eps 1e-6). Rows split over threads.
    public static func layerNorm(_ x: UnsafePointer<Float>, rows: Int, width d: Int,
                                 gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>, eps: Float,
                                 into y: UnsafeMutablePointer<Float>) {
        Parallel.forEachChunk(rows, grain: max(1, 16384 / max(d, 1))) { range in
            for r in range {
                let xr = x + r * d, yr = y + r * d
                let mean = sum(xr, d) { $0 } / Float(d)
                let m = V(repeating: mean)
                let sq = sum(xr, d) { ($0 - m) * ($0 - m) }
                let rstd = 1 / (sq / Float(d) + eps).squareRoot()
                for i in 0..<d { yr[i] = (xr[i] - mean) * rstd * gamma[i] + beta[i] }
            }
        }
    }

    /// Gemma RMSNorm: x · rsqrt(mean(x²) + eps) · (1 + w). Weights are stored as offsets from 1.
    public static func rmsNorm(_ x: UnsafePointer<Float>, rows: Int, width d: Int,
                               weight: UnsafePointer<Float>, eps: Float, into y: UnsafeMutablePointer<Float>) {
        Parallel.forEachChunk(rows, grain: max(1, 16384 / max(d, 1))) { range in
            for r in range {
                let xr = x + r * d, yr = y + r * d
                let sq = sum(xr, d) { $0 * $0 }
                let rstd = 1 / (sq / Float(d) + eps).squareRoot()
                for i in 0..<d { yr[i] = (xr[i] * rstd) * (1 + weight[i]) }
            }
        }
    }

    typealias V = SIMD8<Float>

    /// Σ f(x[i]) over one row: 8 lane sums over the multiples of 8 (added in a fixed order), then the
    /// tail; the same order for every row, whatever the row count.
    @inline(__always)
    static func sum(_ x: UnsafePointer<Float>, _ d: Int, _ f: (V) -> V) -> Float {
        var acc = V()
        var i = 0
        let raw = UnsafeRawPointer(x)
        while i + 8 <= d {
            acc += f(raw.loadUnaligned(fromByteOffset: i * 4, as: V.self))
            i += 8
        }
        var s = acc.sum()
        while i < d {
            s += f(V(repeating: x[i]))[0]
            i += 1
        }
        return s
    }

    public static func layerNorm(_ x: Tensor, gamma: Tensor, beta: Tensor, eps: Float) -> Tensor {
        precondition(gamma.count == x.columns && beta.count == x.columns, "layerNorm: x \(x.shape) γ \(gamma.shape) β \(beta.shape)")
        let y = Tensor(zeros: x.shape)
        layerNorm(x.data, rows: x.rows, width: x.columns, gamma: gamma.data, beta: beta.data, eps: eps, into: y.data)
        return y
    }

    public static func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float) -> Tensor {
        precondition(weight.count == x.columns, "rmsNorm: x \(x.shape) w \(weight.shape)")
        let y = Tensor(zeros: x.shape)
        rmsNorm(x.data, rows: x.rows, width: x.columns, weight: weight.data, eps: eps, into: y.data)
        return y
    }
}

extension Reference {
    public static func layerNorm(_ x: [Float], width d: Int, gamma: [Float], beta: [Float], eps: Double) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)
        for r in 0..<(x.count / d) {
            let row = (0..<d).map { Double(x[r * d + $0]) }
            let mean = row.reduce(0, +) / Double(d)
            let v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(d)
            for i in 0..<d { y[r * d + i] = Float((row[i] - mean) / (v + eps).squareRoot() * Double(gamma[i]) + Double(beta[i])) }
        }
        return y
    }

    public static func rmsNorm(_ x: [Float], width d: Int, weight: [Float], eps: Double) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)
        for r in 0..<(x.count / d) {
            let row = (0..<d).map { Double(x[r * d + $0]) }
            let ms = row.map { $0 * $0 }.reduce(0, +) / Double(d)
            for i in 0..<d { y[r * d + i] = Float(row[i] / (ms + eps).squareRoot() * (1 + Double(weight[i]))) }
        }
        return y
    }
}
