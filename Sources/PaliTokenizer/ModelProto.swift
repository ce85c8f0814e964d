// SentencePiece `ModelProto` (sentencepiece_model.proto, proto2) read straight from the protobuf
// wire format: only the fields the tokenizer needs, no generated code.
//
//   ModelProto      1 pieces (repeated SentencePiece)  2 trainer_spec  3 normalizer_spec
//                   5 denormalizer_spec
//   SentencePiece   1 piece (string)  2 score (float)  3 type (enum, default NORMAL)
//   TrainerSpec     3 model_type  24 treat_whitespace_as_suffix  35 byte_fallback  44 unk_surface
//                   45-48 unk/bos/eos/pad piece names
//   NormalizerSpec  1 name  2 precompiled_charsmap  3 add_dummy_prefix  4 remove_extra_whitespaces
//                   5 escape_whitespaces
//
// Singular message fields that occur more than once are merged (protobuf semantics); within them
// the last scalar wins. Unknown fields are skipped.

/// `ModelProto.SentencePiece.Type`.
enum PieceType: UInt8 {
    case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

struct NormalizerSpec {
    var name = ""
    var precompiledCharsmapBytes = 0
    var addDummyPrefix = true
    var removeExtraWhitespaces = true
    var escapeWhitespaces = true
}

struct TrainerSpec {
    /// UNIGRAM = 1, BPE = 2, WORD = 3, CHAR = 4 (proto default UNIGRAM).
    var modelType: UInt64 = 1
    var treatWhitespaceAsSuffix = false
    var byteFallback = false
    var unkSurface: [UInt8]? = nil
    var unkPiece: [UInt8]? = nil
    var bosPiece: [UInt8]? = nil
    var eosPiece: [UInt8]? = nil
    var padPiece: [UInt8]? = nil
}

struct ModelProto {
    /// Piece i's UTF-8 bytes are `data[pieceRanges[i]]`.
    var pieceRanges: [Range<Int>] = []
    var scores: [Float] = []
    var types: [UInt8] = []
    var trainer = TrainerSpec()
    var normalizer = NormalizerSpec()
    var denormalizer: NormalizerSpec? = nil

    init(data: [UInt8], path: String?) throws {
        guard !data.isEmpty else {
            throw TokenizerError.malformedModel(path: path, offset: 0, reason: "empty file")
        }
        // A JSON tokenizer (tokenizer.json) parses as garbage; name it instead.
        if let first = data.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }),
           first == UInt8(ascii: "{") {
            throw TokenizerError.malformedModel(path: path, offset: 0, reason: "looks like JSON")
        }
        var reader = WireReader(data: data, path: path, end: data.count)
        while let (field, wire) = try reader.nextField() {
            switch (field, wire) {
            case (1, 2):
                let range = try reader.lengthDelimited()
                try readPiece(data, range, path: path)
            case (2, 2):
                let range = try reader.lengthDelimited()
                try readTrainerSpec(data, range, path: path)
            case (3, 2):
                let range = try reader.lengthDelimited()
                try Self.readNormalizerSpec(data, range, path: path, into: &normalizer)
            case (5, 2):
                let range = try reader.lengthDelimited()
                var spec = denormalizer ?? NormalizerSpec()
                try Self.readNormalizerSpec(data, range, path: path, into: &spec)
                denormalizer = spec
            default:
                try reader.skip(wire)
            }
        }
    }

    private mutating func readPiece(_ data: [UInt8], _ range: Range<Int>, path: String?) throws {
        var reader = WireReader(data: data, path: path, start: range.lowerBound, end: range.upperBound)
        var piece = range.lowerBound..<range.lowerBound
        var score: Float = 0
        var type = PieceType.normal.rawValue
        while let (field, wire) = try reader.nextField() {
            switch (field, wire) {
            case (1, 2): piece = try reader.lengthDelimited()
            case (2, 5): score = Float(bitPattern: try reader.fixed32())
            case (3, 0):
                let raw = try reader.varint()
                guard let known = PieceType(rawValue: UInt8(truncatingIfNeeded: raw)), raw < 256 else {
                    throw TokenizerError.invalidModel(
                        path: path, reason: "piece \(pieceRanges.count) has unknown type \(raw)")
                }
                type = known.rawValue
            default: try reader.skip(wire)
            }
        }
        pieceRanges.append(piece)
        scores.append(score)
        types.append(type)
    }

    private mutating func readTrainerSpec(_ data: [UInt8], _ range: Range<Int>, path: String?) throws {
        var reader = WireReader(data: data, path: path, start: range.lowerBound, end: range.upperBound)
        while let (field, wire) = try reader.nextField() {
            switch (field, wire) {
            case (3, 0): trainer.modelType = try reader.varint()
            case (24, 0): trainer.treatWhitespaceAsSuffix = try reader.varint() != 0
            case (35, 0): trainer.byteFallback = try reader.varint() != 0
            case (44, 2): trainer.unkSurface = Array(data[try reader.lengthDelimited()])
            case (45, 2): trainer.unkPiece = Array(data[try reader.lengthDelimited()])
            case (46, 2): trainer.bosPiece = Array(data[try reader.lengthDelimited()])
            case (47, 2): trainer.eosPiece = Array(data[try reader.lengthDelimited()])
            case (48, 2): trainer.padPiece = Array(data[try reader.lengthDelimited()])
            default: try reader.skip(wire)
            }
        }
    }

    private static func readNormalizerSpec(_ data: [UInt8], _ range: Range<Int>, path: String?,
                                           into spec: inout NormalizerSpec) throws {
        var reader = WireReader(data: data, path: path, start: range.lowerBound, end: range.upperBound)
        while let (field, wire) = try reader.nextField() {
            switch (field, wire) {
            case (1, 2): spec.name = String(decoding: data[try reader.lengthDelimited()], as: UTF8.self)
            case (2, 2): spec.precompiledCharsmapBytes = try reader.lengthDelimited().count
            case (3, 0): spec.addDummyPrefix = try reader.varint() != 0
            case (4, 0): spec.removeExtraWhitespaces = try reader.varint() != 0
            case (5, 0): spec.escapeWhitespaces = try reader.varint() != 0
            default: try reader.skip(wire)
            }
        }
    }
}

/// Protobuf wire-format cursor over `data[start..<end]`; errors carry the absolute byte offset.
struct WireReader {
    let data: [UInt8]
    let path: String?
    var offset: Int
    let end: Int

    init(data: [UInt8], path: String?, start: Int = 0, end: Int) {
        self.data = data
        self.path = path
        self.offset = start
        self.end = end
    }

    private func fail(_ reason: String, at position: Int? = nil) -> TokenizerError {
        .malformedModel(path: path, offset: position ?? offset, reason: reason)
    }

    /// The next (field number, wire type), or nil at the end of the message.
    mutating func nextField() throws -> (Int, Int)? {
        guard offset < end else { return nil }
        let at = offset
        let key = try varint()
        let field = key >> 3
        let wire = Int(key & 7)
        guard field > 0, field < 1 << 29 else { throw fail("field number \(field)", at: at) }
        guard wire == 0 || wire == 1 || wire == 2 || wire == 5 else {
            throw fail("unsupported wire type \(wire)", at: at)
        }
        return (Int(field), wire)
    }

    mutating func varint() throws -> UInt64 {
        let at = offset
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < end else { throw fail("truncated varint", at: at) }
            let byte = data[offset]
            offset += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
            guard shift < 64 else { throw fail("varint longer than 10 bytes", at: at) }
        }
    }

    mutating func fixed32() throws -> UInt32 {
        guard end - offset >= 4 else { throw fail("truncated fixed32") }
        var value: UInt32 = 0
        for i in 0..<4 { value |= UInt32(data[offset + i]) << (8 * UInt32(i)) }
        offset += 4
        return value
    }

    /// The byte range of a length-delimited payload (string, bytes, embedded message).
    mutating func lengthDelimited() throws -> Range<Int> {
        let at = offset
        let length = try varint()
        guard length <= UInt64(end - offset) else {
            throw fail("length \(length) runs past the end of its message", at: at)
        }
        let range = offset..<(offset + Int(length))
        offset = range.upperBound
        return range
    }

    mutating func skip(_ wire: Int) throws {
        switch wire {
        case 0: _ = try varint()
        case 1:
            guard end - offset >= 8 else { throw fail("truncated fixed64") }
            offset += 8
        case 2: _ = try lengthDelimited()
        case 5: _ = try fixed32()
        default: throw fail("unsupported wire type \(wire)")
        }
    }
}
