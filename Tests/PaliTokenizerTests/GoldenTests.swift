// Encode and decode against the sentencepiece library's goldens, id for id and byte for byte.
import Testing
@testable import PaliTokenizer

@Test func goldensArePresent() throws {
    let encode = try EncodeGolden.load()
    for model in Fixtures.encodeModels {
        #expect(encode.filter { $0.model == model }.count >= 150, "\(model).json")
        _ = try Fixtures.tokenizer(model)
    }
    #expect(try DecodeGolden.load().count >= 40)
}

@Test(arguments: try EncodeGolden.load())
func encodeMatchesSentencePiece(_ golden: EncodeGolden) throws {
    let tokenizer = try Fixtures.tokenizer(golden.model)
    #expect(tokenizer.encode(golden.text) == golden.ids)
}

@Test(arguments: try EncodeGolden.load())
func decodeMatchesSentencePiece(_ golden: EncodeGolden) throws {
    let tokenizer = try Fixtures.tokenizer(golden.model)
    #expect(utf8(tokenizer.decode(golden.ids, skipSpecialTokens: false)) == utf8(golden.decoded))
    // sentencepiece round-trips most text; where it does, so must we (skipping <unk> changes nothing
    // then, since a round trip has no <unk>).
    if utf8(golden.decoded) == utf8(golden.text) {
        #expect(utf8(tokenizer.decode(tokenizer.encode(golden.text))) == utf8(golden.text))
    }
}

@Test(arguments: try EncodeGolden.load())
func piecesMatchSentencePiece(_ golden: EncodeGolden) throws {
    let tokenizer = try Fixtures.tokenizer(golden.model)
    let pieces = tokenizer.pieces(golden.ids)
    try #require(pieces.count == golden.pieces.count)
    for (i, id) in golden.ids.enumerated() where id != tokenizer.unkID {
        // sentencepiece names a fused <unk> by its surface; every other piece by its own text.
        #expect(utf8(pieces[i]) == utf8(golden.pieces[i]), "piece \(i)")
        #expect(tokenizer.id(of: golden.pieces[i]) == id)
    }
}

@Test(arguments: try DecodeGolden.load())
func decodeOnlyCasesMatchSentencePiece(_ golden: DecodeGolden) throws {
    let tokenizer = try Fixtures.tokenizer(golden.model)
    #expect(utf8(tokenizer.decode(golden.ids, skipSpecialTokens: false)) == utf8(golden.decoded))
    #expect(utf8(tokenizer.decode(golden.ids, skipSpecialTokens: true)) == utf8(golden.decodedSkipSpecial))
}

@Test func unusedPiecesAreNeverProduced() throws {
    let tokenizer = try Fixtures.tokenizer("unused-pieces")
    let unused = (0..<tokenizer.vocabulary.count).filter { tokenizer.vocabulary.type($0) == .unused }
    #expect(unused.count > 50)
    let goldens = try EncodeGolden.load(["unused-pieces"])
    var ids: [Int] = []
    for golden in goldens { ids += tokenizer.encode(golden.text) }
    #expect(Set(ids).isDisjoint(with: unused))
    // The retyped pieces do change the encoding of some texts relative to the gemma-style model.
    let gemma = try Fixtures.tokenizer("gemma-style")
    #expect(goldens.contains { gemma.encode($0.text) != $0.ids })
}

@Test func consecutiveUnknownsFuseWithoutByteFallback() throws {
    let tokenizer = try Fixtures.tokenizer("no-fallback")
    let ids = tokenizer.encode("a\u{3042}\u{3044}b")  // two characters the model has never seen
    #expect(ids.filter { $0 == tokenizer.unkID }.count == 1)
    #expect(tokenizer.decode(ids, skipSpecialTokens: false) == "a \u{2047} b")
    #expect(tokenizer.decode(ids) == "ab")
}

@Test func gemmaStylePromptPieces() throws {
    let tokenizer = try Fixtures.tokenizer("gemma-style")
    #expect([tokenizer.padID, tokenizer.eosID, tokenizer.bosID, tokenizer.unkID] == [0, 1, 2, 3])
    let ids = tokenizer.encode("detect cat\n<loc0001><loc0002>")
    let pieces = tokenizer.pieces(ids)
    #expect(pieces.suffix(3) == ["<0x0A>", "<loc0001>", "<loc0002>"])
    #expect(tokenizer.id(of: "<loc0000>") == 4 && tokenizer.id(of: "<seg127>") == 4 + 1024 + 127)
}
