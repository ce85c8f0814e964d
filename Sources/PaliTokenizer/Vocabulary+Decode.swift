// Decoding as SentencePieceProcessor::Decode (sentencepiece_processor.cc):
// control pieces → nothing; <unk> → the unk surface (" ⁇ " by default); runs of <0xNN> pieces →
// their bytes read as UTF-8, each structurally invalid byte → U+FFFD; other pieces → their text
// with '▁' → ' '. With add_dummy_prefix or remove_extra_whitespaces one leading '▁' of the first
// text piece is dropped (remove_extra_whitespaces: of every piece until some text is produced).

/// One UTF-8 character at `bytes[offset...]` as SentencePiece's DecodeUTF8 checks it: its length
/// when valid (no overlongs, surrogates or code points above U+10FFFF), else nil.
@inline(__always)
func validUTF8Length(_ bytes: [UInt8], _ offset: Int) -> Int? {
    let remaining = bytes.count - offset
    let b0 = UInt32(bytes[offset])
    @inline(__always) func trail(_ k: Int) -> UInt32? {
        let b = UInt32(bytes[offset + k])
        return b & 0xC0 == 0x80 ? b & 0x3F : nil
    }
    @inline(__always) func valid(_ c: UInt32) -> Bool { c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF) }
    if b0 < 0x80 { return 1 }
    if remaining >= 2 && b0 & 0xE0 == 0xC0, let t1 = trail(1) {
        let c = (b0 & 0x1F) << 6 | t1
        if c >= 0x80 && valid(c) { return 2 }
    } else if remaining >= 3 && b0 & 0xF0 == 0xE0, let t1 = trail(1), let t2 = trail(2) {
        let c = (b0 & 0x0F) << 12 | t1 << 6 | t2
        if c >= 0x800 && valid(c) { return 3 }
    } else if remaining >= 4 && b0 & 0xF8 == 0xF0, let t1 = trail(1), let t2 = trail(2), let t3 = trail(3) {
        let c = (b0 & 0x07) << 18 | t1 << 12 | t2 << 6 | t3
        if c >= 0x10000 && valid(c) { return 4 }
    }
    return nil
}

extension Vocabulary {
    /// Incremental decoder state: append pieces in order, then take `bytes`.
    struct DecodeState {
        var bytes: [UInt8] = []
        var pendingBytes: [UInt8] = []   // a run of <0xNN> pieces not yet turned into text
        var expectBOSSpace = true        // SentencePiece's is_bos_ws
        var sawBOSSpace = false          // SentencePiece's bos_ws_seen (of the previous piece)
    }

    /// ProcessBytePieces: the pending byte run as UTF-8, invalid bytes → U+FFFD one by one.
    func flushBytes(_ state: inout DecodeState) {
        let run = state.pendingBytes
        guard !run.isEmpty else { return }
        var offset = 0
        while offset < run.count {
            if let length = validUTF8Length(run, offset) {
                state.bytes.append(contentsOf: run[offset..<offset + length])
                offset += length
            } else {
                state.bytes.append(contentsOf: [0xEF, 0xBF, 0xBD])
                offset += 1
            }
        }
        state.pendingBytes.removeAll(keepingCapacity: true)
    }

    /// Appends model piece `id` (0 ≤ id < count).
    func appendPiece(_ id: Int, to state: inout DecodeState) {
        let id = Int(canonical[id])  // ids travel through their piece, as in SentencePiece
        let value = byteValue[id]
        if value >= 0 {
            state.pendingBytes.append(UInt8(value))
            return
        }
        flushBytes(&state)
        if state.sawBOSSpace || !state.bytes.isEmpty { state.expectBOSSpace = false }
        switch type(id) {
        case .control:
            state.sawBOSSpace = false
        case .unknown:
            state.bytes.append(contentsOf: unkSurface)
            state.sawBOSSpace = false
        default:
            var piece = pieceBytes(id)[...]
            var sawSpace = false
            if state.expectBOSSpace && (addDummyPrefix || removeExtraWhitespaces)
                && piece.count >= 3 && piece[piece.startIndex] == spaceSymbol.0
                && piece[piece.startIndex + 1] == spaceSymbol.1 && piece[piece.startIndex + 2] == spaceSymbol.2 {
                piece = piece.dropFirst(3)
                sawSpace = !removeExtraWhitespaces  // then every leading space goes
            }
            appendUnescaped(piece, to: &state.bytes)
            state.sawBOSSpace = sawSpace
        }
    }

    /// Appends text that is not a model piece (a registered extra token) as a text piece would be.
    func appendText(_ text: [UInt8], to state: inout DecodeState) {
        flushBytes(&state)
        if state.sawBOSSpace || !state.bytes.isEmpty { state.expectBOSSpace = false }
        state.bytes.append(contentsOf: text)
        state.sawBOSSpace = false
    }

    /// '▁' → ' '.
    private func appendUnescaped(_ piece: Slice<UnsafeBufferPointer<UInt8>>, to out: inout [UInt8]) {
        var i = piece.startIndex
        let end = piece.endIndex
        while i < end {
            if piece[i] == spaceSymbol.0 && i + 2 < end && piece[i + 1] == spaceSymbol.1
                && piece[i + 2] == spaceSymbol.2 {
                out.append(0x20)
                i += 3
            } else {
                out.append(piece[i])
                i += 1
            }
        }
    }
}
