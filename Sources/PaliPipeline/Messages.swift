// The typed messages of the pipeline: one struct per `MessageKind`, each mapping named fields onto
// a `Message` envelope and back. Decoding validates every count against the payload sizes, so a
// message that passed the wire checks but does not fit its kind is a `TransportError.invalidMessage`.
//
// Field layouts (f = Message.fields, in order):
//   job         f: jobID, pathBytes                          ints: prompt ids   bytes: path ++ parameters JSON
//   embeddings  f: jobID, tokens, width                      floats: [tokens, width]  ints: prompt ids
//                                                            bytes: parameters JSON
//   hidden      f: microBatch, step, width, n, n × (id, position, newTokens, prefixLength)
//               floats: [Σ newTokens, width]                 bytes: metadata (opaque, may be empty)
//   tokens      f: microBatch, step, n, n × id               ints: n tokens ++ n finished flags (0/1)
//   result      f: jobID, status, errorBytes, t, t × (nameBytes, value bits)
//               ints: token ids                              bytes: error JSON ++ timing names
//   stats       f: sequence, isFinal, t, t × (nameBytes, value bits)      bytes: value names
//   shutdown    f: code                                      bytes: reason (UTF-8)
//   heartbeat   f: sequence, sentAt bits

/// A typed pipeline message: converts to and from the `Message` envelope of its kind.
public protocol PipelineMessage: Sendable {
    static var kind: MessageKind { get }
    /// The envelope to send.
    var message: Message { get }
    /// Reads `message`, which must be of `Self.kind`, and checks its fields against its payloads.
    init(_ message: Message) throws
}

// MARK: - job

/// Coordinator → vision rank: one job to run.
public struct JobMessage: PipelineMessage, Equatable {
    public static let kind = MessageKind.job
    /// The coordinator's numeric id for the job (it keeps the manifest id).
    public var jobID: Int64
    /// The image file, as the vision rank should open it.
    public var imagePath: String
    /// Tokenized prompt (the coordinator tokenizes).
    public var promptIDs: [Int32]
    /// Sampling parameters as JSON (max tokens, temperature, seed, ...), passed through to the last stage.
    public var parametersJSON: String

    public init(jobID: Int64, imagePath: String, promptIDs: [Int32], parametersJSON: String) {
        self.jobID = jobID; self.imagePath = imagePath; self.promptIDs = promptIDs
        self.parametersJSON = parametersJSON
    }

    public var message: Message {
        let path = Array(imagePath.utf8)
        return Message(kind: Self.kind, fields: [jobID, Int64(path.count)], ints: promptIDs,
                       bytes: path + Array(parametersJSON.utf8))
    }

    public init(_ message: Message) throws {
        var reader = try FieldReader(message, kind: Self.kind)
        jobID = try reader.next("jobID")
        let pathBytes = try reader.count("pathBytes", limit: message.bytes.count)
        try reader.finish()
        imagePath = try utf8(message.bytes[0..<pathBytes], "image path", kind: Self.kind)
        parametersJSON = try utf8(message.bytes[pathBytes...], "parameters JSON", kind: Self.kind)
        promptIDs = message.ints
    }
}

// MARK: - embeddings

/// Vision rank → decoder stage 0: the image's embeddings (after the projector) and the prompt.
public struct EmbeddingsMessage: PipelineMessage, Equatable {
    public static let kind = MessageKind.embeddings
    public var jobID: Int64
    /// Image tokens (256 at 224 px).
    public var tokens: Int
    /// Decoder width (hidden size).
    public var width: Int
    /// Row-major [tokens, width].
    public var embeddings: [Float]
    public var promptIDs: [Int32]
    public var parametersJSON: String

    public init(jobID: Int64, tokens: Int, width: Int, embeddings: [Float], promptIDs: [Int32],
                parametersJSON: String) {
        precondition(embeddings.count == tokens * width, "EmbeddingsMessage: embeddings must be [tokens, width]")
        self.jobID = jobID; self.tokens = tokens; self.width = width; self.embeddings = embeddings
        self.promptIDs = promptIDs; self.parametersJSON = parametersJSON
    }

    public var message: Message {
        Message(kind: Self.kind, fields: [jobID, Int64(tokens), Int64(width)], floats: embeddings,
                ints: promptIDs, bytes: Array(parametersJSON.utf8))
    }

    public init(_ message: Message) throws {
        var reader = try FieldReader(message, kind: Self.kind)
        jobID = try reader.next("jobID")
        tokens = try reader.count("tokens")
        width = try reader.count("width")
        try reader.finish()
        guard tokens.multipliedReportingOverflow(by: width) == (message.floats.count, false) else {
            throw TransportError.invalidMessage(kind: Self.kind, reason: "\(message.floats.count) floats for "
                                                + "[\(tokens), \(width)] embeddings")
        }
        embeddings = message.floats
        promptIDs = message.ints
        parametersJSON = try utf8(message.bytes[...], "parameters JSON", kind: Self.kind)
    }
}

// MARK: - hidden

/// One sequence's share of a micro-batch travelling between stages.
public struct SequenceSlice: Sendable, Equatable {
    /// The sequence (job) id.
    public var id: Int64
    /// Tokens of this sequence already in each stage's KV cache (the position of its first new token).
    public var position: Int
    /// Tokens of this sequence in this message: prefill length on the first step, then 1 per decode step.
    public var newTokens: Int
    /// Length of the bidirectional prefix (image + prompt tokens); later positions attend causally.
    public var prefixLength: Int

    public init(id: Int64, position: Int, newTokens: Int, prefixLength: Int) {
        self.id = id; self.position = position; self.newTokens = newTokens; self.prefixLength = prefixLength
    }
}

/// Stage s → stage s+1: a micro-batch's hidden states after stage s's layers.
public struct HiddenMessage: PipelineMessage, Equatable {
    public static let kind = MessageKind.hidden
    public var microBatch: Int64
    /// Decode step of this micro-batch (0 = prefill).
    public var step: Int64
    public var width: Int
    public var sequences: [SequenceSlice]
    /// Row-major [Σ newTokens, width], sequences in order.
    public var hidden: [Float]
    /// Opaque bytes for the pipeline (e.g. sampling parameters JSON of sequences entering the pipeline).
    public var metadata: [UInt8]

    public init(microBatch: Int64, step: Int64, width: Int, sequences: [SequenceSlice], hidden: [Float],
                metadata: [UInt8] = []) {
        precondition(hidden.count == sequences.reduce(0) { $0 + $1.newTokens } * width,
                     "HiddenMessage: hidden must be [Σ newTokens, width]")
        self.microBatch = microBatch; self.step = step; self.width = width; self.sequences = sequences
        self.hidden = hidden; self.metadata = metadata
    }

    /// Total new tokens (rows of `hidden`).
    public var totalTokens: Int { sequences.reduce(0) { $0 + $1.newTokens } }

    /// The rows of `hidden` that belong to `sequences[index]`.
    public func rows(ofSequence index: Int) -> Range<Int> {
        let start = sequences[..<index].reduce(0) { $0 + $1.newTokens }
        return start..<(start + sequences[index].newTokens)
    }

    public var message: Message {
        var fields: [Int64] = [microBatch, step, Int64(width), Int64(sequences.count)]
        fields.reserveCapacity(4 + 4 * sequences.count)
        for s in sequences {
            fields += [s.id, Int64(s.position), Int64(s.newTokens), Int64(s.prefixLength)]
        }
        return Message(kind: Self.kind, fields: fields, floats: hidden, bytes: metadata)
    }

    public init(_ message: Message) throws {
        var reader = try FieldReader(message, kind: Self.kind)
        microBatch = try reader.next("microBatch")
        step = try reader.next("step")
        width = try reader.count("width")
        let n = try reader.count("sequence count", limit: (message.fields.count - 4) / 4)
        var total = 0
        sequences = try (0..<n).map { _ in
            let slice = SequenceSlice(id: try reader.next("sequence id"), position: try reader.count("position"),
                                      newTokens: try reader.count("newTokens"),
                                      prefixLength: try reader.count("prefixLength"))
            total += slice.newTokens
            return slice
        }
        try reader.finish()
        guard total.multipliedReportingOverflow(by: width) == (message.floats.count, false) else {
            throw TransportError.invalidMessage(kind: Self.kind, reason: "\(message.floats.count) floats for "
                                                + "[\(total) tokens, \(width)] hidden states")
        }
        hidden = message.floats
        metadata = message.bytes
    }
}

// MARK: - tokens

/// The token the last stage sampled for one sequence.
public struct TokenUpdate: Sendable, Equatable {
    public var id: Int64
    public var token: Int32
    /// True when the sequence ended (EOS, max tokens): stage 0 frees its slot.
    public var finished: Bool

    public init(id: Int64, token: Int32, finished: Bool) {
        self.id = id; self.token = token; self.finished = finished
    }
}

/// Last stage → stage 0: the next token of every sequence of a micro-batch.
public struct TokensMessage: PipelineMessage, Equatable {
    public static let kind = MessageKind.tokens
    public var microBatch: Int64
    public var step: Int64
    public var updates: [TokenUpdate]

    public init(microBatch: Int64, step: Int64, updates: [TokenUpdate]) {
        self.microBatch = microBatch; self.step = step; self.updates = updates
    }

    public var message: Message {
        Message(kind: Self.kind, fields: [microBatch, step, Int64(updates.count)] + updates.map(\.id),
                ints: updates.map(\.token) + updates.map { $0.finished ? 1 : 0 })
    }

    public init(_ message: Message) throws {
        var reader = try FieldReader(message, kind: Self.kind)
        microBatch = try reader.next("microBatch")
        step = try reader.next("step")
        let n = try reader.count("update count", limit: message.fields.count - 3)
        let ids = try (0..<n).map { _ in try reader.next("sequence id") }
        try reader.finish()
        guard message.ints.count == 2 * n else {
            throw TransportError.invalidMessage(kind: Self.kind, reason: "\(message.ints.count) ints for \(n) "
                                                + "tokens and \(n) finished flags")
        }
        updates = try (0..<n).map { i in
            let flag = message.ints[n + i]
            guard flag == 0 || flag == 1 else {
                throw TransportError.invalidMessage(kind: Self.kind, reason: "finished flag \(flag) is not 0 or 1")
            }
            return TokenUpdate(id: ids[i], token: message.ints[i], finished: flag == 1)
        }
    }
}

// MARK: - result

/// Whether a job produced text or an error record.
public enum ResultStatus: Int64, Sendable {
    case ok = 0
    case error = 1
}

/// Last stage (or a vision rank, for a bad image) → coordinator: one finished job.
public struct ResultMessage: PipelineMessage, Equatable {
    public static let kind = MessageKind.result
    public var jobID: Int64
    public var status: ResultStatus
    /// Generated token ids (without the prompt); empty on error.
    public var tokenIDs: [Int32]
    /// `{"kind": ..., "message": ...}` when `status == .error`, else empty.
    public var errorJSON: String
    /// Named durations in seconds (e.g. "vision", "prefill", "decode", "queue").
    public var timings: [String: Double]

    public init(jobID: Int64, status: ResultStatus, tokenIDs: [Int32] = [], errorJSON: String = "",
                timings: [String: Double] = [:]) {
        self.jobID = jobID; self.status = status; self.tokenIDs = tokenIDs; self.errorJSON = errorJSON
        self.timings = timings
    }

    public var message: Message {
        let error = Array(errorJSON.utf8)
        let (fields, names) = NamedValues.encode(timings)
        return Message(kind: Self.kind, fields: [jobID, status.rawValue, Int64(error.count)] + fields,
                       ints: tokenIDs, bytes: error + names)
    }

    public init(_ message: Message) throws {
        var reader = try FieldReader(message, kind: Self.kind)
        jobID = try reader.next("jobID")
        let rawStatus = try reader.next("status")
        guard let status = ResultStatus(rawValue: rawStatus) else {
            throw TransportError.invalidMessage(kind: Self.kind, reason: "unknown status \(rawStatus)")
        }
        self.status = status
        let errorBytes = try reader.count("errorBytes", limit: message.bytes.count)
        errorJSON = try utf8(message.bytes[0..<errorBytes], "error JSON", kind: Self.kind)
        timings = try NamedValues.decode(&reader, names: message.bytes[errorBytes...])
        tokenIDs = message.ints
    }
}

// MARK: - stats

/// Any rank → coordinator: counters and busy times for `stats.json`.
public struct StatsMessage: PipelineMessage, Equatable {
    public static let kind = MessageKind.stats
    /// The sender's report number (reports may be periodic).
    public var sequence: Int64
    /// True for the last report a rank sends before it exits.
    public var isFinal: Bool
    /// Named values ("busy_seconds", "tokens", "images", ...).
    public var values: [String: Double]

    public init(sequence: Int64, isFinal: Bool, values: [String: Double]) {
        self.sequence = sequence; self.isFinal = isFinal; self.values = values
    }

    public var message: Message {
        let (fields, names) = NamedValues.encode(values)
        return Message(kind: Self.kind, fields: [sequence, isFinal ? 1 : 0] + fields, bytes: names)
    }

    public init(_ message: Message) throws {
        var reader = try FieldReader(message, kind: Self.kind)
        sequence = try reader.next("sequence")
        let flag = try reader.next("isFinal")
        guard flag == 0 || flag == 1 else {
            throw TransportError.invalidMessage(kind: Self.kind, reason: "isFinal flag \(flag) is not 0 or 1")
        }
        isFinal = flag == 1
        values = try NamedValues.decode(&reader, names: message.bytes[...])
    }
}

// MARK: - shutdown

/// Coordinator → every rank: stop. `code` 0 means the work is done (drain, send final stats, exit 0).
public struct ShutdownMessage: PipelineMessage, Equatable {
    public static let kind = MessageKind.shutdown
    public var code: Int64
    public var reason: String

    public init(code: Int64 = 0, reason: String = "") {
        self.code = code; self.reason = reason
    }

    public var message: Message { Message(kind: Self.kind, fields: [code], bytes: Array(reason.utf8)) }

    public init(_ message: Message) throws {
        var reader = try FieldReader(message, kind: Self.kind)
        code = try reader.next("code")
        try reader.finish()
        reason = try utf8(message.bytes[...], "reason", kind: Self.kind)
    }
}

// MARK: - heartbeat

/// Any rank → any rank: "I am alive". Ranks that exchange no other traffic for a while send these.
public struct HeartbeatMessage: PipelineMessage, Equatable {
    public static let kind = MessageKind.heartbeat
    public var sequence: Int64
    /// The sender's `MonotonicClock.now()` (only comparable with the sender's own clock).
    public var sentAt: Double

    public init(sequence: Int64, sentAt: Double) {
        self.sequence = sequence; self.sentAt = sentAt
    }

    public var message: Message {
        Message(kind: Self.kind, fields: [sequence, Int64(bitPattern: sentAt.bitPattern)])
    }

    public init(_ message: Message) throws {
        var reader = try FieldReader(message, kind: Self.kind)
        sequence = try reader.next("sequence")
        sentAt = Double(bitPattern: UInt64(bitPattern: try reader.next("sentAt")))
        try reader.finish()
    }

    public static func == (lhs: HeartbeatMessage, rhs: HeartbeatMessage) -> Bool {
        lhs.sequence == rhs.sequence && lhs.sentAt.bitPattern == rhs.sentAt.bitPattern
    }
}

// MARK: - Decoding helpers

/// Reads `Message.fields` in order, turning every short or out-of-range field into an error.
struct FieldReader {
    let fields: [Int64]
    let kind: MessageKind
    private(set) var index = 0

    init(_ message: Message, kind: MessageKind) throws {
        guard message.kind == kind else {
            throw TransportError.invalidMessage(kind: kind, reason: "got a \(message.kind) message")
        }
        self.fields = message.fields
        self.kind = kind
    }

    mutating func next(_ name: String) throws -> Int64 {
        guard index < fields.count else {
            throw TransportError.invalidMessage(kind: kind, reason: "missing field \(name) (#\(index))")
        }
        defer { index += 1 }
        return fields[index]
    }

    /// A non-negative count, at most `limit` (and at most Int32.max, so products of counts cannot overflow).
    mutating func count(_ name: String, limit: Int = Int(Int32.max)) throws -> Int {
        let value = try next(name)
        guard value >= 0, value <= Int64(min(limit, Int(Int32.max))) else {
            throw TransportError.invalidMessage(kind: kind, reason: "\(name) = \(value) is out of range 0...\(limit)")
        }
        return Int(value)
    }

    func finish() throws {
        guard index == fields.count else {
            throw TransportError.invalidMessage(kind: kind, reason: "\(fields.count - index) unexpected extra fields")
        }
    }
}

/// Strict UTF-8: invalid bytes are an error, not replaced.
func utf8(_ bytes: ArraySlice<UInt8>, _ name: String, kind: MessageKind) throws -> String {
    let text = String(decoding: bytes, as: UTF8.self)
    guard text.utf8.elementsEqual(bytes) else {
        throw TransportError.invalidMessage(kind: kind, reason: "\(name) is not valid UTF-8")
    }
    return text
}

/// `[String: Double]` as fields `t, t × (nameBytes, value bits)` plus the names' UTF-8 concatenated,
/// sorted by name so the encoding is deterministic.
enum NamedValues {
    static func encode(_ values: [String: Double]) -> (fields: [Int64], names: [UInt8]) {
        var fields: [Int64] = [Int64(values.count)]
        var names: [UInt8] = []
        for (name, value) in values.sorted(by: { $0.key < $1.key }) {
            let bytes = Array(name.utf8)
            fields += [Int64(bytes.count), Int64(bitPattern: value.bitPattern)]
            names += bytes
        }
        return (fields, names)
    }

    /// Reads the rest of the fields as named values; `names` must be used up exactly.
    static func decode(_ reader: inout FieldReader, names: ArraySlice<UInt8>) throws -> [String: Double] {
        let n = try reader.count("value count", limit: (reader.fields.count - reader.index) / 2)
        var values: [String: Double] = [:]
        var start = names.startIndex
        for _ in 0..<n {
            let length = try reader.count("name length", limit: names.endIndex - start)
            let name = try utf8(names[start..<(start + length)], "value name", kind: reader.kind)
            start += length
            let value = Double(bitPattern: UInt64(bitPattern: try reader.next("value")))
            guard values.updateValue(value, forKey: name) == nil else {
                throw TransportError.invalidMessage(kind: reader.kind, reason: "value \(name) appears twice")
            }
        }
        try reader.finish()
        guard start == names.endIndex else {
            throw TransportError.invalidMessage(kind: reader.kind, reason: "\(names.endIndex - start) unused name bytes")
        }
        return values
    }
}
