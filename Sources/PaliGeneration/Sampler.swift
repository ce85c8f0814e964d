// Picking the next token from logits: greedy (argmax, first index on ties, as torch.argmax) or
// sampling with temperature, top-k and top-p, drawn from a per-sequence seeded generator so each job
// is reproducible whatever it is batched with.
import Foundation
import PaliTensor

public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy.
    public var temperature: Float
    public var topK: Int?
    public var topP: Float?
    public var seed: UInt64

    public init(temperature: Float = 0, topK: Int? = nil, topP: Float? = nil, seed: UInt64 = 0) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.seed = seed
    }

    public static let greedy = SamplingParameters()
    public var isGreedy: Bool { temperature <= 0 }
}

public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    var rng: SplitMix64

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        rng = SplitMix64(seed: parameters.seed)
    }

    public static func argmax(_ logits: UnsafePointer<Float>, count: Int) -> Int {
        var best = 0
        var bestValue = logits[0]
        for i in 1..<count where logits[i] > bestValue {
            best = i; bestValue = logits[i]
        }
        return best
    }

    public mutating func next(_ logits: UnsafePointer<Float>, count: Int) -> Int {
        if parameters.isGreedy { return Sampler.argmax(logits, count: count) }
        let t = Double(parameters.temperature)
        // Candidates sorted by logit, descending (ties by index for determinism).
        var idx = Array(0..<count)
        idx.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        if let k = parameters.topK, k > 0, k < idx.count { idx.removeSubrange(k...) }
        let m = Double(logits[idx[0]]) / t
        var probs = idx.map { exp(Double(logits[$0]) / t - m) }
        var total = probs.reduce(0, +)
        if let p = parameters.topP, p < 1 {
            // Keep the smallest prefix whose mass reaches p (at least one token).
            var cum = 0.0, keep = 0
            for (i, q) in probs.enumerated() {
                cum += q / total
                keep = i + 1
                if cum >= Double(p) { break }
            }
            idx.removeSubrange(keep...)
            probs.removeSubrange(keep...)
            total = probs.reduce(0, +)
        }
        let u = Double(rng.next() >> 11) / Double(1 << 53) * total
        var acc = 0.0
        for (i, q) in probs.enumerated() {
            acc += q
            if u < acc { return idx[i] }
        }
        return idx[idx.count - 1]
    }
}
