// Decoder stage 0: the scheduler of its replica. It keeps `microBatches` slots of at most
// `microBatchSize` sequences; a slot is either idle or in flight (its step is somewhere down the
// pipeline). An idle slot with work runs one step: a decode row for each of its live sequences plus
// the whole prompt of each waiting sequence that fits (prefill), i.e. continuous batching at
// micro-batch granularity. With S stages and at least S slots, every stage has a micro-batch to work on.
// The tokens of a step come back from the last stage (or from this rank's own sampler when S = 1);
// finished sequences leave their slot. A beam-search job counts as its beams' rows in a micro-batch
// (a job with more beams than `microBatchSize` still runs, alone in its slot): its prefill is one
// sequence, then each step feeds one token per beam with the parents the last stage chose.
import Foundation
import PaliModels
import PaliPipeline
import PaliTensor

final class StageScheduler: StageRole {
    let context: RankContext
    let stage: DecoderStage
    let imageTokenID: Int
    /// Stage 1 of this replica; nil when this stage is also the last one.
    let nextRank: Int?
    /// The sampler when this stage is also the last one (S = 1).
    let sampler: StageSampler?
    let microBatchSize: Int
    let microBatches: Int

    private struct Live {
        var id: Int64
        var promptIDs: [Int]
        var features: Tensor?          // image rows until the prefill step
        var pendingToken: Int?         // next token to feed (nil before prefill)
        var pendingBeams: (tokens: [Int], parents: [Int])?   // beam search: the next token of each beam
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
    /// Finished sequences the middle stages have not been told about yet.
    private var release: [Int64] = []

    init(context: RankContext, stage: DecoderStage, imageTokenID: Int, nextRank: Int?, sampler: StageSampler?,
         microBatchSize: Int, microBatches: Int) {
        precondition((nextRank == nil) == (sampler != nil), "stage 0 either hands steps on or samples them")
        self.context = context
        self.stage = stage
        self.imageTokenID = imageTokenID
        self.nextRank = nextRank
        self.sampler = sampler
        self.microBatchSize = max(1, microBatchSize)
        self.microBatches = max(1, microBatches)
        slots = Array(repeating: [], count: self.microBatches)
        inFlight = Array(repeating: false, count: self.microBatches)
        steps = Array(repeating: 0, count: self.microBatches)
    }

    /// Serves micro-batches until the coordinator says stop.
    func run() throws {
        while true {
            let launchable = nextLaunchableSlot()
            let received = try context.receive(timeout: launchable == nil ? context.heartbeatInterval / 2 : 0)
            if let (source, message) = received {
                switch message.kind {
                case .embeddings:
                    try admit(EmbeddingsMessage(message))
                case .tokens where sampler == nil:
                    try apply(TokensMessage(message))
                case .heartbeat:
                    break
                case .shutdown:
                    try context.sendFinalStats(stage.statistics(finishedSequences: sampler?.finished ?? 0))
                    return
                default:
                    throw unexpected(message, from: source, at: context)
                }
                continue   // take in everything that is there before computing
            }
            if let slot = launchable {
                try context.busy(.stageStep, a: slot, b: Int(steps[slot]) + 1) { try launch(slot) }
            }
        }
    }

    private func admit(_ m: EmbeddingsMessage) throws {
        let ids = m.promptIDs.map(Int.init)
        let imageRows = ids.filter { $0 == imageTokenID }.count
        guard m.width == stage.width, imageRows == m.tokens else {
            throw RunError.internalMessage("job \(m.jobID): \(m.tokens)×\(m.width) image embeddings for a prompt with "
                                           + "\(imageRows) image tokens and width \(stage.width)")
        }
        waiting.append(Live(id: m.jobID, promptIDs: ids, features: Tensor(shape: [m.tokens, m.width], values: m.embeddings),
                            pendingToken: nil, parameters: m.parameters, measurements: m.measurements, slot: -1))
    }

    private var hasWaiting: Bool { waitingHead < waiting.count }

    /// Rows a sequence takes in a decode step: its beams.
    private static func rows(_ sequence: Live) -> Int { max(1, sequence.parameters.beams) }

    /// An idle slot that has something to do: live sequences to step, or room and sequences waiting.
    private func nextLaunchableSlot() -> Int? {
        for slot in 0..<microBatches where !inFlight[slot] {
            if !slots[slot].isEmpty || hasWaiting { return slot }
        }
        return nil
    }

    /// Runs stage 0's part of one step of `slot` and hands it on (or samples it here when S = 1).
    private func launch(_ slot: Int) throws {
        let members: [Live] = slots[slot].map { live[$0]! }
        var admitted: [Live] = []
        var rows = members.reduce(0) { $0 + Self.rows($1) }
        while hasWaiting, rows == 0 || rows + Self.rows(waiting[waitingHead]) <= microBatchSize {
            var next = waiting[waitingHead]
            rows += Self.rows(next)
            waiting[waitingHead].features = nil
            waitingHead += 1
            next.slot = slot
            admitted.append(next)
        }
        if waitingHead > 1024 && waitingHead * 2 > waiting.count {
            waiting.removeFirst(waitingHead)
            waitingHead = 0
        }
        let d = stage.width
        let decoder = stage.decoder
        var slices: [SequenceSlice] = []
        var blocks: [Tensor] = []
        for m in members {
            guard let cache = stage.cache(of: m.id) else {
                throw RunError.internalMessage("sequence \(m.id) in micro-batch \(slot) has no cache")
            }
            if let beams = m.pendingBeams {
                slices.append(SequenceSlice(id: m.id, position: cache.length, newTokens: beams.tokens.count,
                                            prefixLength: m.promptIDs.count, parents: beams.parents))
                blocks.append(decoder.embed(beams.tokens))
            } else if let token = m.pendingToken {
                slices.append(SequenceSlice(id: m.id, position: cache.length, newTokens: 1, prefixLength: m.promptIDs.count))
                blocks.append(decoder.embed([token]))
            } else {
                throw RunError.internalMessage("sequence \(m.id) in micro-batch \(slot) has no token to feed")
            }
        }
        for var m in admitted {
            slices.append(SequenceSlice(id: m.id, position: 0, newTokens: m.promptIDs.count, prefixLength: m.promptIDs.count))
            blocks.append(PaliGemmaModel.embed(ids: m.promptIDs, imageFeatures: m.features, imageTokenID: imageTokenID,
                                               decoder: decoder))
            m.features = nil
            live[m.id] = m
        }
        slots[slot] = members.map(\.id) + admitted.map(\.id)
        let hidden = Tensor(zeros: [slices.reduce(0) { $0 + $1.newTokens }, d])
        context.trace?.annotate(c: hidden.rows)
        var row = 0
        for block in blocks {
            (hidden.data + row * d).update(from: block.data, count: block.count)
            row += block.rows
        }
        let entering = admitted.map { AdmittedSequence(id: $0.id, parameters: $0.parameters, measurements: $0.measurements) }
        let released = release
        release = []
        steps[slot] += 1
        inFlight[slot] = true
        try stage.forward(slices, hidden: hidden)
        if let nextRank {
            try context.send(HiddenMessage(microBatch: Int64(slot), step: steps[slot], width: d,
                                                     sequences: slices, hidden: hidden.storageArray,
                                                     admitted: entering, released: released), to: nextRank)
        } else if let sampler {
            try apply(try sampler.sample(microBatch: Int64(slot), step: steps[slot], sequences: slices,
                                         admitted: entering, hidden: hidden))
        }
    }

    /// Takes the tokens of a micro-batch back: finished sequences leave their slot.
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
                stage.drop(update.id)
                if stage.stages > 2 { release.append(update.id) }
            } else {
                if let tokens = update.beamTokens, let parents = update.parents {
                    guard tokens.count == parents.count, !tokens.isEmpty else {
                        throw RunError.internalMessage("sequence \(update.id): \(tokens.count) beam tokens, \(parents.count) parents")
                    }
                    sequence.pendingBeams = (tokens.map(Int.init), parents)
                } else {
                    sequence.pendingToken = Int(update.token)
                }
                live[update.id] = sequence
            }
        }
        slots[slot].removeAll { live[$0] == nil }
        inFlight[slot] = false
    }
}
