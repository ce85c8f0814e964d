// A PaliGemma config.json (model_type "paligemma"), PaliGemma 1 and 2, resolved the way
// transformers 5.23 `PaliGemmaConfig.from_pretrained` resolves it (models/paligemma/configuration_paligemma.py):
//   * `vision_config` / `text_config` absent → PaliGemmaConfig's own sub-config defaults
//     (SigLIP So400m-ish with intermediate_size 4096; Gemma-2B with vocab 257152);
//     present (even sparse, as on the hub) → the sub-config class's defaults for missing keys;
//   * text `num_image_tokens` = (image_size / patch_size)², vision `projection_dim` = projection_dim,
//     text `use_bidirectional_attention` = true when absent.
// bos/eos/pad: the top-level value when present, else the text config's.
import Foundation

public struct PaliGemmaConfiguration: Codable, Sendable, Equatable {
    public var vision: SiglipVisionConfiguration
    public var text: GemmaConfiguration
    /// Id of the `<image>` placeholder token (`image_token_index`, alias `image_token_id`).
    public var imageTokenIndex: Int
    /// Top-level `vocab_size` (257152 by default); the model uses `text.vocabSize`.
    public var vocabSize: Int
    /// Projector output width; must equal `text.hiddenSize`.
    public var projectionDim: Int
    /// Top-level `hidden_size` (legacy; not used by the model).
    public var hiddenSize: Int
    public var tieWordEmbeddings: Bool
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    public var padTokenId: Int?

    public enum CodingKeys: String, CodingKey {
        case modelType = "model_type"
        case vision = "vision_config"
        case text = "text_config"
        case imageTokenIndex = "image_token_index"
        case imageTokenId = "image_token_id"
        case vocabSize = "vocab_size"
        case projectionDim = "projection_dim"
        case hiddenSize = "hidden_size"
        case tieWordEmbeddings = "tie_word_embeddings"
        case bosTokenId = "bos_token_id"
        case eosTokenIds = "eos_token_id"
        case padTokenId = "pad_token_id"
    }

    public static let modelTypeName = "paligemma"

    /// Builds a configuration and applies PaliGemma's derived values (image tokens, projection width,
    /// bidirectional prefix attention).
    public init(vision: SiglipVisionConfiguration, text: GemmaConfiguration, imageTokenIndex: Int,
                projectionDim: Int, hiddenSize: Int = 2048, vocabSize: Int = 257_152, tieWordEmbeddings: Bool = true,
                bosTokenId: Int? = 2, eosTokenIds: [Int] = [1], padTokenId: Int? = 0) {
        self.vision = vision; self.text = text; self.imageTokenIndex = imageTokenIndex
        self.projectionDim = projectionDim; self.hiddenSize = hiddenSize; self.vocabSize = vocabSize
        self.tieWordEmbeddings = tieWordEmbeddings; self.bosTokenId = bosTokenId
        self.eosTokenIds = eosTokenIds; self.padTokenId = padTokenId
        applyDerivedValues()
    }

    private mutating func applyDerivedValues() {
        if text.useBidirectionalAttention == nil { text.useBidirectionalAttention = true }
        text.numImageTokens = vision.numImageTokens
        vision.projectionDim = projectionDim
    }

    // MARK: Loading

    /// Reads `config.json`; `url` may be the file or the model directory holding it.
    public init(contentsOf url: URL) throws {
        var isDirectory: ObjCBool = false
        let file = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
            ? url.appendingPathComponent("config.json") : url
        let data: Data
        do {
            data = try Data(contentsOf: file)
        } catch {
            throw WeightsError.cannotOpen(path: file.path, reason: error.localizedDescription)
        }
        try self.init(data: data, path: file.path)
    }

    /// Decodes config.json bytes; `path` is used in error messages.
    public init(data: Data, path: String = "config.json") throws {
        let decoder = JSONDecoder()
        decoder.userInfo[.configurationPath] = path
        do {
            self = try decoder.decode(PaliGemmaConfiguration.self, from: data)
        } catch let error as WeightsError {
            throw error
        } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
            // A syntax error, or a number of the wrong kind for its key: Foundation says "not valid JSON" for both.
            let (key, detail) = ConfigurationDiagnosis.explain(data) { candidate in
                do {
                    _ = try decoder.decode(PaliGemmaConfiguration.self, from: candidate)
                    return false
                } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
                    return true
                } catch {
                    return false
                }
            }
            throw WeightsError.invalidConfiguration(path: path, key: key, detail: detail)
        } catch let error as DecodingError {
            throw Self.describe(error, path: path)
        }
    }

    private static func describe(_ error: DecodingError, path: String) -> WeightsError {
        func key(_ codingPath: [CodingKey]) -> String { codingPath.map(\.stringValue).joined(separator: ".") }
        switch error {
        case .typeMismatch(let type, let context):
            return .invalidConfiguration(path: path, key: key(context.codingPath), detail: "expected \(type) (\(context.debugDescription))")
        case .valueNotFound(let type, let context):
            return .invalidConfiguration(path: path, key: key(context.codingPath), detail: "expected \(type), found null")
        case .keyNotFound(let k, let context):
            return .invalidConfiguration(path: path, key: key(context.codingPath + [k]), detail: "missing")
        case .dataCorrupted(let context):
            let detail = context.codingPath.isEmpty ? "the file is not valid JSON (\(context.debugDescription))" : context.debugDescription
            return .invalidConfiguration(path: path, key: key(context.codingPath), detail: detail)
        @unknown default:
            return .invalidConfiguration(path: path, key: "", detail: "\(error)")
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let ctx = ConfigurationContext(decoder)
        if let type = try c.decodeIfPresent(String.self, forKey: .modelType), type != Self.modelTypeName {
            throw ctx.unsupported(CodingKeys.modelType, "\"\(type)\"", "this is not a PaliGemma config (model_type \"paligemma\")")
        }
        vision = try c.decodeIfPresent(SiglipVisionConfiguration.self, forKey: .vision) ?? .paliGemmaDefault
        text = try c.decodeIfPresent(GemmaConfiguration.self, forKey: .text) ?? .paliGemmaDefault
        imageTokenIndex = try c.decodeIfPresent(Int.self, forKey: .imageTokenIndex)
            ?? c.decode(Int.self, forKey: .imageTokenId, default: 256_000)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize, default: 257_152)
        projectionDim = try c.decode(Int.self, forKey: .projectionDim, default: 2048)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize, default: 2048)
        tieWordEmbeddings = try c.decode(Bool.self, forKey: .tieWordEmbeddings, default: true)
        bosTokenId = try c.decodeNullable(Int.self, forKey: .bosTokenId, absent: text.bosTokenId)
        eosTokenIds = try c.decodeTokenIDs(forKey: .eosTokenIds, absent: text.eosTokenIds)
        padTokenId = try c.decodeNullable(Int.self, forKey: .padTokenId, absent: text.padTokenId)
        applyDerivedValues()

        try ctx.requirePositive(projectionDim, CodingKeys.projectionDim)
        guard imageTokenIndex >= 0 else { throw ctx.invalid(CodingKeys.imageTokenIndex, "must not be negative") }
        guard projectionDim == text.hiddenSize else {
            throw ctx.invalid(CodingKeys.projectionDim, "\(projectionDim) must equal text_config.hidden_size "
                              + "(\(text.hiddenSize)): projected image features replace token embeddings")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.modelTypeName, forKey: .modelType)
        try c.encode(vision, forKey: .vision)
        try c.encode(text, forKey: .text)
        try c.encode(imageTokenIndex, forKey: .imageTokenIndex)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(projectionDim, forKey: .projectionDim)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode(bosTokenId, forKey: .bosTokenId)
        try c.encodeTokenIDs(eosTokenIds, forKey: .eosTokenIds)
        try c.encode(padTokenId, forKey: .padTokenId)
    }

    // MARK: Derived

    /// Image tokens per image, (image_size / patch_size)².
    public var numImageTokens: Int { vision.numImageTokens }
    public var isGemma2: Bool { text.isGemma2 }
    public func isSlidingLayer(_ layer: Int) -> Bool { text.isSlidingLayer(layer) }
    /// √(text hidden size) as Float32, the text-embedding multiplier.
    public var embedScale: Float { text.embedScale }
}
