// The last decoder stage's sampling: after the stage's layers, one logit row per sequence (its last new
// token) through the final norm and tied head, the next token from each job's own Sampler, and each
// finished job (EOS or its token budget) sent to the coordinator with its measurements and the
// log-probability of each token. A beam-search job has one row per beam (all of the step's rows) and a
// BeamSearch, which picks the next tokens and the beams they continue; stage 0 feeds them back.
import Foundation
import PaliGeneration
import PaliModels
import PaliPipeline
import PaliTensor

final class StageSampler {
    let stage: DecoderStage
    let vocabSize: Int
    let stopIDs: Set<Int>
    /// The rank's context: finished jobs go to the coordinator through it (traced sends).
    unowned let context: RankContext

    private struct Decoding {
        var sampler: Sampler
        /// Set for a beam-search job.
        var search: BeamSearch?
        var tokens: [Int32] = []
        var tokenLogprobs: [Double] = []
        var parameters: JobParameters
        var measurements: JobMeasurements
        var started: Double
    }
    private var decoding: [Int64: Decoding] = [:]
    /// Jobs finished here, for stats.json.
    private(set) var finished = 0

    init(stage: DecoderStage, hyper: PaliGemmaHyperparameters, stopIDs: Set<Int>, context: RankContext) {
        self.stage = stage
        vocabSize = hyper.decoder.vocabSize
        self.stopIDs = stopIDs
        self.context = context
    }

    /// The rows of a step's hidden states the sampler reads (ascending): the last row of each sequence,
    /// every row (one per beam) of a beam-search step; and, per sequence, the index of its first one.
    static func logitRows(_ sequences: [SequenceSlice]) -> (rows: [Int], first: [Int]) {
        var rows: [Int] = [], first: [Int] = []
        var row = 0
        for slice in sequences {
            first.append(rows.count)
            if slice.parents != nil {
                rows += row..<(row + slice.newTokens)
            } else {
                rows.append(row + slice.newTokens - 1)
            }
            row += slice.newTokens
        }
        return (rows, first)
    }

    /// Samples the next token of every sequence of a step whose `hidden` states went through the last
    /// stage's layers. `admitted` holds the parameters of the sequences prefilled in this step. Finished
    /// jobs go to the coordinator (rank 0), and leave this stage's caches unless it is also stage 0
    /// (whose scheduler drops them when it reads the updates).
    func sample(microBatch: Int64, step: Int64, sequences: [SequenceSlice], admitted: [AdmittedSequence],
                hidden: Tensor) throws -> TokensMessage {
        let (logitRows, firstLogitRow) = Self.logitRows(sequences)
        let logits = stage.decoder.logits(hidden, rows: logitRows)
        let v = vocabSize
        var updates: [TokenUpdate] = []
        let now = MonotonicClock.now()
        for (i, slice) in sequences.enumerated() {
            if slice.position == 0 {
                guard let new = admitted.first(where: { $0.id == slice.id }) else {
                    throw RunError.internalMessage("last stage: no parameters for new sequence \(slice.id)")
                }
                let search = new.parameters.beams > 1
                    ? BeamSearch(beams: new.parameters.beams, maxNewTokens: new.parameters.maxNewTokens, stopIDs: stopIDs)
                    : nil
                decoding[slice.id] = Decoding(sampler: Sampler(new.parameters.sampling), search: search,
                                              parameters: new.parameters, measurements: new.measurements, started: now)
            }
            guard var state = decoding[slice.id] else {
                throw RunError.internalMessage("last stage: sequence \(slice.id) was never prefilled here")
            }
            let rows = UnsafePointer(logits.data + firstLogitRow[i] * v)
            if slice.position == 0 { state.measurements.prefillSeconds = MonotonicClock.now() - state.started }
            let done: Bool
            if var search = state.search {
                guard search.running.count == (slice.parents?.count ?? 1) else {
                    throw RunError.internalMessage("last stage: sequence \(slice.id) runs \(search.running.count) beams, "
                                                   + "the step has \(slice.parents?.count ?? 1)")
                }
                let parents = search.advance(vocabSize: v) { rows + $0 * v }
                state.search = search
                done = search.isDone
                if done {
                    let result = GenerationResult(search)
                    state.tokens = result.tokens.map(Int32.init)
                    state.tokenLogprobs = result.tokenLogprobs
                    updates.append(TokenUpdate(id: slice.id, token: state.tokens.last ?? 0, finished: true))
                } else {
                    let next = search.runningTokens.map(Int32.init)
                    updates.append(TokenUpdate(id: slice.id, token: next[0], finished: false, beamTokens: next, parents: parents))
                }
            } else {
                let token = state.sampler.next(rows, count: v)
                state.tokens.append(Int32(token))
                state.tokenLogprobs.append(Softmax.logProbability(of: token, rows, count: v))
                done = stopIDs.contains(token) || state.tokens.count >= state.parameters.maxNewTokens
                updates.append(TokenUpdate(id: slice.id, token: Int32(token), finished: done))
            }
            if done {
                decoding[slice.id] = nil
                if !stage.isFirst { stage.drop(slice.id) }
                finished += 1
                state.measurements.decodeSeconds = MonotonicClock.now() - state.started
                let logprob = state.search.flatMap { $0.best?.score } ?? state.tokenLogprobs.reduce(0, +)
                try context.send(ResultMessage(jobID: slice.id, tokenIDs: state.tokens, tokenLogprobs: state.tokenLogprobs,
                                                 logprob: logprob, measurements: state.measurements),
                                   to: 0)
            } else {
                decoding[slice.id] = state
            }
        }
        return TokensMessage(microBatch: microBatch, step: step, updates: updates)
    }
}
