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

    public init(promptIDs: [Int], pixelValues: Tensor?, maxNewTokens: Int = 20, sampling: SamplingParameters = .greedy) {
        self.promptIDs = promptIDs; self.pixelValues = pixelValues
        self.maxNewTokens = maxNewTokens; self.sampling = sampling
    }
}

public struct GenerationResult: Sendable, Equatable {
    /// Generated ids, up to and including the stop id (<eos>) when one was produced.
    public var tokens: [Int]
    public var stoppedAtEOS: Bool
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

    /// Generates for every request together; results in request order.
    public func generate(_ requests: [GenerationRequest]) -> [GenerationResult] {
        guard !requests.isEmpty else { return [] }
        let decoder = model.decoder
        let features = imageFeatures(requests.map(\.pixelValues))
        var samplers = requests.map { Sampler($0.sampling) }
        var results = requests.map { _ in GenerationResult(tokens: [], stoppedAtEOS: false) }
        let caches = requests.map { decoder.makeCache(capacity: $0.promptIDs.count + $0.maxNewTokens) }

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
            SequenceStep(tokens: requests[$0].promptIDs.count, cache: caches[$0], prefixLength: requests[$0].promptIDs.count)
        }
        decoder.forward(hidden, steps: steps)
        var live = requests.indices.filter { requests[$0].maxNewTokens > 0 }
        var logits = decoder.logits(hidden, rows: lastRows)
        var logitRow = Dictionary(uniqueKeysWithValues: requests.indices.map { ($0, $0) })

        while !live.isEmpty {
            var next: [Int] = []
            for i in live {
                let v = decoder.hyper.vocabSize
                let token = samplers[i].next(logits.data + logitRow[i]! * v, count: v)
                results[i].tokens.append(token)
                if stopIDs.contains(token) {
                    results[i].stoppedAtEOS = true
                } else if results[i].tokens.count < requests[i].maxNewTokens {
                    next.append(i)
                }
            }
            live = next
            guard !live.isEmpty else { break }
            // One decode step for every live sequence.
            let x = decoder.embed(live.map { results[$0].tokens.last! })
            decoder.forward(x, steps: live.map {
                SequenceStep(tokens: 1, cache: caches[$0], prefixLength: requests[$0].promptIDs.count)
            })
            logits = decoder.logits(x, rows: Array(live.indices))
            logitRow = Dictionary(uniqueKeysWithValues: live.enumerated().map { ($1, $0) })
        }
        return results
    }
}
