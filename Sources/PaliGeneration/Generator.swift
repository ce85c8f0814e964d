// Single-process generation: batched prefill, then KV-cached decode steps for every live sequence at
// once. Sequences of different prompt lengths share each forward without padding (GemmaDecoder works
// on ragged batches), so a sequence's tokens do not depend on what it was batched with.
import Foundation
import PaliModels
import PaliTensor

public struct GenerationRequest: @unchecked Sendable {
    /// Prompt ids as `PromptFormat` builds them (image tokens first).
    public var promptIDs: [Int]
    /// Pixel values [3, S, S]; nil only when the prompt holds no image tokens.
    public var pixelValues: Tensor?
    public var maxNewTokens: Int
    public var sampling: SamplingParameters
    /// Beam search with this many beams when above 1 (`sampling` is then not used).
    public var beams: Int

    public init(promptIDs: [Int], pixelValues: Tensor?, maxNewTokens: Int = 20, sampling: SamplingParameters = .greedy,
                beams: Int = 1) {
        self.promptIDs = promptIDs; self.pixelValues = pixelValues
        self.maxNewTokens = maxNewTokens; self.sampling = sampling; self.beams = beams
    }
}

public struct GenerationResult: Sendable, Equatable {
    /// Generated ids, up to and including the stop id (<eos>) when one was produced.
    public var tokens: [Int]
    public var stoppedAtEOS: Bool
    /// Per token: the log-softmax of the logits it was chosen from (after Gemma 2's final soft-cap;
    /// untempered), at that token, as transformers' `compute_transition_scores(normalize_logits=True)`.
    public var tokenLogprobs: [Double] = []
    /// Greedy and sampling: Σ tokenLogprobs. Beam search: the sequence score, Σ tokenLogprobs /
    /// tokens.count^length_penalty (transformers' `sequences_scores`).
    public var logprob: Double = 0

    public init(tokens: [Int], stoppedAtEOS: Bool, tokenLogprobs: [Double] = [], logprob: Double = 0) {
        self.tokens = tokens; self.stoppedAtEOS = stoppedAtEOS; self.tokenLogprobs = tokenLogprobs; self.logprob = logprob
    }

    /// The result of a finished beam search (empty when it ran no step).
    public init(_ search: BeamSearch) {
        guard let best = search.best else { self.init(tokens: [], stoppedAtEOS: false); return }
        self.init(tokens: best.beam.tokens, stoppedAtEOS: best.beam.tokens.last.map(search.stopIDs.contains) ?? false,
                  tokenLogprobs: best.beam.tokenLogprobs, logprob: best.score)
    }
}

public final class Generator: @unchecked Sendable {
    public let model: PaliGemmaModel
    /// Ids that end a sequence (config's eos_token_id).
    public let stopIDs: Set<Int>

    public init(model: PaliGemmaModel, stopIDs: Set<Int>? = nil) {
        self.model = model
        self.stopIDs = stopIDs ?? [model.hyper.eosID]
    }

    /// Image features for every request that has an image, in one batched vision forward.
    func imageFeatures(_ pixels: [Tensor?]) -> [Tensor?] {
        let present = pixels.compactMap { $0 }
        guard !present.isEmpty else { return pixels.map { _ in nil } }
        let v = model.hyper.vision
        let one = 3 * v.imageSize * v.imageSize
        let batch = Tensor(zeros: [present.count, 3, v.imageSize, v.imageSize])
        for (i, p) in present.enumerated() {
            precondition(p.count == one, "pixel values \(p.shape) do not match image size \(v.imageSize)")
            (batch.data + i * one).update(from: p.data, count: one)
        }
        let features = model.imageFeatures(batch)   // [B, N, D]
        let n = v.tokens, d = model.hyper.decoder.width
        var next = 0
        return pixels.map { p in
            guard p != nil else { return nil }
            let f = Tensor(zeros: [n, d])
            f.data.update(from: features.data + next * n * d, count: n * d)
            next += 1
            return f
        }
    }

    /// Logits [T, V] for every prompt position (transformers' `model(**inputs).logits[0]`).
    public func prefillLogits(promptIDs: [Int], pixelValues: Tensor?) -> Tensor {
        let features = imageFeatures([pixelValues])[0]
        let hidden = model.embed(ids: promptIDs, imageFeatures: features)
        let cache = model.decoder.makeCache(capacity: promptIDs.count)
        model.decoder.forward(hidden, steps: [SequenceStep(tokens: promptIDs.count, cache: cache, prefixLength: promptIDs.count)])
        return model.decoder.logits(hidden, rows: Array(0..<promptIDs.count))
    }

    /// Generates for every request together; results in request order. A beam-search request runs its
    /// beams as rows of the same forwards.
    public func generate(_ requests: [GenerationRequest]) -> [GenerationResult] {
        guard !requests.isEmpty else { return [] }
        let decoder = model.decoder
        let v = decoder.hyper.vocabSize
        let features = imageFeatures(requests.map(\.pixelValues))
        var samplers = requests.map { Sampler($0.sampling) }
        var searches: [BeamSearch?] = requests.map {
            $0.beams > 1 ? BeamSearch(beams: $0.beams, maxNewTokens: $0.maxNewTokens, stopIDs: stopIDs) : nil
        }
        var results = requests.map { _ in GenerationResult(tokens: [], stoppedAtEOS: false) }
        // Per request, the caches of its running beams (one without beam search).
        var caches = requests.map { [decoder.makeCache(capacity: $0.promptIDs.count + $0.maxNewTokens)] }

        // Prefill: all prompts in one ragged batch.
        let d = decoder.hyper.width
        let total = requests.reduce(0) { $0 + $1.promptIDs.count }
        let hidden = Tensor(zeros: [total, d])
        var row = 0
        var lastRows: [Int] = []
        for (i, r) in requests.enumerated() {
            let x = model.embed(ids: r.promptIDs, imageFeatures: features[i])
            (hidden.data + row * d).update(from: x.data, count: x.count)
            row += r.promptIDs.count
            lastRows.append(row - 1)
        }
        let steps = requests.indices.map {
            SequenceStep(tokens: requests[$0].promptIDs.count, cache: caches[$0][0], prefixLength: requests[$0].promptIDs.count)
        }
        decoder.forward(hidden, steps: steps, readRows: lastRows)
        var live = requests.indices.filter { requests[$0].maxNewTokens > 0 }
        var logits = decoder.logits(hidden, rows: lastRows)
        // First logit row of each live request (its beams' rows follow).
        var firstRow = Dictionary(uniqueKeysWithValues: requests.indices.map { ($0, $0) })

        while !live.isEmpty {
            var next: [Int] = []
            for i in live {
                let rows = logits.data + firstRow[i]! * v
                if var search = searches[i] {
                    let parents = search.advance(vocabSize: v) { UnsafePointer(rows + $0 * v) }
                    searches[i] = search
                    if search.isDone {
                        results[i] = GenerationResult(search)
                        caches[i] = []
                    } else {
                        caches[i] = caches[i].reordered(parents: parents)
                        next.append(i)
                    }
                    continue
                }
                let token = samplers[i].next(rows, count: v)
                let logprob = Softmax.logProbability(of: token, rows, count: v)
                results[i].tokens.append(token)
                results[i].tokenLogprobs.append(logprob)
                results[i].logprob += logprob
                if stopIDs.contains(token) {
                    results[i].stoppedAtEOS = true
                } else if results[i].tokens.count < requests[i].maxNewTokens {
                    next.append(i)
                }
            }
            live = next
            guard !live.isEmpty else { break }
            // One decode step for every running beam of every live request.
            var feed: [Int] = []
            var decodeSteps: [SequenceStep] = []
            firstRow = [:]
            for i in live {
                firstRow[i] = feed.count
                let tokens = searches[i]?.runningTokens ?? [results[i].tokens.last!]
                for (token, cache) in zip(tokens, caches[i]) {
                    feed.append(token)
                    decodeSteps.append(SequenceStep(tokens: 1, cache: cache, prefixLength: requests[i].promptIDs.count))
                }
            }
            let x = decoder.embed(feed)
            decoder.forward(x, steps: decodeSteps)
            logits = decoder.logits(x, rows: Array(feed.indices))
        }
        return results
    }
}
