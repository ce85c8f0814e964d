// The last decoder stage's sampling: after the stage's layers, one logit row per sequence (its last new
// token) through the final norm and tied head, the next token from each job's own Sampler, and each
// finished job (EOS or its token budget) sent to the coordinator with its measurements.
import Foundation
import PaliGeneration
import PaliModels
import PaliPipeline
import PaliTensor

final class StageSampler {
    let stage: DecoderStage
    let vocabSize: Int
    let stopIDs: Set<Int>
    let transport: Transport

    private struct Decoding {
        var sampler: Sampler
        var tokens: [Int32] = []
        var parameters: JobParameters
        var measurements: JobMeasurements
        var started: Double
    }
    private var decoding: [Int64: Decoding] = [:]
    /// Jobs finished here, for stats.json.
    private(set) var finished = 0

    init(stage: DecoderStage, hyper: PaliGemmaHyperparameters, stopIDs: Set<Int>, transport: Transport) {
        self.stage = stage
        vocabSize = hyper.decoder.vocabSize
        self.stopIDs = stopIDs
        self.transport = transport
    }

    /// Samples the next token of every sequence of a step whose `hidden` states went through the last
    /// stage's layers. `admitted` holds the parameters of the sequences prefilled in this step. Finished
    /// jobs go to the coordinator (rank 0), and leave this stage's caches unless it is also stage 0
    /// (whose scheduler drops them when it reads the updates).
    func sample(microBatch: Int64, step: Int64, sequences: [SequenceSlice], admitted: [AdmittedSequence],
                hidden: Tensor) throws -> TokensMessage {
        var lastRows: [Int] = []
        var row = 0
        for slice in sequences {
            row += slice.newTokens
            lastRows.append(row - 1)
        }
        let logits = stage.decoder.logits(hidden, rows: lastRows)
        let v = vocabSize
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
                if !stage.isFirst { stage.drop(slice.id) }
                finished += 1
                state.measurements.decodeSeconds = MonotonicClock.now() - state.started
                try transport.send(ResultMessage(jobID: slice.id, tokenIDs: state.tokens, measurements: state.measurements),
                                   to: 0)
            } else {
                decoding[slice.id] = state
            }
        }
        return TokensMessage(microBatch: microBatch, step: step, updates: updates)
    }
}
