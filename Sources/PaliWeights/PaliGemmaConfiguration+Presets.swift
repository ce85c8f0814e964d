// Named configurations of the released checkpoints, built in code (SPEC §1). They equal what
// PaliGemmaConfiguration decodes from the hub repos' config.json (tests check the fields the model
// uses against hub-style fixtures).

extension SiglipVisionConfiguration {
    /// SigLIP So400m/14 as PaliGemma uses it (SPEC §1.1): width 1152, depth 27, MLP 4304, 16 heads,
    /// patch 14, LayerNorm eps 1e-6, tanh GELU, no pooling head.
    public static func so400m(imageSize: Int) -> SiglipVisionConfiguration {
        SiglipVisionConfiguration(hiddenSize: 1152, intermediateSize: 4304, layers: 27, heads: 16, channels: 3,
                                  imageSize: imageSize, patchSize: 14, hiddenActivation: "gelu_pytorch_tanh",
                                  layerNormEps: 1e-6, visionUseHead: false)
    }
}

extension GemmaConfiguration {
    /// Gemma 2B as in PaliGemma 1 (SPEC §1.1): vocab 257216 (padded to a multiple of 64), MQA.
    public static let gemma2B = GemmaConfiguration(
        modelType: .gemma, vocabSize: 257_216, hiddenSize: 2048, intermediateSize: 16384, layers: 18,
        heads: 8, kvHeads: 1, headDim: 256)

    /// Gemma 2 decoders of PaliGemma 2 (SPEC §1.2, HF-conv2 VARIANT_CONFIGS).
    public static func gemma2(_ variant: PaliGemma2Variant) -> GemmaConfiguration {
        let (width, layers, heads, kvHeads, headDim, mlp, scalar): (Int, Int, Int, Int, Int, Int, Double) = switch variant {
        case .b3: (2304, 26, 8, 4, 256, 9216, 256)
        case .b10: (3584, 42, 16, 8, 256, 14336, 256)
        case .b28: (4608, 46, 32, 16, 128, 36864, 144)
        }
        return GemmaConfiguration(
            modelType: .gemma2, vocabSize: 257_216, hiddenSize: width, intermediateSize: mlp, layers: layers,
            heads: heads, kvHeads: kvHeads, headDim: headDim, queryPreAttnScalar: scalar,
            attnLogitSoftcapping: 50, finalLogitSoftcapping: 30, slidingWindow: 4096,
            layerTypes: alternatingLayerTypes(layers))
    }
}

/// PaliGemma 2 sizes, by their vanity names (decoder Gemma 2 2B / 9B / 27B).
public enum PaliGemma2Variant: String, Sendable, CaseIterable {
    case b3 = "3b", b10 = "10b", b28 = "28b"
}

extension PaliGemmaConfiguration {
    /// google/paligemma-3b-*-{224,448,896} (SPEC §1.1): image token 257152, bos 2, eos 1, pad 0.
    public static func paligemma1(imageSize: Int) -> PaliGemmaConfiguration {
        PaliGemmaConfiguration(vision: .so400m(imageSize: imageSize), text: .gemma2B, imageTokenIndex: 257_152,
                               projectionDim: 2048, hiddenSize: 2048)
    }

    /// google/paligemma2-{3b,10b,28b}-*-{224,448,896} (SPEC §1.2): projector 1152 → decoder width.
    public static func paligemma2(_ variant: PaliGemma2Variant, imageSize: Int) -> PaliGemmaConfiguration {
        let text = GemmaConfiguration.gemma2(variant)
        return PaliGemmaConfiguration(vision: .so400m(imageSize: imageSize), text: text, imageTokenIndex: 257_152,
                                      projectionDim: text.hiddenSize, hiddenSize: 2048)
    }

    public static let paligemma3b224 = paligemma1(imageSize: 224)
    public static let paligemma3b448 = paligemma1(imageSize: 448)
    public static let paligemma3b896 = paligemma1(imageSize: 896)
    public static let paligemma2_3b224 = paligemma2(.b3, imageSize: 224)
    public static let paligemma2_10b224 = paligemma2(.b10, imageSize: 224)
    public static let paligemma2_28b224 = paligemma2(.b28, imageSize: 224)
}
