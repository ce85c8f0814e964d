// What every decoder stage rank has, whatever its role: a contiguous range of Gemma layers and the KV
// caches of the sequences passing through it. The roles around it (one file each):
//
//   StageScheduler  stage 0: owns its replica's micro-batch slots, embeds, starts every step
//   MiddleStage     stages 1..S-1: applies its layers and hands the step on (to the next rank, or, on
//                   the last stage, to its StageSampler and the tokens back to stage 0)
//   StageSampler    the last stage's sampling: one token per sequence, finished jobs to the coordinator
//
// With S = 1, stage 0 is also the last stage: its scheduler holds the sampler and the loop never leaves
// the process. Messages between stages carry hidden states [Σ new tokens, width] and token ids only; a
// step's header also names the sequences entering the pipeline (their sampling parameters and
// measurements, for the sampler) and the ids whose caches can be dropped.
//
// Beam search: the beams of a job travel together, as one sequence of the step with one row per beam
// (`SequenceSlice.parents`). Each stage keeps one cache per beam and, before applying its layers, moves or
// copies them as the parents say, so every stage follows the beams the last stage chose.
import Foundation
import PaliGeneration
import PaliModels
import PaliPipeline
import PaliTensor
import PaliWeights

final class DecoderStage {
    let decoder: GemmaDecoder
    /// This stage's index in its replica, 0..<stages.
    let index: Int
    let stages: Int
    /// Hidden size.
    let width: Int
    /// Per sequence, the caches of its beams (one without beam search).
    private var caches: [Int64: [KVCache]] = [:]

    // Counters for stats.json.
    private(set) var prefillTokens = 0
    private(set) var decodeTokens = 0
    private(set) var steps = 0

    var isFirst: Bool { index == 0 }
    var isLast: Bool { index == stages - 1 }

    /// The stage `index` of `stages`, with layers `layers` (stage 0 also embeds; the last stage holds the
    /// final norm and the tied head).
    init(hyper: PaliGemmaHyperparameters, layers: Range<Int>, index: Int, stages: Int, checkpoint: Checkpoint) throws {
        self.index = index
        self.stages = stages
        width = hyper.decoder.width
        decoder = try GemmaDecoder(hyper: hyper.decoder, layers: layers, embed: index == 0, head: index == stages - 1,
                                   weights: checkpoint)
    }

    /// The cache of a sequence this stage has prefilled (of its first beam).
    func cache(of id: Int64) -> KVCache? { caches[id]?.first }

    /// Forgets a finished sequence.
    func drop(_ id: Int64) { caches[id] = nil }

    /// Applies this stage's layers to one step, in place: `hidden` holds the new rows of `sequences`
    /// in order. A sequence at position 0 gets a new cache; any other must be where the step says.
    func forward(_ sequences: [SequenceSlice], hidden: Tensor) throws {
        var sequenceSteps: [SequenceStep] = []
        for slice in sequences {
            var beams: [KVCache]
            if slice.position == 0 {
                beams = [decoder.makeCache(capacity: slice.newTokens + 32)]
            } else {
                guard let existing = caches[slice.id] else {
                    throw RunError.internalMessage("stage \(index): no KV cache for sequence \(slice.id) at position \(slice.position)")
                }
                beams = existing
            }
            if let parents = slice.parents {
                guard slice.position > 0, parents.allSatisfy({ beams.indices.contains($0) }) else {
                    throw RunError.internalMessage("stage \(index): sequence \(slice.id) has \(beams.count) beam(s), the step's "
                                                   + "parents are \(parents)")
                }
                beams = beams.reordered(parents: parents)
            } else if beams.count != 1 {
                throw RunError.internalMessage("stage \(index): sequence \(slice.id) has \(beams.count) beams and a step without parents")
            }
            caches[slice.id] = beams
            for cache in beams {
                guard cache.length == slice.position else {
                    throw RunError.internalMessage("stage \(index): sequence \(slice.id) is at \(cache.length) tokens, the step says \(slice.position)")
                }
                sequenceSteps.append(SequenceStep(tokens: slice.newTokens / beams.count, cache: cache,
                                                  prefixLength: slice.prefixLength))
            }
            if slice.position == 0 { prefillTokens += slice.newTokens } else { decodeTokens += slice.newTokens }
        }
        // The last stage's sampler reads only its logit rows: the last layer skips the others' queries and MLP.
        decoder.forward(hidden, steps: sequenceSteps, readRows: isLast ? StageSampler.logitRows(sequences).rows : nil)
        steps += 1
    }

    /// This rank's counters for stats.json (`sequences`: the jobs its sampler finished, 0 elsewhere).
    func statistics(finishedSequences: Int) -> [String: Double] {
        ["prefill_tokens": Double(prefillTokens), "decode_tokens": Double(decodeTokens), "steps": Double(steps),
         "sequences": Double(finishedSequences)]
    }
}

/// A decoder stage rank: stage 0's scheduler or a later stage.
protocol StageRole: AnyObject {
    var stage: DecoderStage { get }
    /// Serves steps until the coordinator says stop.
    func run() throws
}

/// The role of the stage rank of `context`.
func makeStageRole(context: RankContext, bundle: ModelBundle, checkpoint: Checkpoint, layers: Range<Int>,
                   microBatchSize: Int, microBatches: Int) throws -> StageRole {
    guard case .stage(let replica, let index) = context.role else { preconditionFailure("not a stage rank") }
    let layout = context.layout
    let stage = try DecoderStage(hyper: bundle.hyper, layers: layers, index: index, stages: layout.stages,
                                 checkpoint: checkpoint)
    let sampler = stage.isLast ? StageSampler(stage: stage, hyper: bundle.hyper, stopIDs: bundle.stopIDs,
                                              context: context) : nil
    defer { TestHooks.pause(TestHooks.slowLoad) }
    if index == 0 {
        let next = stage.isLast ? nil : layout.rank(of: .stage(replica: replica, index: 1))
        return StageScheduler(context: context, stage: stage, imageTokenID: bundle.hyper.imageTokenID, nextRank: next,
                              sampler: sampler, microBatchSize: microBatchSize, microBatches: microBatches)
    }
    let next: MiddleStage.Next = stage.isLast
        ? .sampler(sampler!, firstRank: layout.rank(of: .stage(replica: replica, index: 0)))
        : .rank(layout.rank(of: .stage(replica: replica, index: index + 1)))
    return MiddleStage(context: context, stage: stage, next: next)
}

extension Tensor {
    /// The values as an array (a copy), row-major.
    var storageArray: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }
}
