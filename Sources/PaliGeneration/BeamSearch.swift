// Beam search for one sequence, as transformers 5.23 runs `generate(num_beams=N)` with its defaults
// length_penalty = 1.0 and early_stopping = False (GenerationMixin._beam_search; what it does, written
// out here from its behaviour):
//
//   - The prompt is prefilled once; the first step continues it alone (transformers starts N copies with
//     scores 0, -1e9, …: only the first one's continuations can win).
//   - Each step scores every continuation (beam b, token t) by the beam's running sum of log-probs plus
//     log-softmax(logits_b)[t] and keeps the best K = max(2, 1 + stop ids) · N, best first (ties: the
//     lower beam, then the lower token id).
//   - A candidate "finishes" when t is a stop id or the answer reaches `maxNewTokens` (then every
//     candidate does). Among the first N candidates, those that finish become hypotheses scored
//     sum / length^length_penalty (length counts generated tokens, the stop id included); the N best
//     hypotheses so far are kept.
//   - The next running beams are the N best candidates that did not finish.
//   - The search ends when every candidate of a step finished, or (early_stopping = False heuristic) when
//     N hypotheses exist and the best running sum divided by the current length^length_penalty is no
//     better than the worst hypothesis.
//   - The answer is the best hypothesis; its score is transformers' `sequences_scores`.
//
// The model forward is the caller's: after each `advance`, running beam k continues beam `parents[k]`
// of the previous step (its KV cache copied or moved, `reordered(_:parents:)`) with `runningTokens[k]`.
import Foundation
import PaliModels
import PaliTensor

public struct BeamSearch: Sendable {
    /// A running beam or a finished hypothesis.
    public struct Beam: Sendable, Equatable {
        public var tokens: [Int]
        /// log-softmax of each step's logits at the chosen token.
        public var tokenLogprobs: [Double]
        /// Σ tokenLogprobs.
        public var sum: Double
    }

    public let beams: Int
    public let maxNewTokens: Int
    public let stopIDs: Set<Int>
    public let lengthPenalty: Double
    /// Running beams, best first: one before the first step, `beams` after.
    public private(set) var running: [Beam] = [Beam(tokens: [], tokenLogprobs: [], sum: 0)]
    /// Finished hypotheses with their scores, best first; at most `beams`.
    public private(set) var finished: [(beam: Beam, score: Double)] = []
    /// Whether a running beam may still beat the worst kept hypothesis (transformers' heuristic).
    private var improvable = true
    public private(set) var isDone: Bool

    public init(beams: Int, maxNewTokens: Int, stopIDs: Set<Int>, lengthPenalty: Double = 1.0) {
        precondition(beams >= 1, "beam search needs at least one beam")
        self.beams = beams
        self.maxNewTokens = maxNewTokens
        self.stopIDs = stopIDs
        self.lengthPenalty = lengthPenalty
        isDone = maxNewTokens <= 0
    }

    /// Candidates kept per step (transformers' `beams_to_keep`).
    var candidateCount: Int { max(2, 1 + stopIDs.count) * beams }

    /// The last token of each running beam: what the next forward feeds.
    public var runningTokens: [Int] { running.map { $0.tokens.last ?? -1 } }

    /// The answer once done: the best hypothesis (its tokens, per-token log-probs, sequence score).
    public var best: (beam: Beam, score: Double)? { finished.first }

    /// One step: `logits(b)` is the logit row [vocabSize] of running beam b (in `running` order). Returns
    /// the parent of each new running beam (empty once done).
    public mutating func advance(vocabSize v: Int, logits: (Int) -> UnsafePointer<Float>) -> [Int] {
        precondition(!isDone, "advance after the beam search ended")
        let k = candidateCount
        precondition(v >= k, "a vocabulary of \(v) tokens is too small for \(beams) beams")
        // The best k continuations of each beam, then the best k of all.
        struct Candidate { var beam: Int; var token: Int; var logprob: Double; var score: Double }
        var candidates: [Candidate] = []
        for b in running.indices {
            let row = logits(b)
            let normaliser = Softmax.logSumExp(row, count: v)
            for token in Self.topTokens(row, count: v, k: k) {
                let logprob = Double(row[token]) - normaliser
                candidates.append(Candidate(beam: b, token: token, logprob: logprob, score: running[b].sum + logprob))
            }
        }
        candidates.sort { $0.score > $1.score || ($0.score == $1.score && ($0.beam, $0.token) < ($1.beam, $1.token)) }
        candidates.removeSubrange(min(k, candidates.count)...)

        let length = running[0].tokens.count + 1
        let atLimit = length >= maxNewTokens
        func extended(_ c: Candidate) -> Beam {
            let parent = running[c.beam]
            return Beam(tokens: parent.tokens + [c.token], tokenLogprobs: parent.tokenLogprobs + [c.logprob], sum: c.score)
        }
        let finishes = candidates.map { atLimit || stopIDs.contains($0.token) }
        // New hypotheses: the finishing ones among the first `beams` candidates.
        if improvable {
            let penalty = pow(Double(length), lengthPenalty)
            var merged = finished
            for (i, c) in candidates.prefix(beams).enumerated() where finishes[i] {
                merged.append((extended(c), c.score / penalty))
            }
            // Stable: an earlier hypothesis wins a tie.
            finished = merged.enumerated().sorted { ($0.element.score, -$0.offset) > ($1.element.score, -$1.offset) }
                .prefix(beams).map(\.element)
        }
        let continuing = candidates.indices.filter { !finishes[$0] }.prefix(beams)
        if finishes.allSatisfy({ $0 }) || continuing.count < beams {
            // Every candidate finished (the token budget): nothing left to run.
            isDone = true
            running = []
            return []
        }
        let parents = continuing.map { candidates[$0].beam }
        running = continuing.map { extended(candidates[$0]) }
        if finished.count == beams, let worst = finished.last?.score {
            improvable = improvable && running[0].sum / pow(Double(length), lengthPenalty) > worst
        }
        if !improvable {
            isDone = true
            running = []
            return []
        }
        return parents
    }

    /// Indices of the k largest entries of row, largest first (ties: lower index first).
    static func topTokens(_ row: UnsafePointer<Float>, count: Int, k: Int) -> [Int] {
        var top: [Int] = []
        top.reserveCapacity(k + 1)
        for i in 0..<count {
            let value = row[i]
            if top.count == k, let last = top.last, value <= row[last] { continue }
            var at = top.count
            while at > 0 && row[top[at - 1]] < value { at -= 1 }
            top.insert(i, at: at)
            if top.count > k { top.removeLast() }
        }
        return top
    }
}

extension Array where Element == KVCache {
    /// The caches of the next step's beams: beam k continues `self[parents[k]]`. A parent's cache is
    /// moved to its first child and copied for the others; caches no beam continues are dropped.
    public func reordered(parents: [Int]) -> [KVCache] {
        var taken = Set<Int>()
        return parents.map { p in
            precondition(indices.contains(p), "beam parent \(p) of \(count) beams")
            return taken.insert(p).inserted ? self[p] : self[p].copy()
        }
    }
}
