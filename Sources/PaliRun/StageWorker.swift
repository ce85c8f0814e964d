// A decoder stage: a contiguous range of Gemma layers with the KV caches of its sequences.
//
// Stage 0 owns the micro-batches of its replica. It keeps `microBatches` slots of at most
// `microBatchSize` sequences; a slot is either idle or in flight (its step is somewhere down the
// pipeline). An idle slot with work runs one step: a decode row for each of its live sequences plus
// the whole prompt of each waiting sequence that fits (prefill), i.e. continuous batching at
// micro-batch granularity. With S stages and at least S slots, every stage has a micro-batch to work on.
//
// Stages 1..S-1 apply their layers to whatever hidden states arrive and pass them on. The last stage
// holds the final norm and tied head, samples each sequence's next token, returns the tokens of the
// micro-batch to stage 0, and sends each finished sequence to the coordinator. With S = 1 one rank is
// both ends and the loop never leaves the process.
//
// Messages between stages carry hidden states [Σ new tokens, width] and token ids only; a step's header
// also names the sequences entering the pipeline (with their sampling parameters and measurements, for
// the last stage) and the ids whose caches can be dropped.
import Foundation
import PaliGeneration
import PaliModels
import PaliPipeline
import PaliTensor
import PaliWeights

final class StageWorker {
    let context: RankContext
    let decoder: GemmaDecoder
    let hyper: PaliGemmaHyperparameters
    let stopIDs: Set<Int>
    let index: Int
    let stages: Int
    let firstRank: Int
    let nextRank: Int?
    let microBatchSize: Int
    let microBatches: Int
    var isFirst: Bool { index == 0 }
    var isLast: Bool { index == stages - 1 }

    // Stage 0: sequences and micro-batch slots.
    private struct Live {
        var id: Int64
        var promptIDs: [Int]
        var features: Tensor?          // image rows until the prefill step
        var pendingToken: Int?         // next token to feed (nil before prefill)
        var parameters: JobParameters
        var measurements: JobMeasurements
        var slot: Int
    }
    private var waiting: [Live] = []
    private var waitingHead = 0
    private var live: [Int64: Live] = [:]
    private var slots: [[Int64]]
    private var inFlight: [Bool]
    private var steps: [Int64]
    private var release: [Int64] = []

    // Every stage: this stage's caches.
    private var caches: [Int64: KVCache] = [:]

    // Last stage: sampling state.
    private struct Decoding {
        var sampler: Sampler
        var tokens: [Int32] = []
        var parameters: JobParameters
        var measurements: JobMeasurements
        var started: Double
    }
    private var decoding: [Int64: Decoding] = [:]

    // Counters for stats.json.
    private var prefillTokens = 0
    private var decodeTokens = 0
    private var stepsRun = 0
    private var finished = 0

    init(context: RankContext, bundle: ModelBundle, checkpoint: Checkpoint, layers: Range<Int>,
         microBatchSize: Int, microBatches: Int) throws {
        self.context = context
        guard case .stage(let replica, let index) = context.role else { preconditionFailure("not a stage rank") }
        let layout = context.layout
        self.index = index
        stages = layout.stages
        hyper = bundle.hyper
        stopIDs = bundle.stopIDs
        firstRank = layout.rank(of: .stage(replica: replica, index: 0))
        nextRank = index + 1 < layout.stages ? layout.rank(of: .stage(replica: replica, index: index + 1)) : nil
        decoder = try GemmaDecoder(hyper: hyper.decoder, layers: layers, embed: index == 0,
                                   head: index == layout.stages - 1, weights: checkpoint)
        self.microBatchSize = max(1, microBatchSize)
        self.microBatches = max(1, microBatches)
        slots = Array(repeating: [], count: self.microBatches)
        inFlight = Array(repeating: false, count: self.microBatches)
        steps = Array(repeating: 0, count: self.microBatches)
        TestHooks.pause(TestHooks.slowLoad)
    }

    /// Serves micro-batches until the coordinator says stop.
    func run() throws {
        while true {
            let launchable = isFirst ? nextLaunchableSlot() : nil
            let received = try context.receive(timeout: launchable == nil ? context.heartbeatInterval / 2 : 0)
            if let (source, message) = received {
                switch message.kind {
                case .embeddings where isFirst:
                    try admit(EmbeddingsMessage(message))
                case .tokens where isFirst:
                    try apply(TokensMessage(message))
                case .hidden where !isFirst:
                    let step = try HiddenMessage(message)
                    let hidden = Tensor(shape: [step.totalTokens, hyper.decoder.width], values: step.hidden)
                    try context.busy {
                        try process(microBatch: step.microBatch, step: step.step, sequences: step.sequences,
                                    admitted: step.admitted, released: step.released, hidden: hidden)
                    }
                case .heartbeat:
                    break
                case .shutdown:
                    try context.sendFinalStats(["prefill_tokens": Double(prefillTokens),
                                                "decode_tokens": Double(decodeTokens),
                                                "steps": Double(stepsRun), "sequences": Double(finished)])
                    return
                default:
                    throw unexpected(message, from: source, at: context)
                }
                continue   // take in everything that is there before computing
            }
            if let slot = launchable {
                try context.busy { try launch(slot) }
            }
        }
    }

    // MARK: Stage 0

    private func admit(_ m: EmbeddingsMessage) throws {
        let ids = m.promptIDs.map(Int.init)
        let imageRows = ids.filter { $0 == hyper.imageTokenID }.count
        guard m.width == hyper.decoder.width, imageRows == m.tokens else {
            throw RunError.internalMessage("job \(m.jobID): \(m.tokens)×\(m.width) image embeddings for a prompt with "
                                           + "\(imageRows) image tokens and width \(hyper.decoder.width)")
        }
        waiting.append(Live(id: m.jobID, promptIDs: ids, features: Tensor(shape: [m.tokens, m.width], values: m.embeddings),
                            pendingToken: nil, parameters: m.parameters, measurements: m.measurements, slot: -1))
    }

    private var hasWaiting: Bool { waitingHead < waiting.count }

    /// An idle slot that has something to do: live sequences to step, or room and sequences waiting.
    private func nextLaunchableSlot() -> Int? {
        for slot in 0..<microBatches where !inFlight[slot] {
            if !slots[slot].isEmpty || hasWaiting { return slot }
        }
        return nil
    }

    /// Runs stage 0's part of one step of `slot` and hands it on (or finishes it here when S = 1).
    private func launch(_ slot: Int) throws {
        let members: [Live] = slots[slot].map { live[$0]! }
        var admitted: [Live] = []
        while members.count + admitted.count < microBatchSize, hasWaiting {
            var next = waiting[waitingHead]
            waiting[waitingHead].features = nil
            waitingHead += 1
            next.slot = slot
            admitted.append(next)
        }
        if waitingHead > 1024 && waitingHead * 2 > waiting.count {
            waiting.removeFirst(waitingHead)
            waitingHead = 0
        }
        let d = hyper.decoder.width
        var slices: [SequenceSlice] = []
        var blocks: [Tensor] = []
        for m in members {
            guard let token = m.pendingToken, let cache = caches[m.id] else {
                throw RunError.internalMessage("sequence \(m.id) in micro-batch \(slot) has no token to feed")
            }
            slices.append(SequenceSlice(id: m.id, position: cache.length, newTokens: 1, prefixLength: m.promptIDs.count))
            blocks.append(decoder.embed([token]))
        }
        for var m in admitted {
            slices.append(SequenceSlice(id: m.id, position: 0, newTokens: m.promptIDs.count, prefixLength: m.promptIDs.count))
            blocks.append(PaliGemmaModel.embed(ids: m.promptIDs, imageFeatures: m.features, imageTokenID: hyper.imageTokenID,
                                               decoder: decoder))
            m.features = nil
            live[m.id] = m
        }
        slots[slot] = members.map(\.id) + admitted.map(\.id)
        let rows = slices.reduce(0) { $0 + $1.newTokens }
        let hidden = Tensor(zeros: [rows, d])
        var row = 0
        for block in blocks {
            (hidden.data + row * d).update(from: block.data, count: block.count)
            row += block.rows
        }
        let released = release
        release = []
        steps[slot] += 1
        inFlight[slot] = true
        try process(microBatch: Int64(slot), step: steps[slot], sequences: slices,
                    admitted: admitted.map { AdmittedSequence(id: $0.id, parameters: $0.parameters, measurements: $0.measurements) },
                    released: released, hidden: hidden)
    }

    /// Stage 0 takes the tokens of a micro-batch back: finished sequences leave their slot.
    private func apply(_ m: TokensMessage) throws {
        let slot = Int(m.microBatch)
        guard (0..<microBatches).contains(slot), inFlight[slot] else {
            throw RunError.internalMessage("tokens for micro-batch \(m.microBatch), which is not in flight")
        }
        for update in m.updates {
            guard var sequence = live[update.id] else {
                throw RunError.internalMessage("tokens for unknown sequence \(update.id)")
            }
            if update.finished {
                live[update.id] = nil
                caches[update.id] = nil
                if stages > 2 { release.append(update.id) }
            } else {
                sequence.pendingToken = Int(update.token)
                live[update.id] = sequence
            }
        }
        slots[slot].removeAll { live[$0] == nil }
        inFlight[slot] = false
    }

    // MARK: Every stage

    /// Applies this stage's layers to a step; passes it on, or samples when this is the last stage.
    /// `admitted` are the sequences whose prefill is in this step; `released` the finished ones whose
    /// caches the middle stages drop.
    private func process(microBatch: Int64, step: Int64, sequences: [SequenceSlice], admitted: [AdmittedSequence],
                         released: [Int64], hidden: Tensor) throws {
        let d = hyper.decoder.width
        if !isFirst {
            for id in released { caches[id] = nil }
        }
        var sequenceSteps: [SequenceStep] = []
        for slice in sequences {
            let cache: KVCache
            if slice.position == 0 {
                cache = decoder.makeCache(capacity: slice.newTokens + 32)
                caches[slice.id] = cache
            } else {
                guard let existing = caches[slice.id] else {
                    throw RunError.internalMessage("stage \(index): no KV cache for sequence \(slice.id) at position \(slice.position)")
                }
                cache = existing
            }
            guard cache.length == slice.position else {
                throw RunError.internalMessage("stage \(index): sequence \(slice.id) is at \(cache.length) tokens, the step says \(slice.position)")
            }
            sequenceSteps.append(SequenceStep(tokens: slice.newTokens, cache: cache, prefixLength: slice.prefixLength))
            if slice.position == 0 { prefillTokens += slice.newTokens } else { decodeTokens += slice.newTokens }
        }
        decoder.forward(hidden, steps: sequenceSteps)
        stepsRun += 1
        if let nextRank {
            try context.transport.send(HiddenMessage(microBatch: microBatch, step: step, width: d,
                                                     sequences: sequences, hidden: hidden.storageArray,
                                                     admitted: admitted, released: released), to: nextRank)
            return
        }
        // Last stage: one logit row per sequence (its last new token), then sample.
        var lastRows: [Int] = []
        var row = 0
        for slice in sequences {
            row += slice.newTokens
            lastRows.append(row - 1)
        }
        let logits = decoder.logits(hidden, rows: lastRows)
        let v = hyper.decoder.vocabSize
        var updates: [TokenUpdate] = []
        let now = MonotonicClock.now()
        for (i, slice) in sequences.enumerated() {
            if slice.position == 0 {
                guard let new = admitted.first(where: { $0.id == slice.id }) else {
                    throw RunError.internalMessage("last stage: no parameters for new sequence \(slice.id)")
                }
                decoding[slice.id] = Decoding(sampler: Sampler(new.parameters.sampling), parameters: new.parameters,
                                              measurements: new.measurements, started: now)
            }
            guard var state = decoding[slice.id] else {
                throw RunError.internalMessage("last stage: sequence \(slice.id) was never prefilled here")
            }
            let token = state.sampler.next(logits.data + i * v, count: v)
            state.tokens.append(Int32(token))
            if slice.position == 0 { state.measurements.prefillSeconds = MonotonicClock.now() - state.started }
            let done = stopIDs.contains(token) || state.tokens.count >= state.parameters.maxNewTokens
            updates.append(TokenUpdate(id: slice.id, token: Int32(token), finished: done))
            if done {
                decoding[slice.id] = nil
                if !isFirst { caches[slice.id] = nil }
                finished += 1
                state.measurements.decodeSeconds = MonotonicClock.now() - state.started
                try context.transport.send(ResultMessage(jobID: slice.id, tokenIDs: state.tokens,
                                                         measurements: state.measurements), to: 0)
            } else {
                decoding[slice.id] = state
            }
        }
        let tokens = TokensMessage(microBatch: microBatch, step: step, updates: updates)
        if isFirst {
            try apply(tokens)
        } else {
            try context.transport.send(tokens, to: firstRank)
        }
    }
}

extension Tensor {
    /// The values as an array (a copy), row-major.
    var storageArray: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }
}
