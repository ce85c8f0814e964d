// A pipeline message: WireFormat.decode of the bytes as they came (header, checksums, section sizes),
// then the same bytes with their checksums ignored (re-encoded, so the fuzzer need not forge them)
// read as the typed message of their kind, and that typed message's round trip.
// Input layout: the wire layout (WireFormat.swift, version 4); the seeds are real encoded messages.
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
    case .trace: roundTrip(TraceMessage.self, message)
    case .failure: roundTrip(FailureMessage.self, message)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let raw = UnsafeRawBufferPointer(start: data, count: size)
    if let message = try? WireFormat.decode(raw) {
        readTyped(message)
    }
    // The same bytes with the checksums ignored: frame (32 bytes, wire format version 4), floats, header.
    guard size >= WireFormat.frameSize, let kind = MessageKind(rawValue: data[5]) else { return 0 }
    func u32(_ offset: Int) -> Int { Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))) }
    let floatCount = u32(8), headerCount = u32(12)
    guard WireFormat.frameSize + 4 * floatCount + headerCount == size else { return 0 }
    let floats = (0..<floatCount).map {
        Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: WireFormat.frameSize + 4 * $0, as: UInt32.self)))
    }
    let header = Array(raw[(WireFormat.frameSize + 4 * floatCount)...])
    let message = Message(kind: kind, header: header, floats: floats)
    guard let decoded = try? WireFormat.decode(WireFormat.encode(message)), decoded == message else {
        fatalError("WireFormat does not decode its own encoding of \(message.kind)")
    }
    readTyped(decoded)
    return 0
}
