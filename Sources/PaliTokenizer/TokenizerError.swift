// Errors of the PaliTokenizer module: each case carries what failed and says what to do next.

/// Why a tokenizer could not be loaded or extended.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// Nothing exists at `path`.
    case fileNotFound(path: String)
    /// `path` is a directory without a `tokenizer.model` in it.
    case noModelInDirectory(path: String)
    /// The file exists but could not be read.
    case unreadable(path: String, reason: String)
    /// The bytes are not a SentencePiece `ModelProto` (bad protobuf wire format at `offset`).
    case malformedModel(path: String?, offset: Int, reason: String)
    /// The protobuf parsed but its pieces break a SentencePiece invariant (no `<unk>`, duplicates…).
    case invalidModel(path: String?, reason: String)
    /// Only BPE models (Gemma, PaliGemma) are implemented.
    case unsupportedModelType(path: String?, modelType: String)
    /// The normalizer needs a precompiled character map (NFKC and friends): not implemented.
    case unsupportedNormalizer(path: String?, spec: String, rule: String, charsmapBytes: Int)
    /// `registerSpecialToken` was asked for something that contradicts the vocabulary.
    case specialTokenConflict(piece: String, id: Int, reason: String)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "no tokenizer at \(path): pass a SentencePiece tokenizer.model file, "
                + "or the model directory that holds one"
        case .noModelInDirectory(let path):
            return "\(path) is a directory without tokenizer.model: pass the checkpoint directory "
                + "downloaded from the hub (it ships tokenizer.model), or the .model file itself"
        case .unreadable(let path, let reason):
            return "cannot read \(path): \(reason); check the path and its permissions"
        case .malformedModel(let path, let offset, let reason):
            return "\(Self.name(path)) is not a SentencePiece model (\(reason) at byte \(offset)): "
                + "pass the tokenizer.model protobuf file"
                + (reason.hasPrefix("looks like JSON") ? ", not tokenizer.json" : "")
                + "; if it is one, it is truncated or corrupt, so download it again"
        case .invalidModel(let path, let reason):
            return "\(Self.name(path)) is not a usable SentencePiece model: \(reason); "
                + "download the checkpoint's tokenizer.model again"
        case .unsupportedModelType(let path, let modelType):
            return "\(Self.name(path)) is a SentencePiece \(modelType) model; this tokenizer "
                + "implements BPE models only (Gemma, PaliGemma): use the checkpoint's own tokenizer.model"
        case .unsupportedNormalizer(let path, let spec, let rule, let bytes):
            return "\(Self.name(path)) has a \(spec) rule '\(rule)' with a \(bytes)-byte precompiled "
                + "character map; this tokenizer implements identity normalization only (what Gemma "
                + "and PaliGemma use): train or export the model with normalization_rule_name=identity"
        case .specialTokenConflict(let piece, let id, let reason):
            return "cannot register special token \(piece) at id \(id): \(reason); "
                + "check image_token_index in config.json against the tokenizer"
        }
    }

    private static func name(_ path: String?) -> String { path ?? "the model data" }
}
