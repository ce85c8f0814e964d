// `vision_config` of a PaliGemma config.json: the SigLIP vision tower (SPEC §1.1).
// Defaults for absent keys are transformers 5.23 `SiglipVisionConfig`'s (models/siglip/configuration_siglip.py).
import Foundation

public struct SiglipVisionConfiguration: Codable, Sendable, Equatable {
    public var modelType: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var channels: Int
    public var imageSize: Int
    public var patchSize: Int
    public var hiddenActivation: String
    public var layerNormEps: Double
    /// Whether the tower has an attention-pooling head (PaliGemma: false; its weights are unused).
    public var visionUseHead: Bool
    /// Projector output width; PaliGemma sets it to its own `projection_dim`.
    public var projectionDim: Int?

    public enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case layers = "num_hidden_layers"
        case heads = "num_attention_heads"
        case channels = "num_channels"
        case imageSize = "image_size"
        case patchSize = "patch_size"
        case hiddenActivation = "hidden_act"
        case layerNormEps = "layer_norm_eps"
        case visionUseHead = "vision_use_head"
        case projectionDim = "projection_dim"
    }

    public static let modelTypeName = "siglip_vision_model"

    /// Defaults are transformers 5.23 `SiglipVisionConfig()`'s.
    public init(hiddenSize: Int = 768, intermediateSize: Int = 3072, layers: Int = 12, heads: Int = 12,
                channels: Int = 3, imageSize: Int = 224, patchSize: Int = 16,
                hiddenActivation: String = "gelu_pytorch_tanh", layerNormEps: Double = 1e-6,
                visionUseHead: Bool = true, projectionDim: Int? = nil) {
        modelType = Self.modelTypeName
        self.hiddenSize = hiddenSize; self.intermediateSize = intermediateSize; self.layers = layers
        self.heads = heads; self.channels = channels; self.imageSize = imageSize; self.patchSize = patchSize
        self.hiddenActivation = hiddenActivation; self.layerNormEps = layerNormEps
        self.visionUseHead = visionUseHead; self.projectionDim = projectionDim
    }

    /// What `PaliGemmaConfig` builds when `vision_config` is absent (its `sub_configs_defaults`).
    /// Note intermediate_size 4096, not the 4304 of real checkpoints (SPEC §1.1).
    public static let paliGemmaDefault = SiglipVisionConfiguration(
        hiddenSize: 1152, intermediateSize: 4096, layers: 27, heads: 16, imageSize: 224, patchSize: 14,
        visionUseHead: false)

    // MARK: Derived

    public var headDim: Int { hiddenSize / heads }
    public var patchesPerSide: Int { imageSize / patchSize }
    /// Image tokens per image, (image_size / patch_size)² (floor division, as transformers).
    public var numImageTokens: Int { patchesPerSide * patchesPerSide }

    // MARK: Codable

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let ctx = ConfigurationContext(decoder)
        let d = SiglipVisionConfiguration()
        modelType = try c.decode(String.self, forKey: .modelType, default: Self.modelTypeName)
        guard modelType == Self.modelTypeName else {
            throw ctx.unsupported(CodingKeys.modelType, "\"\(modelType)\"", "the vision tower must be \"\(Self.modelTypeName)\"")
        }
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize, default: d.hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize, default: d.intermediateSize)
        layers = try c.decode(Int.self, forKey: .layers, default: d.layers)
        heads = try c.decode(Int.self, forKey: .heads, default: d.heads)
        channels = try c.decode(Int.self, forKey: .channels, default: d.channels)
        imageSize = try Self.decodeSize(c, .imageSize, d.imageSize, ctx)
        patchSize = try Self.decodeSize(c, .patchSize, d.patchSize, ctx)
        hiddenActivation = try c.decode(String.self, forKey: .hiddenActivation, default: d.hiddenActivation)
        layerNormEps = try c.decode(Double.self, forKey: .layerNormEps, default: d.layerNormEps)
        visionUseHead = try c.decode(Bool.self, forKey: .visionUseHead, default: d.visionUseHead)
        projectionDim = try c.decodeIfPresent(Int.self, forKey: .projectionDim)
        try validate(ctx)
    }

    /// image_size / patch_size: transformers' PaliGemma needs plain integers (a [h, w] list fails there).
    private static func decodeSize(_ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys, _ fallback: Int,
                                   _ ctx: ConfigurationContext) throws -> Int {
        if let list = try? c.decode([Int].self, forKey: key) {
            throw ctx.unsupported(key, "\(list)", "PaliGemma needs a single integer (square images and patches)")
        }
        return try c.decode(Int.self, forKey: key, default: fallback)
    }

    func validate(_ ctx: ConfigurationContext) throws {
        for (value, key) in [(hiddenSize, CodingKeys.hiddenSize), (intermediateSize, .intermediateSize),
                             (layers, .layers), (heads, .heads), (channels, .channels),
                             (imageSize, .imageSize), (patchSize, .patchSize)] {
            try ctx.requirePositive(value, key)
        }
        try ctx.requirePositive(layerNormEps, CodingKeys.layerNormEps)
        guard hiddenSize % heads == 0 else {
            throw ctx.invalid(CodingKeys.heads, "hidden_size \(hiddenSize) is not a multiple of \(heads) heads")
        }
        guard imageSize >= patchSize else {
            throw ctx.invalid(CodingKeys.imageSize, "image_size \(imageSize) is smaller than patch_size \(patchSize)")
        }
        guard supportedTanhGELUs.contains(hiddenActivation) else {
            throw ctx.unsupported(CodingKeys.hiddenActivation, "\"\(hiddenActivation)\"",
                                  "only the tanh-approximate GELU (gelu_pytorch_tanh) is implemented")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(modelType, forKey: .modelType)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(layers, forKey: .layers)
        try c.encode(heads, forKey: .heads)
        try c.encode(channels, forKey: .channels)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(patchSize, forKey: .patchSize)
        try c.encode(hiddenActivation, forKey: .hiddenActivation)
        try c.encode(layerNormEps, forKey: .layerNormEps)
        try c.encode(visionUseHead, forKey: .visionUseHead)
        try c.encodeIfPresent(projectionDim, forKey: .projectionDim)
    }
}
