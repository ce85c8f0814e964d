// `text_config` of a PaliGemma config.json: the Gemma (PaliGemma 1) or Gemma 2 (PaliGemma 2)
// decoder (SPEC §1.1–§1.2). Defaults for absent keys are transformers 5.23's `GemmaConfig` /
// `Gemma2Config` (models/gemma/configuration_gemma.py, models/gemma2/configuration_gemma2.py),
// chosen by `model_type`.
//
// Spellings transformers 5.23 reads, reproduced here:
//   * activation: Gemma reads `hidden_act` ("gelu" is rewritten to "gelu_pytorch_tanh");
//     Gemma 2 reads `hidden_activation`. The other key is ignored, as transformers ignores it.
//   * RoPE: `rope_scaling` (legacy) over `rope_parameters` over top-level `rope_theta` over 10000;
//     only rope_type "default" is implemented.
//   * Gemma 2 `layer_types`: absent → even layers (0, 2, …) sliding, odd layers full.
import Foundation

public struct GemmaConfiguration: Codable, Sendable, Equatable {
    public enum ModelType: String, Codable, Sendable {
        case gemma, gemma2
    }

    public enum LayerType: String, Codable, Sendable {
        case slidingAttention = "sliding_attention"
        case fullAttention = "full_attention"
    }

    public var modelType: ModelType
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// `hidden_act` (Gemma) or `hidden_activation` (Gemma 2), as transformers resolves it.
    public var hiddenActivation: String
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var attentionBias: Bool
    public var tieWordEmbeddings: Bool
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    public var padTokenId: Int?
    /// Gemma 2 only: attention scores are scaled by query_pre_attn_scalar^-0.5.
    public var queryPreAttnScalar: Double?
    /// Gemma 2 only: `s = cap·tanh(s/cap)` on attention scores / final logits; nil = no cap.
    public var attnLogitSoftcapping: Double?
    public var finalLogitSoftcapping: Double?
    /// Gemma 2 only: the window of sliding-attention layers (query q sees keys k with q − k < window).
    public var slidingWindow: Int?
    /// Gemma 2 only: one entry per layer.
    public var layerTypes: [LayerType]?
    /// PaliGemma sets this to true when absent (prefix tokens attend to each other).
    public var useBidirectionalAttention: Bool?
    /// Set by PaliGemma: image tokens per image.
    public var numImageTokens: Int?

    public enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case layers = "num_hidden_layers"
        case heads = "num_attention_heads"
        case kvHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case hiddenAct = "hidden_act"
        case hiddenActivation = "hidden_activation"
        case maxPositionEmbeddings = "max_position_embeddings"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case attentionBias = "attention_bias"
        case tieWordEmbeddings = "tie_word_embeddings"
        case bosTokenId = "bos_token_id"
        case eosTokenIds = "eos_token_id"
        case padTokenId = "pad_token_id"
        case queryPreAttnScalar = "query_pre_attn_scalar"
        case attnLogitSoftcapping = "attn_logit_softcapping"
        case finalLogitSoftcapping = "final_logit_softcapping"
        case slidingWindow = "sliding_window"
        case layerTypes = "layer_types"
        case useBidirectionalAttention = "use_bidirectional_attention"
        case numImageTokens = "num_image_tokens"
    }

    public init(modelType: ModelType, vocabSize: Int, hiddenSize: Int, intermediateSize: Int, layers: Int,
                heads: Int, kvHeads: Int, headDim: Int, hiddenActivation: String = "gelu_pytorch_tanh",
                maxPositionEmbeddings: Int = 8192, rmsNormEps: Double = 1e-6, ropeTheta: Double = 10_000,
                attentionBias: Bool = false, tieWordEmbeddings: Bool = true, bosTokenId: Int? = 2,
                eosTokenIds: [Int] = [1], padTokenId: Int? = 0, queryPreAttnScalar: Double? = nil,
                attnLogitSoftcapping: Double? = nil, finalLogitSoftcapping: Double? = nil,
                slidingWindow: Int? = nil, layerTypes: [LayerType]? = nil,
                useBidirectionalAttention: Bool? = nil, numImageTokens: Int? = nil) {
        self.modelType = modelType; self.vocabSize = vocabSize; self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize; self.layers = layers; self.heads = heads; self.kvHeads = kvHeads
        self.headDim = headDim; self.hiddenActivation = hiddenActivation
        self.maxPositionEmbeddings = maxPositionEmbeddings; self.rmsNormEps = rmsNormEps; self.ropeTheta = ropeTheta
        self.attentionBias = attentionBias; self.tieWordEmbeddings = tieWordEmbeddings
        self.bosTokenId = bosTokenId; self.eosTokenIds = eosTokenIds; self.padTokenId = padTokenId
        self.queryPreAttnScalar = queryPreAttnScalar; self.attnLogitSoftcapping = attnLogitSoftcapping
        self.finalLogitSoftcapping = finalLogitSoftcapping; self.slidingWindow = slidingWindow
        self.layerTypes = layerTypes; self.useBidirectionalAttention = useBidirectionalAttention
        self.numImageTokens = numImageTokens
    }

    /// transformers 5.23 `GemmaConfig()` defaults.
    public static let gemmaDefaults = GemmaConfiguration(
        modelType: .gemma, vocabSize: 256_000, hiddenSize: 3072, intermediateSize: 24576, layers: 28,
        heads: 16, kvHeads: 16, headDim: 256)

    /// transformers 5.23 `Gemma2Config()` defaults.
    public static let gemma2Defaults = GemmaConfiguration(
        modelType: .gemma2, vocabSize: 256_000, hiddenSize: 2304, intermediateSize: 9216, layers: 26,
        heads: 8, kvHeads: 4, headDim: 256, queryPreAttnScalar: 256, attnLogitSoftcapping: 50,
        finalLogitSoftcapping: 30, slidingWindow: 4096, layerTypes: alternatingLayerTypes(26))

    /// What `PaliGemmaConfig` builds when `text_config` is absent (its `sub_configs_defaults`).
    public static let paliGemmaDefault = GemmaConfiguration(
        modelType: .gemma, vocabSize: 257_152, hiddenSize: 2048, intermediateSize: 16384, layers: 18,
        heads: 8, kvHeads: 1, headDim: 256)

    public static func defaults(for modelType: ModelType) -> GemmaConfiguration {
        modelType == .gemma2 ? gemma2Defaults : gemmaDefaults
    }

    /// Gemma 2's default pattern: layer i slides when i is even (transformers: `(i + 1) % 2`).
    public static func alternatingLayerTypes(_ layers: Int) -> [LayerType] {
        (0..<layers).map { $0 % 2 == 0 ? .slidingAttention : .fullAttention }
    }

    // MARK: Derived

    public var isGemma2: Bool { modelType == .gemma2 }
    public var queryWidth: Int { heads * headDim }
    public var kvWidth: Int { kvHeads * headDim }

    /// Whether layer `i` uses sliding-window attention (Gemma 2 sliding layer with a window set).
    public func isSlidingLayer(_ i: Int) -> Bool {
        guard isGemma2, slidingWindow != nil, let types = layerTypes, types.indices.contains(i) else { return false }
        return types[i] == .slidingAttention
    }

    /// Attention score scale: query_pre_attn_scalar^-0.5 (Gemma 2) or head_dim^-0.5 (Gemma).
    public var attentionScale: Double {
        1 / (isGemma2 ? (queryPreAttnScalar ?? Double(headDim)) : Double(headDim)).squareRoot()
    }

    /// Text embeddings are multiplied by √hidden_size rounded to Float32 (transformers'
    /// `GemmaTextScaledWordEmbedding`: a Python float made a float32 tensor).
    public var embedScale: Float { Float(Double(hiddenSize).squareRoot()) }

    // MARK: Codable

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let ctx = ConfigurationContext(decoder)
        let typeName = try c.decode(String.self, forKey: .modelType, default: ModelType.gemma.rawValue)
        guard let modelType = ModelType(rawValue: typeName) else {
            throw ctx.unsupported(CodingKeys.modelType, "\"\(typeName)\"", "PaliGemma's decoder is \"gemma\" or \"gemma2\"")
        }
        let d = Self.defaults(for: modelType)
        self.modelType = modelType
        vocabSize = try c.decode(Int.self, forKey: .vocabSize, default: d.vocabSize)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize, default: d.hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize, default: d.intermediateSize)
        layers = try c.decode(Int.self, forKey: .layers, default: d.layers)
        heads = try c.decode(Int.self, forKey: .heads, default: d.heads)
        kvHeads = try c.decode(Int.self, forKey: .kvHeads, default: d.kvHeads)
        headDim = try c.decode(Int.self, forKey: .headDim, default: d.headDim)
        maxPositionEmbeddings = try c.decode(Int.self, forKey: .maxPositionEmbeddings, default: d.maxPositionEmbeddings)
        rmsNormEps = try c.decode(Double.self, forKey: .rmsNormEps, default: d.rmsNormEps)
        attentionBias = try c.decode(Bool.self, forKey: .attentionBias, default: d.attentionBias)
        tieWordEmbeddings = try c.decode(Bool.self, forKey: .tieWordEmbeddings, default: d.tieWordEmbeddings)
        bosTokenId = try c.decodeNullable(Int.self, forKey: .bosTokenId, absent: d.bosTokenId)
        eosTokenIds = try c.decodeTokenIDs(forKey: .eosTokenIds, absent: d.eosTokenIds)
        padTokenId = try c.decodeNullable(Int.self, forKey: .padTokenId, absent: d.padTokenId)
        useBidirectionalAttention = try c.decodeIfPresent(Bool.self, forKey: .useBidirectionalAttention)
        numImageTokens = try c.decodeIfPresent(Int.self, forKey: .numImageTokens)

        switch modelType {
        case .gemma:
            var act = try c.decode(String.self, forKey: .hiddenAct, default: d.hiddenActivation)
            if act == "gelu" { act = "gelu_pytorch_tanh" }  // GemmaConfig.__post_init__
            hiddenActivation = act
            queryPreAttnScalar = nil
            attnLogitSoftcapping = nil
            finalLogitSoftcapping = nil
            slidingWindow = nil
            layerTypes = nil
        case .gemma2:
            hiddenActivation = try c.decode(String.self, forKey: .hiddenActivation, default: d.hiddenActivation)
            queryPreAttnScalar = try c.decode(Double.self, forKey: .queryPreAttnScalar, default: d.queryPreAttnScalar!)
            attnLogitSoftcapping = try c.decodeNullable(Double.self, forKey: .attnLogitSoftcapping, absent: d.attnLogitSoftcapping)
            finalLogitSoftcapping = try c.decodeNullable(Double.self, forKey: .finalLogitSoftcapping, absent: d.finalLogitSoftcapping)
            slidingWindow = try c.decodeNullable(Int.self, forKey: .slidingWindow, absent: d.slidingWindow)
            if let names = try c.decodeIfPresent([String].self, forKey: .layerTypes) {
                layerTypes = try names.map { name in
                    // transformers remaps the legacy "attention" to "full_attention".
                    guard let t = LayerType(rawValue: name == "attention" ? "full_attention" : name) else {
                        throw ctx.unsupported(CodingKeys.layerTypes, "\"\(name)\"",
                                              "layer types must be \"sliding_attention\" or \"full_attention\"")
                    }
                    return t
                }
            } else {
                layerTypes = Self.alternatingLayerTypes(layers)
            }
        }
        ropeTheta = try Self.decodeRope(c, ctx)
        try validate(ctx)
    }

    /// rope_scaling (legacy) > rope_parameters > rope_theta > 10000; rope_type must be "default".
    private static func decodeRope(_ c: KeyedDecodingContainer<CodingKeys>, _ ctx: ConfigurationContext) throws -> Double {
        let topTheta = try c.decode(Double.self, forKey: .ropeTheta, default: 10_000)
        let key: CodingKeys = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeScaling) != nil ? .ropeScaling : .ropeParameters
        guard let rope = try c.decodeIfPresent(RopeParameters.self, forKey: key) else { return topTheta }
        if let extra = rope.otherKeys.first {
            throw ctx.unsupported(key, "{\"\(extra)\": …}", "only plain RoPE (rope_type \"default\" with rope_theta) is implemented")
        }
        if let type = rope.ropeType, type != "default" {
            throw ctx.unsupported(key, "{\"rope_type\": \"\(type)\"}", "RoPE scaling is not implemented; only rope_type \"default\"")
        }
        return rope.ropeTheta ?? topTheta
    }

    /// `rope_parameters` as transformers 5.23 writes it.
    private struct RopeOutput: Encodable {
        var ropeType = "default"
        var ropeTheta: Double
        enum CodingKeys: String, CodingKey { case ropeType = "rope_type", ropeTheta = "rope_theta" }
    }

    private struct RopeParameters: Decodable {
        var ropeType: String?
        var ropeTheta: Double?
        var otherKeys: [String]

        private struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            let typeKey = c.contains(AnyKey(stringValue: "rope_type")) ? "rope_type" : "type"
            ropeType = try c.decodeIfPresent(String.self, forKey: AnyKey(stringValue: typeKey))
            ropeTheta = try c.decodeIfPresent(Double.self, forKey: AnyKey(stringValue: "rope_theta"))
            otherKeys = c.allKeys.map(\.stringValue).filter { !["rope_type", "type", "rope_theta"].contains($0) }.sorted()
        }
    }

    func validate(_ ctx: ConfigurationContext) throws {
        for (value, key) in [(vocabSize, CodingKeys.vocabSize), (hiddenSize, .hiddenSize),
                             (intermediateSize, .intermediateSize), (layers, .layers), (heads, .heads),
                             (kvHeads, .kvHeads), (headDim, .headDim)] {
            try ctx.requirePositive(value, key)
        }
        try ctx.requirePositive(rmsNormEps, CodingKeys.rmsNormEps)
        try ctx.requirePositive(ropeTheta, CodingKeys.ropeTheta)
        guard heads % kvHeads == 0 else {
            throw ctx.invalid(CodingKeys.kvHeads, "\(heads) attention heads are not a multiple of \(kvHeads) key/value heads")
        }
        let activationKey = isGemma2 ? CodingKeys.hiddenActivation : .hiddenAct
        guard supportedTanhGELUs.contains(hiddenActivation) else {
            throw ctx.unsupported(activationKey, "\"\(hiddenActivation)\"",
                                  "only the tanh-approximate GELU (gelu_pytorch_tanh) is implemented")
        }
        guard !attentionBias else {
            throw ctx.unsupported(CodingKeys.attentionBias, "true", "Gemma attention has no biases")
        }
        if isGemma2 {
            if let s = queryPreAttnScalar { try ctx.requirePositive(s, CodingKeys.queryPreAttnScalar) }
            if let s = attnLogitSoftcapping { try ctx.requirePositive(s, CodingKeys.attnLogitSoftcapping) }
            if let s = finalLogitSoftcapping { try ctx.requirePositive(s, CodingKeys.finalLogitSoftcapping) }
            if let w = slidingWindow { try ctx.requirePositive(w, CodingKeys.slidingWindow) }
            guard layerTypes?.count == layers else {
                throw ctx.invalid(CodingKeys.layerTypes, "has \(layerTypes?.count ?? 0) entries for \(layers) layers")
            }
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(modelType, forKey: .modelType)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(layers, forKey: .layers)
        try c.encode(heads, forKey: .heads)
        try c.encode(kvHeads, forKey: .kvHeads)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(hiddenActivation, forKey: isGemma2 ? .hiddenActivation : .hiddenAct)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(RopeOutput(ropeTheta: ropeTheta), forKey: .ropeParameters)
        try c.encode(attentionBias, forKey: .attentionBias)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode(bosTokenId, forKey: .bosTokenId)
        try c.encodeTokenIDs(eosTokenIds, forKey: .eosTokenIds)
        try c.encode(padTokenId, forKey: .padTokenId)
        if isGemma2 {
            try c.encode(queryPreAttnScalar, forKey: .queryPreAttnScalar)
            try c.encode(attnLogitSoftcapping, forKey: .attnLogitSoftcapping)
            try c.encode(finalLogitSoftcapping, forKey: .finalLogitSoftcapping)
            try c.encode(slidingWindow, forKey: .slidingWindow)
            try c.encode(layerTypes, forKey: .layerTypes)
        }
        try c.encodeIfPresent(useBidirectionalAttention, forKey: .useBidirectionalAttention)
        try c.encodeIfPresent(numImageTokens, forKey: .numImageTokens)
    }
}
