// What travels between ranks: a kind, a few Int64 header fields, and three payload arrays.
//
// `Message` is the untyped envelope the transports move and `WireFormat` serializes. The typed
// structs in Messages.swift (`JobMessage`, `HiddenMessage`, ...) give each kind's fields names and
// validate them; the pipeline builds and reads those, never raw `fields` indices.

/// The kinds of message the pipeline sends (docs/pipeline.md describes each one).
/// The raw value is on the wire and is also the MPI tag.
public enum MessageKind: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    /// Coordinator → vision rank: one job (id, image path, prompt ids, sampling parameters JSON).
    case job = 1
    /// Vision rank → decoder stage 0: image embeddings [tokens, width] + prompt ids + parameters.
    case embeddings = 2
    /// Stage s → stage s+1: a micro-batch's hidden states [Σ new tokens, width].
    case hidden = 3
    /// Last stage → stage 0: the next token of each sequence and whether it finished.
    case tokens = 4
    /// Last stage, or a vision rank on error → coordinator: a finished job.
    case result = 5
    /// Any rank → coordinator: named counters and timings.
    case stats = 6
    /// Coordinator → every rank: drain and exit (or stop at once, with a nonzero code).
    case shutdown = 7
    /// Any rank → any rank: "I am alive" (see `PeerMonitor`).
    case heartbeat = 8

    public var description: String {
        switch self {
        case .job: return "job"
        case .embeddings: return "embeddings"
        case .hidden: return "hidden"
        case .tokens: return "tokens"
        case .result: return "result"
        case .stats: return "stats"
        case .shutdown: return "shutdown"
        case .heartbeat: return "heartbeat"
        }
    }
}

/// One message: header (`kind` + `fields`) and payload (`floats`, `ints`, `bytes`).
/// The meaning of `fields` and of each payload array depends on `kind` (see Messages.swift).
public struct Message: Sendable, Equatable {
    public var kind: MessageKind
    /// Kind-specific Int64 header fields: ids, micro-batch, step, counts, per-sequence entries.
    public var fields: [Int64]
    /// Hidden states or embeddings, row-major.
    public var floats: [Float]
    /// Token ids, or small integer flags.
    public var ints: [Int32]
    /// UTF-8 text and JSON blobs.
    public var bytes: [UInt8]

    public init(kind: MessageKind, fields: [Int64] = [], floats: [Float] = [], ints: [Int32] = [],
                bytes: [UInt8] = []) {
        self.kind = kind; self.fields = fields; self.floats = floats; self.ints = ints; self.bytes = bytes
    }

    /// Equality compares floats by bit pattern, so a NaN payload equals itself after a round trip.
    public static func == (lhs: Message, rhs: Message) -> Bool {
        lhs.kind == rhs.kind && lhs.fields == rhs.fields && lhs.ints == rhs.ints && lhs.bytes == rhs.bytes
            && lhs.floats.count == rhs.floats.count
            && zip(lhs.floats, rhs.floats).allSatisfy { $0.bitPattern == $1.bitPattern }
    }
}

extension Message: CustomStringConvertible {
    public var description: String {
        "\(kind)(fields: \(fields.count), floats: \(floats.count), ints: \(ints.count), bytes: \(bytes.count))"
    }
}
