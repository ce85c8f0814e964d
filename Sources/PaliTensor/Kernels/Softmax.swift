// Softmax over rows, in float32. Shapes: x [R, N].
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
}

extension Reference {
    public static func softmax(_ x: [Double]) -> [Double] {
        let m = x.max() ?? 0
        if m == -.infinity { return x.map { _ in 0 } }
        let e = x.map { exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }
}
