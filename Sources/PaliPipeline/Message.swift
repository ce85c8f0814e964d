// What travels between ranks: a kind, a header (the JSON of the kind's Codable header struct) and,
// for the two kinds that carry activations, a raw float payload.
//
// `Message` is the untyped envelope the transports move and `WireFormat` serializes. The typed
// structs in Messages.swift (`JobMessage`, `HiddenMessage`, ...) say what each kind holds; the pipeline
// builds and reads those, never raw header bytes.

/// The kinds of message the pipeline sends (docs/pipeline.md describes each one).
/// The raw value is on the wire and is also the MPI tag.
public enum MessageKind: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    /// Coordinator → vision rank: one job (id, image path, prompt ids, sampling parameters).
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
    /// Any worker → coordinator: a chunk of the rank's timeline (`run --trace`), for the trace file.
    case trace = 9
    /// Worker → coordinator: this rank cannot go on (a silent peer, a failed transfer); the coordinator
    /// keeps what is whole, writes stats.json with the reason and ends the job.
    case failure = 10

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
        case .trace: return "trace"
        case .failure: return "failure"
        }
    }
}

/// One message: `kind`, its typed header as UTF-8 JSON, and the floats of hidden states or embeddings.
public struct Message: Sendable, Equatable {
    public var kind: MessageKind
    /// The JSON of the kind's header struct (see Messages.swift).
    public var header: [UInt8]
    /// Hidden states or embeddings, row-major; empty for the other kinds.
    public var floats: [Float]

    public init(kind: MessageKind, header: [UInt8] = [], floats: [Float] = []) {
        self.kind = kind; self.header = header; self.floats = floats
    }

    /// Equality compares floats by bit pattern, so a NaN payload equals itself after a round trip.
    public static func == (lhs: Message, rhs: Message) -> Bool {
        lhs.kind == rhs.kind && lhs.header == rhs.header && lhs.floats.count == rhs.floats.count
            && zip(lhs.floats, rhs.floats).allSatisfy { $0.bitPattern == $1.bitPattern }
    }
}

extension Message: CustomStringConvertible {
    public var description: String {
        "\(kind)(header: \(header.count) bytes, floats: \(floats.count))"
    }
}
