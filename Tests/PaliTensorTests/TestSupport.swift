import Foundation
@testable import PaliTensor

/// Deterministic generator for test data.
typealias SeededRandom = SplitMix64

func randomFloats(_ n: Int, _ rng: inout SeededRandom, scale: Float = 1) -> [Float] {
    (0..<n).map { _ in Float.random(in: -scale...scale, using: &rng) }
}

/// Largest |a − b| relative to max(1, max |b|).
func maxRelativeError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    let denom = max(1, b.map { abs($0) }.max() ?? 0)
    var m: Float = 0
    for i in a.indices { m = max(m, abs(a[i] - b[i])) }
    return m / denom
}
