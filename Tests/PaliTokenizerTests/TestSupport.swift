// Fixtures and golden records for the tokenizer tests. The goldens come from the sentencepiece
// library through Tests/Oracle/make_tokenizer_goldens.py.
import Foundation
import Testing
@testable import PaliTokenizer

enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer")

    /// Models with an encode golden `<name>.json`.
    static let encodeModels = ["gemma-style", "dummy-prefix", "unused-pieces", "no-fallback"]

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    static func data(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: url(name))) }

    /// Loaded once per model.
    static let tokenizers: [String: SentencePieceTokenizer] = {
        var result: [String: SentencePieceTokenizer] = [:]
        for name in encodeModels {
            result[name] = try? SentencePieceTokenizer(contentsOf: url(name + ".model"))
        }
        return result
    }()

    static func tokenizer(_ name: String) throws -> SentencePieceTokenizer {
        try #require(tokenizers[name], "could not load \(name).model")
    }
}

/// One `<model>.json` record: sentencepiece's encode of `text`, its pieces, and decode of the ids.
struct EncodeGolden: Decodable, Sendable, CustomTestStringConvertible {
    var model = ""
    let text: String
    let ids: [Int]
    let pieces: [String]
    let decoded: String

    enum CodingKeys: String, CodingKey { case text, ids, pieces, decoded }

    var testDescription: String { "\(model): \(String(reflecting: String(text.prefix(60))))" }

    static func load(_ models: [String] = Fixtures.encodeModels) throws -> [EncodeGolden] {
        try models.flatMap { model -> [EncodeGolden] in
            let data = try Data(contentsOf: Fixtures.url(model + ".json"))
            return try JSONDecoder().decode([EncodeGolden].self, from: data).map { golden in
                var golden = golden
                golden.model = model
                return golden
            }
        }
    }
}

/// One `decode.json` record: sentencepiece's decode of `ids`, with and without the special ids.
struct DecodeGolden: Decodable, Sendable, CustomTestStringConvertible {
    let model: String
    let ids: [Int]
    let decoded: String
    let decodedSkipSpecial: String

    enum CodingKeys: String, CodingKey {
        case model, ids, decoded
        case decodedSkipSpecial = "decoded_skip_special"
    }

    var testDescription: String { "\(model): \(ids.prefix(12))\(ids.count > 12 ? "…" : "")" }

    static func load() throws -> [DecodeGolden] {
        try JSONDecoder().decode([DecodeGolden].self, from: Data(contentsOf: Fixtures.url("decode.json")))
    }
}

/// Swift's String == compares canonically equivalent text as equal ("é" == "e\u{301}");
/// tokenizer tests must compare bytes.
func utf8(_ s: String) -> [UInt8] { Array(s.utf8) }

/// A protobuf writer for crafting small ModelProtos in tests.
struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func key(_ field: Int, _ wire: Int) { varint(UInt64(field << 3 | wire)) }

    mutating func field(_ field: Int, varint value: UInt64) {
        key(field, 0)
        varint(value)
    }

    mutating func field(_ field: Int, bytes payload: [UInt8]) {
        key(field, 2)
        varint(UInt64(payload.count))
        bytes += payload
    }

    mutating func field(_ field: Int, float value: Float) {
        key(field, 5)
        let bits = value.bitPattern
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt32(i)))) }
    }

    /// A ModelProto with these (piece, score, type) entries, a BPE trainer spec and an identity
    /// normalizer spec with the given flags.
    static func model(_ pieces: [(String, Float, PieceType)], byteFallback: Bool = false,
                      addDummyPrefix: Bool = false, removeExtraWhitespaces: Bool = false,
                      treatWhitespaceAsSuffix: Bool = false, modelType: UInt64 = 2) -> [UInt8] {
        var model = ProtoWriter()
        for (piece, score, type) in pieces {
            var p = ProtoWriter()
            p.field(1, bytes: Array(piece.utf8))
            p.field(2, float: score)
            p.field(3, varint: UInt64(type.rawValue))
            model.field(1, bytes: p.bytes)
        }
        var trainer = ProtoWriter()
        trainer.field(3, varint: modelType)
        trainer.field(24, varint: treatWhitespaceAsSuffix ? 1 : 0)
        trainer.field(35, varint: byteFallback ? 1 : 0)
        for (field, name) in [(45, "<unk>"), (46, "<bos>"), (47, "<eos>"), (48, "<pad>")] {
            trainer.field(field, bytes: Array(name.utf8))
        }
        model.field(2, bytes: trainer.bytes)
        var normalizer = ProtoWriter()
        normalizer.field(1, bytes: Array("identity".utf8))
        normalizer.field(3, varint: addDummyPrefix ? 1 : 0)
        normalizer.field(4, varint: removeExtraWhitespaces ? 1 : 0)
        normalizer.field(5, varint: 1)
        model.field(3, bytes: normalizer.bytes)
        return model.bytes
    }

    /// <pad> <eos> <bos> <unk>, then `pieces` as NORMAL pieces with the given scores.
    static func model(normal pieces: [(String, Float)], byteFallback: Bool = false) -> [UInt8] {
        var all: [(String, Float, PieceType)] = [("<pad>", 0, .control), ("<eos>", 0, .control),
                                                 ("<bos>", 0, .control), ("<unk>", 0, .unknown)]
        all += pieces.map { ($0.0, $0.1, .normal) }
        if byteFallback {
            all += (0..<256).map { (String(format: "<0x%02X>", $0), 0, .byte) }
        }
        return model(all, byteFallback: byteFallback)
    }
}
