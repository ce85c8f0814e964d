// The byte layout of one `Message`: a 32-byte frame, then the float payload and the message's JSON
// header, little-endian, in one contiguous buffer (one MPI transfer per message).
//
//   offset  size  field
//        0     4  magic "PGPL" (0x50 0x47 0x50 0x4C)
//        4     1  version (4)
//        5     1  kind (MessageKind raw value)
//        6     2  reserved, 0
//        8     4  float count         F   (UInt32)
//       12     4  header byte count   H
//       16     8  body checksum (UInt64, over bytes 32..<end)
//       24     4  frame checksum (UInt32, over bytes 0..<24)
//       28     4  reserved, 0
//       32    4F  floats  (IEEE-754 binary32)
//              H  header  (UTF-8 JSON of the kind's Codable header, Messages.swift)
//
// The floats start 4-byte aligned so they copy in bulk. Decoding checks everything before reading a
// payload byte: a corrupt, truncated or foreign buffer is a `TransportError.corruptMessage`, never a
// crash or an out-of-bounds read. Version 1 laid each kind's fields out by hand as Int64s, Int32s
// and bytes; version 2 replaced that with the JSON header; version 3 added beam search (job beams,
// slice and token-update beam fields) and the result's token log-probs; version 4 added the trace kind
// (`run --trace`: a worker's timeline chunks to the coordinator) and the failure kind (a worker's report
// to the coordinator of why it cannot go on).

public enum WireFormat {
    /// "PGPL" read as a little-endian UInt32.
    public static let magic: UInt32 = 0x4C50_4750
    /// Bumped whenever the layout or a kind's fields change; ranks of different versions refuse each other.
    public static let version: UInt8 = 4
    /// Bytes before the payload.
    public static let frameSize = 32

    /// The serialized size of `message` in bytes.
    public static func encodedSize(of message: Message) -> Int {
        frameSize + 4 * message.floats.count + message.header.count
    }

    /// `message` serialized into a new byte array.
    public static func encode(_ message: Message) -> [UInt8] {
        let size = encodedSize(of: message)
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            encode(message, into: UnsafeMutableRawBufferPointer(buffer))
            count = size
        }
    }

    /// Serializes `message` into `buffer`, whose size must be exactly `encodedSize(of: message)`.
    public static func encode(_ message: Message, into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count == encodedSize(of: message), "WireFormat.encode: buffer size mismatch")
        for count in [message.floats.count, message.header.count] {
            precondition(count <= Int(UInt32.max), "WireFormat.encode: a payload of \(count) elements is too large")
        }
        var offset = frameSize
        #if _endian(little)
        offset = copy(message.floats, into: buffer, at: offset)
        #else
        offset = copy(message.floats.map(\.bitPattern), into: buffer, at: offset)
        #endif
        offset = copy(message.header, into: buffer, at: offset)
        assert(offset == buffer.count)

        buffer.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: version, toByteOffset: 4, as: UInt8.self)
        buffer.storeBytes(of: message.kind.rawValue, toByteOffset: 5, as: UInt8.self)
        buffer.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        buffer.storeBytes(of: UInt32(message.floats.count).littleEndian, toByteOffset: 8, as: UInt32.self)
        buffer.storeBytes(of: UInt32(message.header.count).littleEndian, toByteOffset: 12, as: UInt32.self)
        let body = UnsafeRawBufferPointer(rebasing: buffer[frameSize...])
        buffer.storeBytes(of: checksum(body).littleEndian, toByteOffset: 16, as: UInt64.self)
        let frame = UnsafeRawBufferPointer(rebasing: buffer[0..<24])
        buffer.storeBytes(of: UInt32(truncatingIfNeeded: checksum(frame)).littleEndian, toByteOffset: 24,
                          as: UInt32.self)
        buffer.storeBytes(of: UInt32(0), toByteOffset: 28, as: UInt32.self)
    }

    /// The message in `bytes`; throws `TransportError.corruptMessage` if they are not exactly one message.
    public static func decode(_ bytes: [UInt8]) throws -> Message {
        try bytes.withUnsafeBytes { try decode($0) }
    }

    /// The message in `buffer`; throws `TransportError.corruptMessage` if it is not exactly one message.
    public static func decode(_ buffer: UnsafeRawBufferPointer) throws -> Message {
        func corrupt(_ reason: String) -> TransportError { .corruptMessage(source: nil, reason: reason) }
        guard buffer.count >= frameSize else {
            throw corrupt("\(buffer.count) bytes is shorter than the \(frameSize)-byte frame (truncated)")
        }
        func u32(_ offset: Int) -> UInt32 { UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
        let foundMagic = u32(0)
        guard foundMagic == magic else {
            throw corrupt("bad magic 0x\(String(foundMagic, radix: 16)); not a paligemma pipeline message")
        }
        let foundVersion = buffer[4]
        guard foundVersion == version else {
            throw corrupt("wire format version \(foundVersion), this build speaks version \(version)")
        }
        let frame = UnsafeRawBufferPointer(rebasing: buffer[0..<24])
        guard u32(24) == UInt32(truncatingIfNeeded: checksum(frame)) else {
            throw corrupt("frame checksum mismatch")
        }
        guard let kind = MessageKind(rawValue: buffer[5]) else { throw corrupt("unknown message kind \(buffer[5])") }
        guard buffer.loadUnaligned(fromByteOffset: 6, as: UInt16.self) == 0, u32(28) == 0 else {
            throw corrupt("reserved frame bytes are not zero")
        }
        let floatCount = Int(u32(8)), headerCount = Int(u32(12))
        let declared = frameSize + 4 * floatCount + headerCount  // < 2^35: no overflow
        guard declared == buffer.count else {
            throw corrupt("frame declares \(declared) bytes (\(floatCount) floats, a \(headerCount)-byte header) "
                          + "but the buffer has \(buffer.count)"
                          + (declared > buffer.count ? " (truncated)" : " (trailing bytes)"))
        }
        let body = UnsafeRawBufferPointer(rebasing: buffer[frameSize...])
        let storedChecksum = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        guard checksum(body) == storedChecksum else { throw corrupt("payload checksum mismatch") }

        var offset = frameSize
        #if _endian(little)
        let floats: [Float] = load(floatCount, from: buffer, at: &offset)
        #else
        let floats: [Float] = (load(floatCount, from: buffer, at: &offset) as [UInt32]).map(Float.init(bitPattern:))
        #endif
        let header: [UInt8] = load(headerCount, from: buffer, at: &offset)
        return Message(kind: kind, header: header, floats: floats)
    }

    // MARK: Sections

    #if _endian(little)
    // Little-endian host: the in-memory layout of Float and UInt8 arrays is the wire layout.
    private static func copy<T>(_ values: [T], into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        let byteCount = values.count * MemoryLayout<T>.size
        values.withUnsafeBytes { source in
            if byteCount > 0 { (buffer.baseAddress! + offset).copyMemory(from: source.baseAddress!, byteCount: byteCount) }
        }
        return offset + byteCount
    }

    private static func load<T>(_ count: Int, from buffer: UnsafeRawBufferPointer, at offset: inout Int) -> [T] {
        let start = offset
        offset += count * MemoryLayout<T>.size
        return [T](unsafeUninitializedCapacity: count) { values, initialized in
            if count > 0 {
                UnsafeMutableRawPointer(values.baseAddress!).copyMemory(from: buffer.baseAddress! + start,
                                                                        byteCount: count * MemoryLayout<T>.size)
            }
            initialized = count
        }
    }
    #else
    private static func copy<T: FixedWidthInteger>(_ values: [T], into buffer: UnsafeMutableRawBufferPointer,
                                                   at offset: Int) -> Int {
        let byteCount = values.count * MemoryLayout<T>.size
        for (i, value) in values.enumerated() {
            buffer.storeBytes(of: value.littleEndian, toByteOffset: offset + i * MemoryLayout<T>.size, as: T.self)
        }
        return offset + byteCount
    }

    private static func load<T: FixedWidthInteger>(_ count: Int, from buffer: UnsafeRawBufferPointer,
                                                   at offset: inout Int) -> [T] {
        let start = offset
        offset += count * MemoryLayout<T>.size
        return [T](unsafeUninitializedCapacity: count) { values, initialized in
            for i in 0..<count {
                values[i] = T(littleEndian: buffer.loadUnaligned(fromByteOffset: start + i * MemoryLayout<T>.size,
                                                                 as: T.self))
            }
            initialized = count
        }
    }
    #endif

    // MARK: Checksum

    /// A fast 64-bit mixing checksum (four independent lanes of multiply-rotate over 8-byte words).
    /// It catches framing bugs and corrupted bytes; it is not a cryptographic hash.
    static func checksum(_ data: UnsafeRawBufferPointer) -> UInt64 {
        let k1: UInt64 = 0x9E37_79B9_7F4A_7C15, k2: UInt64 = 0xBF58_476D_1CE4_E5B9, k3: UInt64 = 0x94D0_49BB_1331_11EB
        @inline(__always) func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }
        @inline(__always) func mix(_ lane: UInt64, _ word: UInt64) -> UInt64 { rotl(lane &+ word &* k2, 29) &* k1 }
        @inline(__always) func word(_ offset: Int) -> UInt64 {
            UInt64(littleEndian: data.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
        let n = data.count
        var a = k1, b = k2, c = k3, d = k1 ^ k3
        var i = 0
        while i + 32 <= n {
            a = mix(a, word(i)); b = mix(b, word(i + 8)); c = mix(c, word(i + 16)); d = mix(d, word(i + 24))
            i += 32
        }
        var h = rotl(a, 1) &+ rotl(b, 7) &+ rotl(c, 12) &+ rotl(d, 18) &+ UInt64(n) &* k3
        while i + 8 <= n {
            h = mix(h, word(i))
            i += 8
        }
        while i < n {
            h = mix(h, UInt64(data[i]) &+ 1)
            i += 1
        }
        h ^= h >> 31; h &*= k2; h ^= h >> 29; h &*= k3; h ^= h >> 32
        return h
    }
}
