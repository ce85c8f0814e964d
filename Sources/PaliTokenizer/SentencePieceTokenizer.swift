// SentencePiece tokenizer for Gemma / PaliGemma's `tokenizer.model` (a BPE ModelProto), matching
// the sentencepiece library's encode and decode id for id and byte for byte.
//
// Not here: unigram/word/char models, normalization rules that need a precompiled character map
// (NFKC...), sampling (BPE-dropout), and matching added tokens such as "<image>" inside text
// (prompts are assembled from ids: see docs/tokenizer.md).

import Foundation

/// Encodes text to ids and decodes ids to text with a SentencePiece BPE model.
public struct SentencePieceTokenizer: Sendable {
    let vocabulary: Vocabulary
    /// Tokens registered beyond the model's pieces (transformers' added tokens, e.g. "<image>").
    private var extraPieces: [Int: String] = [:]
    private var extraIDs: [String: Int] = [:]
    /// Ids `decode(_:skipSpecialTokens: true)` drops: pad, eos, bos, unk and registered tokens.
    private var specialIDs: IDSet

    /// Loads a `tokenizer.model` file, or the `tokenizer.model` inside a model directory.
    public init(contentsOf url: URL) throws {
        var path = url.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError.fileNotFound(path: path)
        }
        if isDirectory.boolValue {
            let model = url.appendingPathComponent("tokenizer.model").path
            guard FileManager.default.fileExists(atPath: model) else {
                throw TokenizerError.noModelInDirectory(path: path)
            }
            path = model
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TokenizerError.unreadable(path: path, reason: error.localizedDescription)
        }
        try self.init(modelData: [UInt8](data), path: path)
    }

    /// Parses the bytes of a `tokenizer.model` (a serialized SentencePiece `ModelProto`).
    public init(modelData: [UInt8]) throws {
        try self.init(modelData: modelData, path: nil)
    }

    private init(modelData: [UInt8], path: String?) throws {
        vocabulary = try Vocabulary(data: modelData, path: path)
        specialIDs = IDSet()
        for id in [vocabulary.padID, vocabulary.eosID, vocabulary.bosID, Int(vocabulary.unkID)] where id >= 0 {
            specialIDs.insert(id)
        }
    }

    /// Ids of `text` exactly as sentencepiece's `encode(text)` returns them: no BOS or EOS, and
    /// registered special tokens are not recognised in the text.
    public func encode(_ text: String) -> [Int] {
        var text = text
        return text.withUTF8 { vocabulary.encode($0) }
    }

    /// Text of `ids` as sentencepiece's `decode(ids)` gives it. With `skipSpecialTokens` (the
    /// default), pad, eos, bos, unk and registered special tokens are dropped first, as
    /// transformers' `decode(ids, skip_special_tokens=True)` does; without it, control pieces
    /// still decode to nothing, unk to " ⁇ ", and registered extra tokens to their text.
    /// `<loc…>` and `<seg…>` are ordinary pieces and always kept. Ids that are neither model pieces
    /// nor registered tokens are ignored.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
        var state = Vocabulary.DecodeState()
        state.bytes.reserveCapacity(ids.count * 4)
        let modelCount = vocabulary.count
        for id in ids {
            if skipSpecialTokens && specialIDs.contains(id) { continue }
            if id >= 0 && id < modelCount {
                vocabulary.appendPiece(id, to: &state)
            } else if let extra = extraPieces[id] {
                vocabulary.appendText(Array(extra.utf8), to: &state)
            }
        }
        vocabulary.flushBytes(&state)
        return String(decoding: state.bytes, as: UTF8.self)
    }

    /// The piece of each id ("▁" marks a space; "" for ids outside the vocabulary).
    public func pieces(_ ids: [Int]) -> [String] {
        ids.map { piece(of: $0) ?? "" }
    }

    /// The id of `piece` (a model piece, preferring control/unknown/byte pieces as sentencepiece's
    /// `piece_to_id` does, else a registered token), or nil.
    public func id(of piece: String) -> Int? {
        vocabulary.find(Array(piece.utf8)) ?? extraIDs[piece]
    }

    /// The piece with this id (model piece or registered token), or nil.
    public func piece(of id: Int) -> String? {
        if id >= 0 && id < vocabulary.count {
            return String(decoding: vocabulary.pieceBytes(id), as: UTF8.self)
        }
        return extraPieces[id]
    }

    /// Model pieces plus registered tokens: one more than the largest id.
    public var vocabularySize: Int { max(vocabulary.count, (extraPieces.keys.max() ?? -1) + 1) }

    /// Ids of the model's `<bos>`, `<eos>`, `<pad>` control pieces and `<unk>` piece (named by the
    /// trainer spec, as sentencepiece's `bos_id()` etc.), -1 where the model has none.
    public var bosID: Int { vocabulary.bosID }
    public var eosID: Int { vocabulary.eosID }
    public var padID: Int { vocabulary.padID }
    public var unkID: Int { Int(vocabulary.unkID) }

    /// Marks `piece` as a special token at `id`, as transformers' added special tokens: `<image>`
    /// at `config.json`'s `image_token_index` (past the model's pieces, not necessarily the next
    /// id), or an existing piece such as `<mask>` at its own id. Special tokens are dropped by
    /// `decode(_:skipSpecialTokens: true)`. Registering the same token twice is a no-op.
    public mutating func registerSpecialToken(_ piece: String, id: Int) throws {
        func conflict(_ reason: String) -> TokenizerError {
            .specialTokenConflict(piece: piece, id: id, reason: reason)
        }
        guard id >= 0 else { throw conflict("ids are not negative") }
        guard !piece.isEmpty else { throw conflict("the piece is empty") }
        if id < vocabulary.count {
            let existing = String(decoding: vocabulary.pieceBytes(id), as: UTF8.self)
            guard Array(existing.utf8) == Array(piece.utf8) else {
                throw conflict("the model's piece \(id) is \(existing)")
            }
        } else {
            if let other = vocabulary.find(Array(piece.utf8)) {
                throw conflict("the model already has \(piece) at id \(other)")
            }
            if let existing = extraPieces[id], Array(existing.utf8) != Array(piece.utf8) {
                throw conflict("id \(id) is already registered as \(existing)")
            }
            if let other = extraIDs[piece], other != id {
                throw conflict("\(piece) is already registered at id \(other)")
            }
            extraPieces[id] = piece
            extraIDs[piece] = id
        }
        specialIDs.insert(id)
    }
}

/// A set of small non-negative ids as a bitmap (decode asks it once per id).
private struct IDSet: Sendable {
    private var words: [UInt64] = []

    mutating func insert(_ id: Int) {
        let word = id >> 6
        if word >= words.count { words += [UInt64](repeating: 0, count: word + 1 - words.count) }
        words[word] |= 1 << UInt64(id & 63)
    }

    @inline(__always)
    func contains(_ id: Int) -> Bool {
        let word = id >> 6
        return id >= 0 && word < words.count && words[word] & (1 << UInt64(id & 63)) != 0
    }
}
