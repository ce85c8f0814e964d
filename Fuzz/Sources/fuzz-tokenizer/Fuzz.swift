// tokenizer.model: the protobuf reader (ModelProto), the vocabulary built from it, then an encode and
// a decode with whatever model was accepted.
import PaliTokenizer

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let tokenizer = try? SentencePieceTokenizer(modelData: bytes) else { return 0 }
    let ids = tokenizer.encode("caption en a photo of 2 cats\n é ☃ 🐈  x")
    _ = tokenizer.decode(ids)
    let n = tokenizer.vocabularySize
    _ = tokenizer.decode(Array(0..<min(n, 64)) + [n, -1, Int.max], skipSpecialTokens: false)
    _ = tokenizer.pieces(ids + [n, -1])
    return 0
}
