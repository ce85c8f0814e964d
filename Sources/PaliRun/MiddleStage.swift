// Decoder stages 1..S-1: apply this stage's layers to whatever step arrives and hand it on, to the
// next stage, or (on the last stage) to the sampler, whose tokens go back to stage 0.
import Foundation
import PaliPipeline
import PaliTensor

final class MiddleStage: StageRole {
    /// Where a step goes after this stage's layers.
    enum Next {
        case rank(Int)
        case sampler(StageSampler, firstRank: Int)
    }

    let context: RankContext
    let stage: DecoderStage
    let next: Next

    init(context: RankContext, stage: DecoderStage, next: Next) {
        self.context = context
        self.stage = stage
        self.next = next
    }

    func run() throws {
        while true {
            guard let (source, message) = try context.receive(timeout: context.heartbeatInterval / 2) else { continue }
            switch message.kind {
            case .hidden:
                let step = try HiddenMessage(message)
                try context.busy(.stageStep, a: Int(step.microBatch), b: Int(step.step), c: step.totalTokens) { try process(step) }
            case .heartbeat:
                break
            case .shutdown:
                let finished: Int
                if case .sampler(let sampler, _) = next { finished = sampler.finished } else { finished = 0 }
                try context.sendFinalStats(stage.statistics(finishedSequences: finished))
                return
            default:
                throw unexpected(message, from: source, at: context)
            }
        }
    }

    private func process(_ step: HiddenMessage) throws {
        for id in step.released { stage.drop(id) }
        let hidden = Tensor(shape: [step.totalTokens, stage.width], values: step.hidden)
        try stage.forward(step.sequences, hidden: hidden)
        switch next {
        case .rank(let rank):
            try context.send(HiddenMessage(microBatch: step.microBatch, step: step.step, width: stage.width,
                                                     sequences: step.sequences, hidden: hidden.storageArray,
                                                     admitted: step.admitted, released: step.released), to: rank)
        case .sampler(let sampler, let firstRank):
            let tokens = try sampler.sample(microBatch: step.microBatch, step: step.step, sequences: step.sequences,
                                            admitted: step.admitted, hidden: hidden)
            try context.send(tokens, to: firstRank)
        }
    }
}
