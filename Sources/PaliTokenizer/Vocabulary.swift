// The loaded vocabulary: piece bytes, scores and types, the two lookup tables SentencePiece keeps
// (model_interface.cc: `pieces_` for NORMAL/USER_DEFINED/UNUSED, `reserved_id_map_` for
// CONTROL/UNKNOWN/BYTE), the user-defined prefix matcher, and the normalizer flags.
// Immutable after init; its tables are raw buffers so that encode's inner loop has no
// bounds or uniqueness checks.

/// Owns `count` elements of raw memory (trivial element types only); freed with the object.
final class RawBuffer<Element> {
    let base: UnsafeMutablePointer<Element>
    let count: Int

    init(repeating value: Element, count: Int) {
        self.count = count
        base = .allocate(capacity: max(count, 1))
        base.initialize(repeating: value, count: count)
    }

    deinit { base.deallocate() }
}

/// Open-addressing hash table from piece bytes to piece id (ids index `Vocabulary`'s pool).
/// A slot is one word: piece id + 1 (0: empty) in the low half, and a tag (24 bits of the hash,
/// 8 bits of the length) in the high half, so most probes touch a single cache line. In front of
/// the slots, a bit filter (8 bits per piece: a few hundred KB for Gemma's 257k pieces, so it
/// stays in L2) answers most lookups of non-pieces without touching the slots at all.
final class PieceIndex {
    private let slots: RawBuffer<UInt64>
    private let mask: Int
    private let filter: RawBuffer<UInt64>
    private let filterMask: Int

    @inline(__always)
    private static func filterBit(_ hash: UInt64, _ filterMask: Int) -> Int {
        Int(truncatingIfNeeded: hash >> 24) & filterMask
    }

    @inline(__always)
    private static func tag(_ hash: UInt64, _ count: Int) -> UInt64 {
        (hash >> 40) << 40 | UInt64(min(count, 255)) << 32
    }

    /// (first id, second id) of a piece that `ids` holds twice; the second is not indexed.
    private(set) var duplicate: (Int32, Int32)? = nil

    init(ids: [Int32], pool: UnsafePointer<UInt8>, offsets: UnsafePointer<Int32>) {
        var capacity = 16
        while capacity < ids.count * 2 { capacity <<= 1 }
        mask = capacity - 1
        slots = RawBuffer(repeating: 0, count: capacity)
        var bits = 1024
        while bits < ids.count * 8 { bits <<= 1 }
        filterMask = bits - 1
        filter = RawBuffer(repeating: 0, count: bits / 64)
        for id in ids {
            let start = Int(offsets[Int(id)])
            let length = Int(offsets[Int(id) + 1]) - start
            let hash = Self.hash(pool + start, length)
            let tag = Self.tag(hash, length)
            var slot = Int(truncatingIfNeeded: hash) & mask
            var isDuplicate = false
            while slots.base[slot] != 0 {
                let entry = slots.base[slot]
                if entry & 0xFFFF_FFFF_0000_0000 == tag {
                    let other = Int(entry & 0xFFFF_FFFF) - 1
                    let otherStart = Int(offsets[other])
                    if Int(offsets[other + 1]) - otherStart == length
                        && Self.equal(pool + otherStart, pool + start, length) {
                        if duplicate == nil { duplicate = (Int32(other), id) }
                        isDuplicate = true
                        break
                    }
                }
                slot = (slot + 1) & mask
            }
            if !isDuplicate { slots.base[slot] = tag | UInt64(id + 1) }
            let bit = Self.filterBit(hash, filterMask)
            filter.base[bit >> 6] |= 1 << UInt64(bit & 63)
        }
    }

    /// Bytes that must be readable past the end of any key handed to `lookupPadded`: keys are
    /// hashed and compared eight bytes at a time.
    static let padding = 8

    @inline(__always)
    private static func word(_ p: UnsafePointer<UInt8>, keeping count: Int) -> UInt64 {
        let w = UInt64(littleEndian: UnsafeRawPointer(p).loadUnaligned(as: UInt64.self))
        return count >= 8 ? w : w & ((1 << (UInt64(count) &* 8)) &- 1)
    }

    @inline(__always)
    static func hash(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> UInt64 {
        var h = UInt64(truncatingIfNeeded: count) &* 0x9E37_79B9_7F4A_7C15
        var p = bytes
        var remaining = count
        repeat {
            h = (h ^ word(p, keeping: remaining)) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 31
            p += 8
            remaining -= 8
        } while remaining > 0
        h = h &* 0x94D0_49BB_1331_11EB
        return h ^ (h >> 29)
    }

    @inline(__always)
    private static func equal(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ count: Int) -> Bool {
        var offset = 0
        while offset < count {
            if word(a + offset, keeping: count - offset) != word(b + offset, keeping: count - offset) {
                return false
            }
            offset += 8
        }
        return true
    }

    /// The id whose piece equals `bytes[0..<count]`, or -1. `bytes` must stay readable for
    /// `padding` bytes past `count` (the pool and encode's buffers are allocated so).
    @inline(__always)
    func lookupPadded(_ bytes: UnsafePointer<UInt8>, _ count: Int,
                      pool: UnsafePointer<UInt8>, offsets: UnsafePointer<Int32>) -> Int32 {
        let hash = Self.hash(bytes, count)
        let bit = Self.filterBit(hash, filterMask)
        if filter.base[bit >> 6] & (1 << UInt64(bit & 63)) == 0 { return -1 }
        let tag = Self.tag(hash, count)
        let slots = self.slots.base
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = slots[slot]
            if entry == 0 { return -1 }
            if entry & 0xFFFF_FFFF_0000_0000 == tag {
                let id = Int(entry & 0xFFFF_FFFF) - 1
                let start = Int(offsets[id])
                if Int(offsets[id + 1]) - start == count && Self.equal(pool + start, bytes, count) {
                    return Int32(id)
                }
            }
            slot = (slot + 1) & mask
        }
    }

    /// `lookupPadded` for keys without padding (copied first).
    func lookup(_ key: [UInt8], pool: UnsafePointer<UInt8>, offsets: UnsafePointer<Int32>) -> Int32 {
        let padded = key + [UInt8](repeating: 0, count: Self.padding)
        return padded.withUnsafeBufferPointer {
            lookupPadded($0.baseAddress!, key.count, pool: pool, offsets: offsets)
        }
    }
}

/// Longest-match trie over USER_DEFINED pieces (SentencePiece's PrefixMatcher, a Darts trie).
struct PrefixMatcher {
    /// Child of the root per first byte (-1: no user-defined piece starts with that byte).
    private let root: [Int32]
    /// Per node: its edges are edgeBytes/edgeChildren[edgeStart[n] ..< edgeStart[n + 1]].
    private let edgeStart: [Int32]
    private let edgeBytes: [UInt8]
    private let edgeChildren: [Int32]
    private let terminal: [Bool]
    let isEmpty: Bool

    init(pieces: [[UInt8]]) {
        // Build with per-node dictionaries, then flatten.
        var children: [[UInt8: Int32]] = [[:]]
        var isTerminal = [false]
        for piece in pieces where !piece.isEmpty {
            var node = 0
            for byte in piece {
                if let next = children[node][byte] {
                    node = Int(next)
                } else {
                    children.append([:])
                    isTerminal.append(false)
                    children[node][byte] = Int32(children.count - 1)
                    node = children.count - 1
                }
            }
            isTerminal[node] = true
        }
        var root = [Int32](repeating: -1, count: 256)
        for (byte, child) in children[0] { root[Int(byte)] = child }
        var starts: [Int32] = []
        var bytes: [UInt8] = []
        var targets: [Int32] = []
        for node in children {
            starts.append(Int32(bytes.count))
            for (byte, child) in node.sorted(by: { $0.key < $1.key }) {
                bytes.append(byte)
                targets.append(child)
            }
        }
        starts.append(Int32(bytes.count))
        self.root = root
        edgeStart = starts
        edgeBytes = bytes
        edgeChildren = targets
        terminal = isTerminal
        isEmpty = children.count == 1
    }

    /// Length of the longest user-defined piece that prefixes `text[0..<count]`, or 0.
    @inline(__always)
    func longestMatch(_ text: UnsafePointer<UInt8>, _ count: Int) -> Int {
        var node = root[Int(text[0])]
        if node < 0 { return 0 }
        return edgeStart.withUnsafeBufferPointer { starts in
            edgeBytes.withUnsafeBufferPointer { bytes in
                edgeChildren.withUnsafeBufferPointer { targets in
                    var best = 0
                    var length = 1
                    while true {
                        if terminal[Int(node)] { best = length }
                        if length == count { return best }
                        let byte = text[length]
                        var next: Int32 = -1
                        for e in Int(starts[Int(node)])..<Int(starts[Int(node) + 1]) where bytes[e] == byte {
                            next = targets[e]
                            break
                        }
                        if next < 0 { return best }
                        node = next
                        length += 1
                    }
                }
            }
        }
    }
}

/// Everything `SentencePieceTokenizer` reads from `tokenizer.model`, checked as SentencePiece's
/// `ModelInterface::InitializePieces` and `SentencePieceProcessor::Load` check it.
final class Vocabulary: @unchecked Sendable {  // immutable after init
    let count: Int
    let pool: UnsafePointer<UInt8>      // all piece bytes, concatenated
    let offsets: UnsafePointer<Int32>   // piece i = pool[offsets[i] ..< offsets[i + 1]]
    /// Piece scores mapped to integers of the same order (BPE merges compare these).
    let scoreKeys: UnsafePointer<UInt32>
    let types: UnsafePointer<UInt8>     // PieceType raw values
    /// SentencePiece decodes ids through id → piece → PieceToId, which prefers reserved pieces;
    /// canonical[i] is that round trip (i itself unless a reserved piece has the same bytes).
    let canonical: UnsafePointer<Int32>
    /// Byte value of a BYTE piece, -1 for other pieces.
    let byteValue: UnsafePointer<Int16>
    /// Id of `<0xNN>` for each byte (unk when the model has no byte pieces).
    let byteIDs: [Int32]
    let normalIndex: PieceIndex     // `pieces_`: NORMAL, USER_DEFINED, UNUSED
    let reservedIndex: PieceIndex   // `reserved_id_map_`: CONTROL, UNKNOWN, BYTE
    let userDefined: PrefixMatcher
    let maxNormalPieceLength: Int
    let hasUnused: Bool
    private let storage: [AnyObject]  // owners of the buffers above

    let unkID: Int32
    let bosID: Int
    let eosID: Int
    let padID: Int
    let unkSurface: [UInt8]
    let byteFallback: Bool
    let addDummyPrefix: Bool
    let removeExtraWhitespaces: Bool
    let escapeWhitespaces: Bool
    let treatWhitespaceAsSuffix: Bool

    init(data: [UInt8], path: String?) throws {
        let proto = try ModelProto(data: data, path: path)
        func invalid(_ reason: String) -> TokenizerError { .invalidModel(path: path, reason: reason) }

        guard proto.trainer.modelType == 2 else {
            let names: [UInt64: String] = [1: "unigram", 3: "word", 4: "char"]
            throw TokenizerError.unsupportedModelType(
                path: path, modelType: names[proto.trainer.modelType] ?? "type-\(proto.trainer.modelType)")
        }
        if proto.normalizer.precompiledCharsmapBytes > 0 {
            throw TokenizerError.unsupportedNormalizer(
                path: path, spec: "normalizer", rule: proto.normalizer.name,
                charsmapBytes: proto.normalizer.precompiledCharsmapBytes)
        }
        if let denormalizer = proto.denormalizer, denormalizer.precompiledCharsmapBytes > 0 {
            throw TokenizerError.unsupportedNormalizer(
                path: path, spec: "denormalizer", rule: denormalizer.name,
                charsmapBytes: denormalizer.precompiledCharsmapBytes)
        }
        let count = proto.pieceRanges.count
        guard count > 0 else { throw invalid("it has no pieces") }
        guard count < Int(Int32.max) else { throw invalid("too many pieces") }

        let total = proto.pieceRanges.reduce(0) { $0 + $1.count }
        let pool = RawBuffer<UInt8>(repeating: 0, count: total + PieceIndex.padding)
        let offsets = RawBuffer<Int32>(repeating: 0, count: count + 1)
        let scoreKeys = RawBuffer<UInt32>(repeating: 0, count: count)
        let types = RawBuffer<UInt8>(repeating: 0, count: count)
        let canonical = RawBuffer<Int32>(repeating: 0, count: count)
        let byteValue = RawBuffer<Int16>(repeating: -1, count: count)
        var position = 0
        data.withUnsafeBufferPointer { source in
            for (i, range) in proto.pieceRanges.enumerated() {
                offsets.base[i] = Int32(position)
                (pool.base + position).update(from: source.baseAddress! + range.lowerBound, count: range.count)
                position += range.count
            }
        }
        for i in 0..<count {
            let score = proto.scores[i] == 0 ? 0 : proto.scores[i]  // -0 ties with 0, as in C++
            let bits = score.bitPattern
            scoreKeys.base[i] = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
            types.base[i] = proto.types[i]
        }
        offsets.base[count] = Int32(position)
        func bytes(_ id: Int) -> [UInt8] {
            Array(UnsafeBufferPointer(start: pool.base + Int(offsets.base[id]),
                                      count: Int(offsets.base[id + 1] - offsets.base[id])))
        }

        // InitializePieces: non-empty, unique within each table, one <unk>, 256 byte pieces.
        var normal: [Int32] = []
        var reserved: [Int32] = []
        var userPieces: [[UInt8]] = []
        var unk: Int32 = -1
        var bytesFound = [Int32](repeating: -1, count: 256)
        var longest = 0
        var unused = false
        for i in 0..<count {
            let length = Int(offsets.base[i + 1] - offsets.base[i])
            guard length > 0 else { throw invalid("piece \(i) is empty") }
            let type = PieceType(rawValue: types.base[i])!
            switch type {
            case .normal, .userDefined, .unused:
                normal.append(Int32(i))
                longest = max(longest, length)
                if type == .userDefined { userPieces.append(bytes(i)) }
                if type == .unused { unused = true }
            case .control, .unknown, .byte:
                reserved.append(Int32(i))
            }
            if type == .unknown {
                guard unk < 0 else { throw invalid("it defines <unk> twice (ids \(unk) and \(i))") }
                unk = Int32(i)
            }
            if type == .byte {
                guard proto.trainer.byteFallback else {
                    throw invalid("byte piece \(Self.show(bytes(i))) found although byte_fallback is false")
                }
                guard let value = Self.byteOf(bytes(i)) else {
                    throw invalid("byte piece \(Self.show(bytes(i))) is not of the form <0xNN>")
                }
                bytesFound[Int(value)] = Int32(i)
                byteValue.base[i] = Int16(value)
            }
        }
        guard unk >= 0 else { throw invalid("it defines no <unk> piece") }
        if proto.trainer.byteFallback && bytesFound.contains(-1) {
            throw invalid("byte_fallback is set but not all 256 <0xNN> pieces exist")
        }
        let normalIndex = PieceIndex(ids: normal, pool: pool.base, offsets: offsets.base)
        let reservedIndex = PieceIndex(ids: reserved, pool: pool.base, offsets: offsets.base)
        for index in [normalIndex, reservedIndex] {
            if let (first, second) = index.duplicate {
                throw invalid("piece \(Self.show(bytes(Int(first)))) is defined twice (ids \(first) and \(second))")
            }
        }
        // A normal piece spelled like a reserved one decodes as the reserved one.
        for i in 0..<count { canonical.base[i] = Int32(i) }
        for id in reserved {
            let start = pool.base + Int(offsets.base[Int(id)])
            let length = Int(offsets.base[Int(id) + 1] - offsets.base[Int(id)])
            let shadowed = normalIndex.lookupPadded(start, length, pool: pool.base, offsets: offsets.base)
            if shadowed >= 0 { canonical.base[Int(shadowed)] = id }
        }

        // SentencePieceProcessor::bos_id() etc.: the named piece, if it has the right type.
        func special(_ name: [UInt8]?, _ fallback: String, _ type: PieceType) -> Int {
            let piece = (name?.isEmpty ?? true) ? Array(fallback.utf8) : name!
            let r = reservedIndex.lookup(piece, pool: pool.base, offsets: offsets.base)
            let n = normalIndex.lookup(piece, pool: pool.base, offsets: offsets.base)
            let id = r >= 0 ? r : n >= 0 ? n : unk
            return types.base[Int(id)] == type.rawValue ? Int(id) : -1
        }
        bosID = special(proto.trainer.bosPiece, "<s>", .control)
        eosID = special(proto.trainer.eosPiece, "</s>", .control)
        padID = special(proto.trainer.padPiece, "<pad>", .control)

        self.count = count
        self.pool = UnsafePointer(pool.base)
        self.offsets = UnsafePointer(offsets.base)
        self.scoreKeys = UnsafePointer(scoreKeys.base)
        self.types = UnsafePointer(types.base)
        self.canonical = UnsafePointer(canonical.base)
        self.byteValue = UnsafePointer(byteValue.base)
        storage = [pool, offsets, scoreKeys, types, canonical, byteValue]
        self.normalIndex = normalIndex
        self.reservedIndex = reservedIndex
        unkID = unk
        byteIDs = bytesFound.map { $0 >= 0 ? $0 : unk }
        userDefined = PrefixMatcher(pieces: userPieces)
        maxNormalPieceLength = longest
        hasUnused = unused
        byteFallback = proto.trainer.byteFallback
        unkSurface = proto.trainer.unkSurface ?? Array(" \u{2047} ".utf8)
        addDummyPrefix = proto.normalizer.addDummyPrefix
        removeExtraWhitespaces = proto.normalizer.removeExtraWhitespaces
        escapeWhitespaces = proto.normalizer.escapeWhitespaces
        treatWhitespaceAsSuffix = proto.trainer.treatWhitespaceAsSuffix
    }

    /// SentencePiece's `PieceToId`: reserved pieces first, then normal ones, else `<unk>`.
    /// `bytes` must be padded (see `PieceIndex.padding`).
    @inline(__always)
    func lookupID(_ bytes: UnsafePointer<UInt8>, _ length: Int) -> Int32 {
        let reserved = reservedIndex.lookupPadded(bytes, length, pool: pool, offsets: offsets)
        if reserved >= 0 { return reserved }
        let normal = normalIndex.lookupPadded(bytes, length, pool: pool, offsets: offsets)
        return normal >= 0 ? normal : unkID
    }

    /// Like `lookupID` but nil when the piece is absent.
    func find(_ piece: [UInt8]) -> Int? {
        guard !piece.isEmpty else { return nil }
        let reserved = reservedIndex.lookup(piece, pool: pool, offsets: offsets)
        if reserved >= 0 { return Int(reserved) }
        let normal = normalIndex.lookup(piece, pool: pool, offsets: offsets)
        return normal >= 0 ? Int(normal) : nil
    }

    func pieceBytes(_ id: Int) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: pool + Int(offsets[id]), count: Int(offsets[id + 1] - offsets[id]))
    }

    func type(_ id: Int) -> PieceType { PieceType(rawValue: types[id])! }

    /// `<0xNN>` (uppercase hex, as SentencePiece's ByteToPiece writes it) → NN.
    static func byteOf(_ piece: [UInt8]) -> UInt8? {
        guard piece.count == 6, piece[0] == UInt8(ascii: "<"), piece[1] == UInt8(ascii: "0"),
              piece[2] == UInt8(ascii: "x"), piece[5] == UInt8(ascii: ">") else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        guard let high = hex(piece[3]), let low = hex(piece[4]) else { return nil }
        return high << 4 | low
    }

    static func show(_ piece: [UInt8]) -> String { "'" + String(decoding: piece, as: UTF8.self) + "'" }
}
