// Loading tokenizer.model: paths, refused normalizers, and broken files (errors, never crashes).
import Foundation
import Testing
@testable import PaliTokenizer

@Test func loadsFromAModelDirectory() throws {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("pali-tokenizer-\(UInt64.random(in: 0...UInt64.max))")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let error = #expect(throws: TokenizerError.self) { try SentencePieceTokenizer(contentsOf: directory) }
    #expect(error == .noModelInDirectory(path: directory.path))
    try FileManager.default.copyItem(at: Fixtures.url("gemma-style.model"),
                                     to: directory.appendingPathComponent("tokenizer.model"))
    let tokenizer = try SentencePieceTokenizer(contentsOf: directory)
    #expect(tokenizer.encode("a red circle") == (try Fixtures.tokenizer("gemma-style")).encode("a red circle"))
}

@Test func missingFileNamesThePath() {
    let url = Fixtures.url("does-not-exist.model")
    let error = #expect(throws: TokenizerError.self) { try SentencePieceTokenizer(contentsOf: url) }
    #expect(error == .fileNotFound(path: url.path))
    #expect(error?.description.contains(url.path) == true)
}

@Test func modelNeedingAPrecompiledCharsmapIsRefused() throws {
    let url = Fixtures.url("custom-rule.model")
    let error = #expect(throws: TokenizerError.self) { try SentencePieceTokenizer(contentsOf: url) }
    guard case .unsupportedNormalizer(let path, "normalizer", let rule, let bytes)? = error else {
        Issue.record("unexpected \(String(describing: error))")
        return
    }
    #expect(path == url.path && rule == "user_defined" && bytes > 0)
    #expect(error!.description.contains("identity"))
}

@Test(arguments: [3, 5])  // normalizer_spec, denormalizer_spec
func appendedCharsmapIsRefused(field: Int) throws {
    // A second occurrence of a message field merges into the first (protobuf semantics).
    var proto = ProtoWriter(bytes: try Fixtures.data("gemma-style.model"))
    var spec = ProtoWriter()
    spec.field(1, bytes: Array("nmt_nfkc".utf8))
    spec.field(2, bytes: [0x04, 0, 0, 0, 1, 2, 3, 4, 0x61])
    proto.field(field, bytes: spec.bytes)
    let error = #expect(throws: TokenizerError.self) { try SentencePieceTokenizer(modelData: proto.bytes) }
    #expect(error == .unsupportedNormalizer(path: nil, spec: field == 3 ? "normalizer" : "denormalizer",
                                            rule: "nmt_nfkc", charsmapBytes: 9))
}

@Test func truncatedModelsAreErrors() throws {
    let data = try Fixtures.data("gemma-style.model")
    // Everything before the normalizer spec is required (the trainer spec says "BPE").
    var reader = WireReader(data: data, path: nil, end: data.count)
    var normalizerStart = 0
    while let (field, wire) = try reader.nextField() {
        if field == 3 { break }
        try reader.skip(wire)
        normalizerStart = reader.offset
    }
    #expect(normalizerStart > data.count / 2)
    var cuts = Array(0..<300) + Array(stride(from: 300, to: normalizerStart, by: 97))
    cuts += [normalizerStart - 1]
    for cut in cuts {
        #expect(throws: TokenizerError.self, "cut at \(cut)") {
            try SentencePieceTokenizer(modelData: Array(data[..<cut]))
        }
    }
    for cut in normalizerStart..<data.count {  // the rest may parse; it must not crash
        _ = try? SentencePieceTokenizer(modelData: Array(data[..<cut]))
    }
}

@Test func garbageIsAnError() {
    var generator = SplitMix64(seed: 42)
    for length in [1, 2, 3, 7, 64, 1000, 10_000] {
        for _ in 0..<20 {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            #expect(throws: TokenizerError.self) { try SentencePieceTokenizer(modelData: bytes) }
        }
    }
    #expect(throws: TokenizerError.self) { try SentencePieceTokenizer(modelData: []) }
    #expect(throws: TokenizerError.self) { try SentencePieceTokenizer(modelData: [UInt8](repeating: 0, count: 64)) }
}

@Test func tokenizerJSONIsNamed() {
    let json = Array(#"{"version": "1.0", "model": {"type": "BPE"}}"#.utf8)
    let error = #expect(throws: TokenizerError.self) { try SentencePieceTokenizer(modelData: json) }
    #expect(error?.description.contains("not tokenizer.json") == true)
}

@Test func invalidPieceTablesAreRefused() {
    let base: [(String, Float, PieceType)] = [("<pad>", 0, .control), ("<eos>", 0, .control),
                                              ("<bos>", 0, .control), ("<unk>", 0, .unknown)]
    let cases: [([(String, Float, PieceType)], Bool, String)] = [
        (base + [("a", 0, .normal), ("a", -1, .normal)], false, "defined twice"),
        (Array(base.prefix(3)) + [("a", 0, .normal)], false, "no <unk>"),
        (base + [("<unk2>", 0, .unknown)], false, "<unk> twice"),
        (base + [("<0x41>", 0, .byte)], false, "byte_fallback is false"),
        (base + [("<0x41>", 0, .byte)], true, "not all 256"),
        (base + [("<0x4g>", 0, .byte)], true, "not of the form"),
        (base + [("", 0, .normal)], false, "is empty"),
    ]
    for (pieces, byteFallback, message) in cases {
        let error = #expect(throws: TokenizerError.self) {
            try SentencePieceTokenizer(modelData: ProtoWriter.model(pieces, byteFallback: byteFallback))
        }
        #expect(error?.description.contains(message) == true, "\(String(describing: error))")
    }
}

@Test func nonBPEModelsAreRefused() {
    let unigram = ProtoWriter.model([("<unk>", 0, .unknown), ("a", -1, .normal)], modelType: 1)
    let error = #expect(throws: TokenizerError.self) { try SentencePieceTokenizer(modelData: unigram) }
    #expect(error == .unsupportedModelType(path: nil, modelType: "unigram"))
}

/// Deterministic test bytes.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
