// SentencePiece's Normalizer::Normalize (normalizer.cc) with the identity rule: the only rewrite
// is ' ' (U+0020 alone: tabs and newlines are ordinary characters) to '▁' (U+2581) when
// escape_whitespaces is set, plus the add_dummy_prefix and remove_extra_whitespaces options.
// Models whose rule needs a precompiled character map are refused at load time.

let spaceSymbol: (UInt8, UInt8, UInt8) = (0xE2, 0x96, 0x81)  // "▁" U+2581

/// Byte length of the UTF-8 character that starts with `lead` (SentencePiece's OneCharLen).
@inline(__always)
func utf8Length(lead: UInt8) -> Int {
    switch lead >> 4 {
    case 0xC, 0xD: return 2
    case 0xE: return 3
    case 0xF: return 4
    default: return 1
    }
}

extension Vocabulary {
    /// Bytes `normalize` may write for `count` input bytes.
    static func normalizedCapacity(_ count: Int) -> Int { 3 * count + 8 }

    /// Normalizes valid UTF-8 `text` into `out` (room for `normalizedCapacity(text.count)` bytes);
    /// returns the normalized length.
    func normalize(_ text: UnsafeBufferPointer<UInt8>, into out: UnsafeMutablePointer<UInt8>) -> Int {
        guard let base = text.baseAddress, text.count > 0 else { return 0 }
        let n = text.count
        var length = 0

        @inline(__always) func appendSpace() {
            if escapeWhitespaces {
                out[length] = spaceSymbol.0
                out[length + 1] = spaceSymbol.1
                out[length + 2] = spaceSymbol.2
                length += 3
            } else {
                out[length] = 0x20
                length += 1
            }
        }
        @inline(__always) func appendEscaped(_ from: Int, _ to: Int) {
            for i in from..<to {
                if base[i] == 0x20 && escapeWhitespaces {
                    appendSpace()
                } else {
                    out[length] = base[i]
                    length += 1
                }
            }
        }
        // NormalizePrefix: a whole user-defined piece, else one UTF-8 character.
        @inline(__always) func prefixLength(_ i: Int) -> Int {
            if !userDefined.isEmpty {
                let match = userDefined.longestMatch(base + i, n - i)
                if match > 0 { return match }
            }
            return min(utf8Length(lead: base[i]), n - i)
        }

        var i = 0
        if removeExtraWhitespaces {
            // Leading spaces go.
            while i < n {
                let p = prefixLength(i)
                if p != 1 || base[i] != 0x20 { break }
                i += 1
            }
            if i == n { return 0 }
        }
        if !treatWhitespaceAsSuffix && addDummyPrefix { appendSpace() }

        if !removeExtraWhitespaces {
            appendEscaped(i, n)
        } else {
            // Runs of spaces collapse to one (spaces that open a prefix after a space go).
            var previousIsSpace = true
            while i < n {
                let p = prefixLength(i)
                var from = i
                let to = i + p
                if previousIsSpace { while from < to && base[from] == 0x20 { from += 1 } }
                if from < to {
                    appendEscaped(from, to)
                    previousIsSpace = base[to - 1] == 0x20
                }
                i = to
            }
            // Trailing spaces go.
            if escapeWhitespaces {
                while length >= 3 && out[length - 3] == spaceSymbol.0 && out[length - 2] == spaceSymbol.1
                        && out[length - 1] == spaceSymbol.2 {
                    length -= 3
                }
            } else {
                while length >= 1 && out[length - 1] == 0x20 { length -= 1 }
            }
        }
        if treatWhitespaceAsSuffix && addDummyPrefix { appendSpace() }
        return length
    }
}
