// A pipeline message: WireFormat.decode of the bytes as they came (header, checksums, section sizes),
// then the same bytes with their checksums ignored (re-encoded, so the fuzzer need not forge them)
// read as the typed message of their kind, and that typed message's round trip.
// Input layout: the wire layout (WireFormat.swift); the seeds are real encoded messages.
import PaliPipeline

func roundTrip<T: PipelineMessage>(_ type: T.Type, _ message: Message) {
    guard let typed = try? T(message) else { return }
    let envelope = typed.message
    guard let again = try? T(envelope) else { fatalError("\(T.self) does not decode its own encoding") }
    precondition(again.message == envelope, "\(T.self) changes on a second round trip")
}

func readTyped(_ message: Message) {
    switch message.kind {
    case .job: roundTrip(JobMessage.self, message)
    case .embeddings: roundTrip(EmbeddingsMessage.self, message)
    case .hidden: roundTrip(HiddenMessage.self, message)
    case .tokens: roundTrip(TokensMessage.self, message)
    case .result: roundTrip(ResultMessage.self, message)
    case .stats: roundTrip(StatsMessage.self, message)
    case .shutdown: roundTrip(ShutdownMessage.self, message)
    case .heartbeat: roundTrip(HeartbeatMessage.self, message)
    }
}

func load<T>(_ raw: UnsafeRawBufferPointer, _ offset: inout Int, _ count: Int, as: T.Type) -> [T] {
    defer { offset += count * MemoryLayout<T>.size }
    return (0..<count).map { raw.loadUnaligned(fromByteOffset: offset + $0 * MemoryLayout<T>.size, as: T.self) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let raw = UnsafeRawBufferPointer(start: data, count: size)
    if let message = try? WireFormat.decode(raw) {
        readTyped(message)
    }
    guard size >= WireFormat.headerSize, let kind = MessageKind(rawValue: data[5]) else { return 0 }
    func u32(_ offset: Int) -> Int { Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))) }
    let fieldCount = u32(8), floatCount = u32(12), intCount = u32(16), byteCount = u32(20)
    guard WireFormat.headerSize + 8 * fieldCount + 4 * floatCount + 4 * intCount + byteCount == size else { return 0 }
    var offset = WireFormat.headerSize
    let fields = load(raw, &offset, fieldCount, as: Int64.self).map(Int64.init(littleEndian:))
    let floats = load(raw, &offset, floatCount, as: UInt32.self).map { Float(bitPattern: UInt32(littleEndian: $0)) }
    let ints = load(raw, &offset, intCount, as: Int32.self).map(Int32.init(littleEndian:))
    let bytes = load(raw, &offset, byteCount, as: UInt8.self)
    let message = Message(kind: kind, fields: fields, floats: floats, ints: ints, bytes: bytes)
    guard let decoded = try? WireFormat.decode(WireFormat.encode(message)), decoded == message else {
        fatalError("WireFormat does not decode its own encoding of \(message.kind)")
    }
    readTyped(decoded)
    return 0
}
