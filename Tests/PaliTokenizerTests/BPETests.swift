// The BPE rules on crafted models, where the expected pieces follow from bpe_model.cc by hand.
import Testing
@testable import PaliTokenizer

private func pieces(_ model: [UInt8], _ text: String) throws -> [String] {
    let tokenizer = try SentencePieceTokenizer(modelData: model)
    return tokenizer.pieces(tokenizer.encode(text))
}

@Test func equalScoresMergeLeftmostFirst() throws {
    let model = ProtoWriter.model(normal: [("a", 0), ("b", 0), ("c", 0), ("ab", -1), ("bc", -1)])
    #expect(try pieces(model, "abc") == ["ab", "c"])
}

@Test func higherScoreMergesFirst() throws {
    let model = ProtoWriter.model(normal: [("a", 0), ("b", 0), ("c", 0), ("ab", -2), ("bc", -1)])
    #expect(try pieces(model, "abc") == ["a", "bc"])
}

@Test func mergesNeedEveryIntermediatePiece() throws {
    // "abcd" is a piece, but no merge sequence reaches it without "abc" or "bcd".
    let model = ProtoWriter.model(normal: [("a", 0), ("b", 0), ("c", 0), ("d", 0), ("ab", -1),
                                           ("cd", -1), ("abcd", -3)])
    #expect(try pieces(model, "abcd") == ["abcd"])
    let stuck = ProtoWriter.model(normal: [("a", 0), ("b", 0), ("c", 0), ("d", 0), ("ab", -1),
                                           ("abcd", -3)])
    #expect(try pieces(stuck, "abcd") == ["ab", "c", "d"])
}

@Test func userDefinedPiecesAreFrozenAndLongestMatch() throws {
    let base: [(String, Float, PieceType)] = [("<unk>", 0, .unknown), ("<", 0, .normal),
                                              ("x", 0, .normal), (">", 0, .normal), ("x>", -1, .normal),
                                              ("<x", -1, .normal)]
    let model = ProtoWriter.model(base + [("<x>", 0, .userDefined), ("<x>>", 0, .userDefined)])
    #expect(try pieces(model, "x<x>x>") == ["x", "<x>", "x>"])
    #expect(try pieces(model, "<x>>>") == ["<x>>", ">"])
    #expect(try pieces(model, "<x") == ["<x"])
}

@Test func unknownCharactersWithoutFallbackFuse() throws {
    let tokenizer = try SentencePieceTokenizer(modelData: ProtoWriter.model(normal: [("a", 0)]))
    #expect(tokenizer.encode("?!a??") == [3, 4, 3])
    #expect(tokenizer.decode([3, 4, 3], skipSpecialTokens: false) == " \u{2047} a \u{2047} ")
}

@Test func unknownCharactersFallBackToBytes() throws {
    let tokenizer = try SentencePieceTokenizer(modelData: ProtoWriter.model(normal: [("a", 0)],
                                                                            byteFallback: true))
    #expect(tokenizer.pieces(tokenizer.encode("a\u{E9}")) == ["a", "<0xC3>", "<0xA9>"])
    #expect(tokenizer.decode(tokenizer.encode("a\u{E9}")) == "a\u{E9}")
}

@Test func whitespaceOptions() throws {
    let pieces3: [(String, Float, PieceType)] = [("<unk>", 0, .unknown), ("a", 0, .normal),
                                                 ("b", 0, .normal), ("\u{2581}", 0, .normal)]
    let suffix = ProtoWriter.model(pieces3, addDummyPrefix: true, removeExtraWhitespaces: true,
                                   treatWhitespaceAsSuffix: true)
    #expect(try pieces(suffix, "  a   b  ") == ["a", "\u{2581}", "b", "\u{2581}"])
    let prefix = ProtoWriter.model(pieces3, addDummyPrefix: true, removeExtraWhitespaces: true)
    #expect(try pieces(prefix, "  a   b  ") == ["\u{2581}", "a", "\u{2581}", "b"])
    #expect(try pieces(prefix, "   ") == [])
    let identity = ProtoWriter.model(pieces3)
    #expect(try pieces(identity, " a  b ") == ["\u{2581}", "a", "\u{2581}", "\u{2581}", "b", "\u{2581}"])
}
