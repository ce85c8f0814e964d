// The numbers a model needs at run time, independent of how config.json spells them.
import PaliTensor
// `PaliGemmaConfiguration` (PaliWeights) maps onto these in PaliGemma+Configuration.swift.

/// SigLIP vision tower (SiglipVisionConfig of transformers v5.23.0, models/siglip/configuration_siglip.py).
public struct VisionHyperparameters: Sendable, Equatable {
    public var width: Int          // hidden_size, 1152 for So400m
    public var mlpWidth: Int       // intermediate_size, 4304
    public var layers: Int         // 27
    public var heads: Int          // 16 → head dim 72
    public var imageSize: Int      // 224 / 448 / 896
    public var patchSize: Int      // 14
    public var eps: Float          // layer_norm_eps, 1e-6

    public init(width: Int, mlpWidth: Int, layers: Int, heads: Int, imageSize: Int, patchSize: Int, eps: Float) {
        self.width = width; self.mlpWidth = mlpWidth; self.layers = layers; self.heads = heads
        self.imageSize = imageSize; self.patchSize = patchSize; self.eps = eps
    }

    public var headDim: Int { width / heads }
    public var patchesPerSide: Int { imageSize / patchSize }
    public var tokens: Int { patchesPerSide * patchesPerSide }
    public var patchInputs: Int { 3 * patchSize * patchSize }
}

/// Gemma / Gemma 2 decoder (GemmaConfig / Gemma2Config of transformers v5.23.0, models/gemma*/configuration_gemma*.py).
public struct DecoderHyperparameters: Sendable, Equatable {
    public var width: Int              // hidden_size
    public var mlpWidth: Int           // intermediate_size
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vocabSize: Int
    public var eps: Float              // rms_norm_eps
    public var ropeTheta: Float
    public var gemma2: Bool            // four norms per layer, soft-caps, sliding windows
    public var attentionScale: Float   // head_dim^-0.5 (Gemma) or query_pre_attn_scalar^-0.5 (Gemma 2)
    public var attentionSoftcap: Float?
    public var finalSoftcap: Float?
    public var slidingWindow: Int?
    public var slidingLayers: [Bool]   // per layer: true for sliding-window attention

    public init(width: Int, mlpWidth: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int, vocabSize: Int,
                eps: Float, ropeTheta: Float, gemma2: Bool, attentionScale: Float, attentionSoftcap: Float?,
                finalSoftcap: Float?, slidingWindow: Int?, slidingLayers: [Bool]) {
        precondition(slidingLayers.count == layers, "slidingLayers must have one entry per layer")
        self.width = width; self.mlpWidth = mlpWidth; self.layers = layers; self.heads = heads
        self.kvHeads = kvHeads; self.headDim = headDim; self.vocabSize = vocabSize; self.eps = eps
        self.ropeTheta = ropeTheta; self.gemma2 = gemma2; self.attentionScale = attentionScale
        self.attentionSoftcap = attentionSoftcap; self.finalSoftcap = finalSoftcap
        self.slidingWindow = slidingWindow; self.slidingLayers = slidingLayers
    }

    /// Text embeddings are multiplied by fl32(√width) (transformers' GemmaTextScaledWordEmbedding).
    public var embedScale: Float { Float(Double(width).squareRoot()) }
    public var queryWidth: Int { heads * headDim }
    public var kvWidth: Int { kvHeads * headDim }
    public var attention: AttentionHeadsShape { .init(heads: heads, kvHeads: kvHeads, headDim: headDim) }
}

public typealias AttentionHeadsShape = AttentionHeads
