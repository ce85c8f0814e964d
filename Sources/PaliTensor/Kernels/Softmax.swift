// Softmax over rows, in float32. Shapes: x [R, N]. And log Σ exp of one row (the normaliser of a
// log-softmax: log p(i) = x[i] − logSumExp(x)), for the token scores of generation.
import Foundation

public enum Softmax {
    /// In place, per row; entries equal to -infinity get probability 0.
    public static func rows(_ x: UnsafeMutablePointer<Float>, rows: Int, width n: Int) {
        for r in 0..<rows {
            let row = x + r * n
            var m = -Float.infinity
            for i in 0..<n { m = max(m, row[i]) }
            if m == -.infinity { for i in 0..<n { row[i] = 0 }; continue }
            let inv = 1 / VectorMath.expShifted(row, count: n, minus: m)
            for i in 0..<n { row[i] *= inv }
        }
    }

    /// log Σ_i exp(x[i]) over n entries, without changing x: the maximum subtracted first, exp in
    /// 8-lane float32, partial sums of 256 entries added in Double (a float32 running sum over a
    /// 257k-entry vocabulary would drift by more than 1e-5 relative).
    public static func logSumExp(_ x: UnsafePointer<Float>, count n: Int) -> Double {
        precondition(n > 0, "logSumExp of an empty row")
        var m = -Float.infinity
        for i in 0..<n { m = max(m, x[i]) }
        if m == -.infinity || m == .infinity || m.isNaN { return Double(m) }
        let raw = UnsafeRawPointer(x)
        let mv = VectorMath.V(repeating: m)
        var total = 0.0
        var i = 0
        while i + 8 <= n {
            var acc = VectorMath.V(repeating: 0)
            let end = min(n, i + 256)
            while i + 8 <= end {
                acc += VectorMath.exp(raw.loadUnaligned(fromByteOffset: i * 4, as: VectorMath.V.self) - mv)
                i += 8
            }
            total += Double(acc.sum())
        }
        while i < n { total += Double(expf(x[i] - m)); i += 1 }
        return Double(m) + Foundation.log(total)
    }

    /// log softmax(x)[token]: the log-probability of `token` under logits x of n entries.
    public static func logProbability(of token: Int, _ x: UnsafePointer<Float>, count n: Int) -> Double {
        Double(x[token]) - logSumExp(x, count: n)
    }
}

extension Reference {
    /// log Σ exp(x), in Double.
    public static func logSumExp(_ x: [Double]) -> Double {
        let m = x.max()!
        return m + log(x.reduce(0) { $0 + exp($1 - m) })
    }

    public static func softmax(_ x: [Double]) -> [Double] {
        let m = x.max() ?? 0
        if m == -.infinity { return x.map { _ in 0 } }
        let e = x.map { exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }
}
