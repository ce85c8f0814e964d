import Foundation
@testable import PaliTensor

/// Deterministic generator for test data (SplitMix64).
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}

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
