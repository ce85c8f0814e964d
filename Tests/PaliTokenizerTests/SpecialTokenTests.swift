// Registered special tokens (transformers' added tokens: <image> at config.json's
// image_token_index) and the skip_special_tokens rules of decode.
import Testing
@testable import PaliTokenizer

/// transformers 5.x adds <mask> and then <image> after the last piece of a small tokenizer.
private func withImageToken() throws -> (SentencePieceTokenizer, image: Int) {
    var tokenizer = try Fixtures.tokenizer("gemma-style")
    let size = tokenizer.vocabularySize
    try tokenizer.registerSpecialToken("<image>", id: size + 1)
    return (tokenizer, size + 1)
}

@Test func imageTokenIsRegisteredPastAGap() throws {
    let plain = try Fixtures.tokenizer("gemma-style")
    let (tokenizer, image) = try withImageToken()
    #expect(tokenizer.vocabularySize == plain.vocabularySize + 2)
    #expect(tokenizer.id(of: "<image>") == image)
    #expect(tokenizer.piece(of: image) == "<image>")
    #expect(tokenizer.piece(of: image - 1) == nil)
    #expect(tokenizer.pieces([image, tokenizer.bosID]) == ["<image>", "<bos>"])
    // encode is sentencepiece's: "<image>" in text is not the special token.
    #expect(tokenizer.encode("<image>") == plain.encode("<image>"))
    #expect(!tokenizer.encode("<image>").contains(image))
}

@Test func decodeSkipsSpecialTokensAndKeepsLocations() throws {
    let (tokenizer, image) = try withImageToken()
    let prompt = [image, image, tokenizer.bosID] + tokenizer.encode("detect cat\n")
    let answer = tokenizer.encode("<loc0051><loc0309><loc0708><loc0646> cat") + [tokenizer.eosID]
    #expect(tokenizer.decode(prompt + answer) == "detect cat\n<loc0051><loc0309><loc0708><loc0646> cat")
    #expect(tokenizer.decode(prompt + answer, skipSpecialTokens: false)
            == "<image><image>detect cat\n<loc0051><loc0309><loc0708><loc0646> cat")
    #expect(tokenizer.decode([tokenizer.padID, tokenizer.unkID, tokenizer.eosID]) == "")
    #expect(tokenizer.decode([tokenizer.unkID], skipSpecialTokens: false) == " \u{2047} ")
}

@Test func skippedSpecialTokensDoNotSplitByteRuns() throws {
    // transformers drops special ids before sentencepiece decodes: the bytes of あ fuse across them.
    let (tokenizer, image) = try withImageToken()
    let bytes = ["<0xE3>", "<0x81>", "<0x82>"].map { tokenizer.id(of: $0)! }
    #expect(tokenizer.decode([bytes[0], image, bytes[1], tokenizer.eosID, bytes[2]]) == "\u{3042}")
    #expect(tokenizer.decode([bytes[0], image, bytes[1], bytes[2]], skipSpecialTokens: false)
            == "\u{FFFD}<image>\u{FFFD}\u{FFFD}")
}

@Test func existingPiecesCanBeMarkedSpecial() throws {
    var tokenizer = try Fixtures.tokenizer("gemma-style")
    let loc = try #require(tokenizer.id(of: "<loc0000>"))
    let size = tokenizer.vocabularySize
    try tokenizer.registerSpecialToken("<loc0000>", id: loc)
    try tokenizer.registerSpecialToken("<bos>", id: tokenizer.bosID)
    #expect(tokenizer.vocabularySize == size)
    #expect(tokenizer.decode([loc] + tokenizer.encode("x")) == "x")
    #expect(tokenizer.decode([loc], skipSpecialTokens: false) == "<loc0000>")
}

@Test func registrationIsIdempotent() throws {
    var (tokenizer, image) = try withImageToken()
    try tokenizer.registerSpecialToken("<image>", id: image)
    #expect(tokenizer.id(of: "<image>") == image)
}

@Test(arguments: [
    ("<image>", 5, "the model's piece 5 is"),             // a model piece with another name
    ("<bos>", 1, "the model's piece 1 is"),
    ("<loc0001>", 100_000, "already has <loc0001>"),       // a model piece at a new id
    ("<image>", 100_001, "already registered at id"),      // the same token twice
    ("<other>", -1, "not negative"),
])
func conflictingRegistrationsAreRefused(piece: String, id: Int, message: String) throws {
    var (tokenizer, _) = try withImageToken()
    let error = #expect(throws: TokenizerError.self) {
        try tokenizer.registerSpecialToken(piece, id: id)
    }
    #expect(error?.description.contains(message) == true, "\(String(describing: error))")
}

@Test func sameIdTwoPiecesIsRefused() throws {
    var (tokenizer, image) = try withImageToken()
    #expect(throws: TokenizerError.self) { try tokenizer.registerSpecialToken("<video>", id: image) }
}

@Test func decodeIgnoresUnknownIds() throws {
    let tokenizer = try Fixtures.tokenizer("gemma-style")
    let ids = tokenizer.encode("a red circle")
    #expect(tokenizer.decode([-1] + ids + [tokenizer.vocabularySize, 1 << 40]) == "a red circle")
    #expect(tokenizer.pieces([-1, tokenizer.vocabularySize]) == ["", ""])
}
