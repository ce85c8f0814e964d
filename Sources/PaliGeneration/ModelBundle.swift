// A model directory as the hub (or transformers' save_pretrained) lays it out: config.json, weights
// (model.safetensors, or shards with model.safetensors.index.json), tokenizer.model, and the
// processor's image settings. Loading checks every piece and says what is missing.
import Foundation
import Logging
import PaliModels
import PaliTensor
import PaliTokenizer
import PaliWeights

public enum BundleError: Error, CustomStringConvertible {
    case notADirectory(String)
    case missingFile(directory: String, file: String, hint: String)
    case tokenizerMismatch(directory: String, detail: String)

    public var description: String {
        switch self {
        case let .notADirectory(p):
            return "\(p) is not a model directory: pass the folder holding config.json, the .safetensors weights and tokenizer.model"
        case let .missingFile(d, f, hint):
            return "\(d) has no \(f): \(hint)"
        case let .tokenizerMismatch(d, detail):
            return "tokenizer.model in \(d) does not fit config.json: \(detail)"
        }
    }
}

public final class ModelBundle: @unchecked Sendable {
    public let directory: URL
    public let configuration: PaliGemmaConfiguration
    public let hyper: PaliGemmaHyperparameters
    public let tokenizer: SentencePieceTokenizer
    public let prompt: PromptFormat
    /// Every id that ends generation (config's eos_token_id, which may be a list).
    public let stopIDs: Set<Int>

    /// Reads the configuration and tokenizer (not the weights).
    public init(directory: URL) throws {
        self.directory = directory
        configuration = try Self.readConfiguration(directory: directory)
        let tokURL = directory.appendingPathComponent("tokenizer.model")
        guard FileManager.default.fileExists(atPath: tokURL.path) else {
            throw BundleError.missingFile(directory: directory.path, file: "tokenizer.model",
                                          hint: "copy the SentencePiece tokenizer.model of this checkpoint into the directory")
        }
        hyper = PaliGemmaHyperparameters(configuration)
        var tok = try SentencePieceTokenizer(contentsOf: tokURL)
        do {
            try tok.registerSpecialToken("<image>", id: configuration.imageTokenIndex)
        } catch {
            throw BundleError.tokenizerMismatch(directory: directory.path, detail: "\(error)")
        }
        if tok.vocabularySize > hyper.decoder.vocabSize {
            throw BundleError.tokenizerMismatch(
                directory: directory.path,
                detail: "it has \(tok.vocabularySize) ids but the model's vocabulary is \(hyper.decoder.vocabSize)")
        }
        tokenizer = tok
        prompt = PromptFormat(imageTokens: hyper.imageTokens, imageTokenID: hyper.imageTokenID, bosID: hyper.bosID,
                              maxPositions: configuration.text.maxPositionEmbeddings)
        stopIDs = Set(configuration.eosTokenIds.isEmpty ? [hyper.eosID] : configuration.eosTokenIds)
    }

    /// Reads only config.json of a model directory (cheap: no tokenizer, no weights), with the checks and
    /// errors of `init`.
    public static func readConfiguration(directory: URL) throws -> PaliGemmaConfiguration {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDir), isDir.boolValue else {
            throw BundleError.notADirectory(directory.path)
        }
        let configURL = directory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw BundleError.missingFile(directory: directory.path, file: "config.json",
                                          hint: "is this a PaliGemma checkpoint directory (as saved by save_pretrained)?")
        }
        return try PaliGemmaConfiguration(contentsOf: configURL)
    }

    /// Loads the weights (memory-mapped, packed in pieces) and builds the model; fails on any missing,
    /// misshapen or unused tensor. `weights` picks the precision matrices are kept at (`--weights`).
    /// `gemm` picks each matrix's kernel (`--gemm`: measured, or one named).
    /// `progressLabel`, when given, starts the lines of a progress report on stderr (slow loads only).
    public func loadModel(weights: WeightsMode = .auto, gemm: GEMMPolicy = .fixed(.best),
                          progressLabel: String? = nil) throws -> PaliGemmaModel {
        let checkpoint = try Checkpoint(directory: directory)
        checkpoint.weightsMode = weights
        checkpoint.gemm = gemm
        let progress = progressLabel.map {
            LoadProgress(logger: Logger(label: $0), totalBytes: checkpoint.byteCount { _ in true })
        }
        if let progress {
            checkpoint.progress = { progress.add($0) }
            progress.start()
        }
        let model = try PaliGemmaModel(hyper: hyper, weights: checkpoint)
        progress?.finish(holding: model.packedBytes)
        try checkpoint.verifyAllUsed()
        return model
    }

    /// Prompt ids for a text prefix.
    public func promptIDs(_ prefix: String) -> [Int] {
        prompt.ids(prefix: prefix, encode: tokenizer.encode)
    }

    /// Generated ids → text, special tokens dropped, <loc>/<seg> kept.
    public func text(_ tokens: [Int]) -> String { tokenizer.decode(tokens, skipSpecialTokens: true) }
}
