// config.json (PaliWeights' typed configuration) → the model's run-time hyperparameters, and a
// checkpoint as the models' weight source.
import PaliWeights

extension Checkpoint: WeightSource {}

extension VisionHyperparameters {
    public init(_ c: SiglipVisionConfiguration) {
        self.init(width: c.hiddenSize, mlpWidth: c.intermediateSize, layers: c.layers, heads: c.heads,
                  imageSize: c.imageSize, patchSize: c.patchSize, eps: Float(c.layerNormEps))
    }
}

extension DecoderHyperparameters {
    public init(_ c: GemmaConfiguration) {
        self.init(width: c.hiddenSize, mlpWidth: c.intermediateSize, layers: c.layers, heads: c.heads,
                  kvHeads: c.kvHeads, headDim: c.headDim, vocabSize: c.vocabSize, eps: Float(c.rmsNormEps),
                  ropeTheta: Float(c.ropeTheta), gemma2: c.isGemma2, attentionScale: Float(c.attentionScale),
                  attentionSoftcap: c.attnLogitSoftcapping.map { Float($0) },
                  finalSoftcap: c.finalLogitSoftcapping.map { Float($0) },
                  slidingWindow: c.slidingWindow,
                  slidingLayers: (0..<c.layers).map { c.isSlidingLayer($0) })
    }
}

extension PaliGemmaHyperparameters {
    public init(_ c: PaliGemmaConfiguration) {
        self.init(vision: VisionHyperparameters(c.vision), decoder: DecoderHyperparameters(c.text),
                  imageTokenID: c.imageTokenIndex, bosID: c.bosTokenId ?? 2, eosID: c.eosTokenIds.first ?? 1,
                  padID: c.padTokenId ?? 0)
    }
}
