// How a replica's decoder layers are split into contiguous stage ranges.
//
// A pipeline runs at the pace of its slowest stage, so the split minimizes the largest stage cost;
// among splits with that maximum it picks the most even one (least sum of squared stage costs), and
// among those the one with the heavier stages first. Stage 0 also carries the token embedding and
// the last stage the final norm + LM head: both are given in units of one layer's cost.

/// Contiguous layer ranges, one per decoder stage, covering `0..<layers`.
public struct StagePlan: Equatable, Sendable, CustomStringConvertible {
    /// Decoder layers in the model.
    public let layers: Int
    /// The layers of each stage, stage 0 first; contiguous, non-empty, covering 0..<layers.
    public let ranges: [Range<Int>]

    public var stages: Int { ranges.count }
    /// Layers per stage, e.g. [6, 6, 6].
    public var layerCounts: [Int] { ranges.map(\.count) }

    /// A plan from layer counts per stage, each ≥ 1 and summing to `layers`.
    public init(layerCounts: [Int], layers: Int) throws {
        guard !layerCounts.isEmpty, layerCounts.allSatisfy({ $0 >= 1 }) else {
            throw TransportError.invalidStagePlan("stage split \(Self.text(layerCounts)) must give every stage at "
                                                  + "least one layer")
        }
        guard layerCounts.reduce(0, +) == layers else {
            throw TransportError.invalidStagePlan("stage split \(Self.text(layerCounts)) covers "
                                                  + "\(layerCounts.reduce(0, +)) layers but the decoder has \(layers); "
                                                  + "give per-stage counts that sum to \(layers)"
                                                  + Self.example(layers: layers, stages: layerCounts.count))
        }
        var start = 0
        ranges = layerCounts.map { count in
            defer { start += count }
            return start..<(start + count)
        }
        self.layers = layers
    }

    /// Parses an override such as `"6,6,6"` (spaces allowed); `stages`, when given, must match its length.
    public static func parse(_ text: String, layers: Int, stages: Int? = nil) throws -> StagePlan {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
            .map { part -> Substring in
                let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
                guard let first = part.firstIndex(where: { !isBlank($0) }),
                      let last = part.lastIndex(where: { !isBlank($0) }) else { return "" }
                return part[first...last]
            }
        let counts = try parts.map { part -> Int in
            guard let count = Int(part) else {
                throw TransportError.invalidStagePlan("stage split \"\(text)\" is not a comma-separated list of "
                                                      + "layer counts" + example(layers: layers, stages: stages ?? parts.count))
            }
            return count
        }
        if let stages, counts.count != stages {
            throw TransportError.invalidStagePlan("stage split \"\(text)\" has \(counts.count) entries for \(stages) "
                                                  + "stages" + example(layers: layers, stages: stages))
        }
        return try StagePlan(layerCounts: counts, layers: layers)
    }

    /// The cheapest split of `layers` layers into `stages` stages.
    /// - Parameters:
    ///   - cost: relative cost of each layer (default: all 1).
    ///   - embeddingCost: extra cost of stage 0 (token embedding lookup), in units of `cost`.
    ///   - headCost: extra cost of the last stage (final norm + LM head + sampling), in units of `cost`;
    ///     `lmHeadCost(...)` estimates it for decode-bound runs.
    public static func split(layers: Int, stages: Int, cost: [Double]? = nil, embeddingCost: Double = 0,
                             headCost: Double = 0) throws -> StagePlan {
        guard layers >= 1 else { throw TransportError.invalidStagePlan("a decoder needs at least one layer") }
        guard (1...layers).contains(stages) else {
            throw TransportError.invalidStagePlan("cannot split \(layers) layers into \(stages) stages: use 1 to "
                                                  + "\(layers) stages")
        }
        let costs = cost ?? Array(repeating: 1, count: layers)
        guard costs.count == layers else {
            throw TransportError.invalidStagePlan("\(costs.count) layer costs for \(layers) layers")
        }
        guard (costs + [embeddingCost, headCost]).allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw TransportError.invalidStagePlan("layer, embedding and head costs must be finite and non-negative")
        }
        var prefix = [0.0]
        for c in costs { prefix.append(prefix.last! + c) }
        // Cost of stage k holding layers i..<j.
        func stageCost(_ k: Int, _ i: Int, _ j: Int) -> Double {
            prefix[j] - prefix[i] + (k == 0 ? embeddingCost : 0) + (k == stages - 1 ? headCost : 0)
        }

        // Pass 1: the least possible maximum stage cost (best[k][j]: first j layers in stages 0...k).
        let unreachable = Double.infinity
        var best = Array(repeating: Array(repeating: unreachable, count: layers + 1), count: stages)
        for j in 1...layers { best[0][j] = stageCost(0, 0, j) }
        for k in stride(from: 1, to: stages, by: 1) {
            for j in (k + 1)...layers {
                for i in k..<j { best[k][j] = min(best[k][j], max(best[k - 1][i], stageCost(k, i, j))) }
            }
        }
        let limit = best[stages - 1][layers] * (1 + 1e-9) + 1e-12

        // Pass 2: within that maximum, the least sum of squares; ties go to the latest cut (heavier early stages).
        var squares = Array(repeating: Array(repeating: unreachable, count: layers + 1), count: stages)
        var cut = Array(repeating: Array(repeating: 0, count: layers + 1), count: stages)
        for j in 1...layers where stageCost(0, 0, j) <= limit {
            squares[0][j] = stageCost(0, 0, j) * stageCost(0, 0, j)
        }
        for k in stride(from: 1, to: stages, by: 1) {
            for j in (k + 1)...layers {
                for i in k..<j where squares[k - 1][i] < unreachable {
                    let c = stageCost(k, i, j)
                    guard c <= limit else { continue }
                    let total = squares[k - 1][i] + c * c
                    if total <= squares[k][j] * (1 + 1e-12) {
                        squares[k][j] = total
                        cut[k][j] = i
                    }
                }
            }
        }
        var counts = [Int](repeating: 0, count: stages)
        var end = layers
        for k in stride(from: stages - 1, through: 0, by: -1) {
            let start = k == 0 ? 0 : cut[k][end]
            counts[k] = end - start
            end = start
        }
        return try StagePlan(layerCounts: counts, layers: layers)
    }

    /// The stage that holds `layer`.
    public func stage(ofLayer layer: Int) -> Int {
        guard let index = ranges.firstIndex(where: { $0.contains(layer) }) else {
            preconditionFailure("layer \(layer) is outside 0..<\(layers)")
        }
        return index
    }

    /// Each stage's cost under the given costs (same units as `split`).
    public func stageCosts(cost: [Double]? = nil, embeddingCost: Double = 0, headCost: Double = 0) -> [Double] {
        let costs = cost ?? Array(repeating: 1, count: layers)
        precondition(costs.count == layers, "one cost per layer")
        return ranges.enumerated().map { k, range in
            costs[range].reduce(0, +) + (k == 0 ? embeddingCost : 0) + (k == stages - 1 ? headCost : 0)
        }
    }

    /// The LM head's cost in decoder layers when decoding is bound by reading weights: its parameters
    /// (vocab × width) over one layer's (attention q, k, v, o + gated MLP). Gemma-2B (PaliGemma-3B):
    /// 257 216 × 2048 / 110.1 M ≈ 4.8 layers. Prefill applies the head to one token per sequence, so for
    /// prefill-bound runs pass a head cost near 0 instead.
    public static func lmHeadCost(width: Int, vocabSize: Int, mlpWidth: Int, queryWidth: Int, kvWidth: Int) -> Double {
        let layer = Double(width) * Double(2 * queryWidth + 2 * kvWidth + 3 * mlpWidth)
        return Double(vocabSize) * Double(width) / layer
    }

    public var description: String { Self.text(layerCounts) }

    private static func text(_ counts: [Int]) -> String { counts.map(String.init).joined(separator: ",") }

    private static func example(layers: Int, stages: Int) -> String {
        guard stages >= 1, stages <= layers else { return "" }
        let even = (0..<stages).map { layers / stages + ($0 < layers % stages ? 1 : 0) }
        return ", e.g. \(text(even))"
    }
}
