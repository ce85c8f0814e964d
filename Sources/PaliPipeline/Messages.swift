// The typed messages of the pipeline: one struct per `MessageKind`. Each has a Codable header that
// travels as JSON; only embeddings and hidden states add a raw float payload. Decoding checks the
// kind, decodes the header (a missing or mistyped field is an error) and checks it against the payload
// size, so a message that passed the wire checks but does not fit its kind is a
// `TransportError.invalidMessage`.
//
//   kind        header                                                    floats
//   job         jobID, imagePath, promptIDs, parameters,                  -
//               [imageData (base64), morePrompts]
//   embeddings  jobID, tokens, width, promptIDs, parameters, measurements [tokens, width]
//   hidden      microBatch, step, width, sequences, admitted, released    [Σ newTokens, width]
//   tokens      microBatch, step, updates                                 -
//   result      jobID, tokenIDs, tokenLogprobs, logprob, failure, meas.   -
//   stats       sequence, isFinal, values                                 -
//   shutdown    code, reason                                              -
//   heartbeat   sequence, sentAt                                          -
//   trace       isFinal, host, clock, events (packed, base64)             -
//   failure     reason                                                    -
import Foundation

/// A typed pipeline message: converts to and from the `Message` envelope of its kind.
public protocol PipelineMessage: Sendable {
    associatedtype Header: Codable
    static var kind: MessageKind { get }
    /// What travels as JSON.
    var header: Header { get }
    /// The raw payload (empty for most kinds).
    var floats: [Float] { get }
    /// Rebuilds the message from a decoded header and its payload, checking that they fit together.
    init(header: Header, floats: [Float]) throws
}

extension PipelineMessage {
    /// The envelope to send.
    public var message: Message {
        Message(kind: Self.kind, header: MessageCoding.encode(header), floats: floats)
    }

    /// Reads `message`, which must be of `Self.kind`, and checks its header against its payload.
    public init(_ message: Message) throws {
        guard message.kind == Self.kind else {
            throw TransportError.invalidMessage(kind: Self.kind, reason: "got a \(message.kind) message")
        }
        let header: Header
        do {
            header = try MessageCoding.decoder.decode(Header.self, from: Data(message.header))
        } catch {
            throw TransportError.invalidMessage(kind: Self.kind, reason: "header does not decode: \(MessageCoding.describe(error))")
        }
        try self.init(header: header, floats: message.floats)
    }
}

/// A message that is all header: the struct itself is the Codable header.
public protocol HeaderOnlyMessage: PipelineMessage, Codable where Header == Self {
    /// Checks the decoded values (counts, ranges); the default accepts everything.
    func validate() throws
}

extension HeaderOnlyMessage {
    public var header: Self { self }
    public var floats: [Float] { [] }
    public func validate() throws {}

    public init(header: Self, floats: [Float]) throws {
        guard floats.isEmpty else {
            throw TransportError.invalidMessage(kind: Self.kind, reason: "\(floats.count) floats for a kind without a payload")
        }
        try header.validate()
        self = header
    }
}

// MARK: - What travels with a job

/// What a job's last decoder stage needs to sample it: the token budget and the sampling settings.
/// Chosen by the coordinator (`paligemma run`'s options, the seed mixed with the job id).
public struct JobParameters: Codable, Sendable, Equatable {
    public var maxNewTokens: Int
    public var temperature: Float
    public var topK: Int?
    public var topP: Float?
    /// The job's own seed (`--seed` mixed with the id).
    public var seed: UInt64
    /// Beam search with this many beams when above 1 (the sampling settings are then unused).
    public var beams: Int

    public init(maxNewTokens: Int, temperature: Float, topK: Int?, topP: Float?, seed: UInt64, beams: Int = 1) {
        self.maxNewTokens = maxNewTokens; self.temperature = temperature; self.topK = topK; self.topP = topP
        self.seed = seed; self.beams = beams
    }
}

/// What the pipeline learned about one job on its way: the vision rank sets the image's original size
/// (for boxes and masks) and its share of the batched vision forward; the last stage adds prefill and
/// decode times. The coordinator turns them into the record's task fields and timings.
public struct JobMeasurements: Codable, Sendable, Equatable {
    public var imageWidth: Int?
    public var imageHeight: Int?
    public var visionSeconds: Double?
    public var prefillSeconds: Double?
    public var decodeSeconds: Double?

    public init(imageWidth: Int? = nil, imageHeight: Int? = nil, visionSeconds: Double? = nil,
                prefillSeconds: Double? = nil, decodeSeconds: Double? = nil) {
        self.imageWidth = imageWidth; self.imageHeight = imageHeight; self.visionSeconds = visionSeconds
        self.prefillSeconds = prefillSeconds; self.decodeSeconds = decodeSeconds
    }
}

// MARK: - job

/// Coordinator → vision rank: one job to run.
public struct JobMessage: HeaderOnlyMessage, Equatable {
    public static let kind = MessageKind.job
    /// The coordinator's numeric id for the job (it keeps the manifest id).
    public var jobID: Int64
    /// The image file, as the vision rank should open it.
    public var imagePath: String
    /// Tokenized prompt (the coordinator tokenizes).
    public var promptIDs: [Int32]
    /// Passed through to the last stage.
    public var parameters: JobParameters
    /// The image's bytes, when the coordinator read them (a tar shard's member); `imagePath` then only
    /// names the image in messages. Absent: the vision rank opens `imagePath`.
    public var imageData: Data?
    /// Further prompts of the same image, each its own job: the image is encoded once and its embeddings
    /// go to stage 0 once per prompt. Absent for an image with one prompt.
    public var morePrompts: [JobPrompt]?

    public init(jobID: Int64, imagePath: String, promptIDs: [Int32], parameters: JobParameters,
                imageData: Data? = nil, morePrompts: [JobPrompt]? = nil) {
        self.jobID = jobID; self.imagePath = imagePath; self.promptIDs = promptIDs; self.parameters = parameters
        self.imageData = imageData; self.morePrompts = morePrompts
    }

    /// Every prompt of the image, the first one's job included.
    public var prompts: [JobPrompt] {
        [JobPrompt(jobID: jobID, promptIDs: promptIDs, parameters: parameters)] + (morePrompts ?? [])
    }
}

/// One prompt of a job's image: its own job id, tokens and sampling settings.
public struct JobPrompt: Codable, Sendable, Equatable {
    public var jobID: Int64
    public var promptIDs: [Int32]
    public var parameters: JobParameters

    public init(jobID: Int64, promptIDs: [Int32], parameters: JobParameters) {
        self.jobID = jobID; self.promptIDs = promptIDs; self.parameters = parameters
    }
}

// MARK: - embeddings

/// Vision rank → decoder stage 0: the image's embeddings (after the projector) and the prompt.
public struct EmbeddingsMessage: PipelineMessage, Equatable {
    public static let kind = MessageKind.embeddings

    public struct Header: Codable, Sendable, Equatable {
        public var jobID: Int64
        /// Image tokens (256 at 224 px).
        public var tokens: Int
        /// Decoder width (hidden size).
        public var width: Int
        public var promptIDs: [Int32]
        public var parameters: JobParameters
        public var measurements: JobMeasurements
    }

    public var header: Header
    /// Row-major [tokens, width].
    public var embeddings: [Float]
    public var floats: [Float] { embeddings }

    public var jobID: Int64 { header.jobID }
    public var tokens: Int { header.tokens }
    public var width: Int { header.width }
    public var promptIDs: [Int32] { header.promptIDs }
    public var parameters: JobParameters { header.parameters }
    public var measurements: JobMeasurements { header.measurements }

    public init(jobID: Int64, tokens: Int, width: Int, embeddings: [Float], promptIDs: [Int32],
                parameters: JobParameters, measurements: JobMeasurements) {
        precondition(embeddings.count == tokens * width, "EmbeddingsMessage: embeddings must be [tokens, width]")
        header = Header(jobID: jobID, tokens: tokens, width: width, promptIDs: promptIDs, parameters: parameters,
                        measurements: measurements)
        self.embeddings = embeddings
    }

    public init(header: Header, floats: [Float]) throws {
        let tokens = try MessageCoding.count(header.tokens, "tokens", kind: Self.kind)
        let width = try MessageCoding.count(header.width, "width", kind: Self.kind)
        guard tokens.multipliedReportingOverflow(by: width) == (floats.count, false) else {
            throw TransportError.invalidMessage(kind: Self.kind, reason: "\(floats.count) floats for "
                                                + "[\(tokens), \(width)] embeddings")
        }
        self.header = header
        embeddings = floats
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.message == rhs.message }
}

// MARK: - hidden

/// One sequence's share of a micro-batch travelling between stages.
public struct SequenceSlice: Codable, Sendable, Equatable {
    /// The sequence (job) id.
    public var id: Int64
    /// Tokens of this sequence already in each stage's KV cache (the position of its first new token).
    public var position: Int
    /// Tokens of this sequence in this message: prefill length on the first step, then 1 per decode step.
    public var newTokens: Int
    /// Length of the bidirectional prefix (image + prompt tokens); later positions attend causally.
    public var prefixLength: Int
    /// Beam search (nil otherwise): the rows are one new token for each of `parents.count` beams, all at
    /// `position`; beam k continues the cache that beam `parents[k]` had after the previous step
    /// (the first step after the prefill continues the prefilled sequence: every parent is 0).
    public var parents: [Int]?

    public init(id: Int64, position: Int, newTokens: Int, prefixLength: Int, parents: [Int]? = nil) {
        self.id = id; self.position = position; self.newTokens = newTokens; self.prefixLength = prefixLength
        self.parents = parents
    }
}

/// A sequence entering the pipeline in a step: what the last stage needs to sample and report it.
public struct AdmittedSequence: Codable, Sendable, Equatable {
    public var id: Int64
    public var parameters: JobParameters
    public var measurements: JobMeasurements

    public init(id: Int64, parameters: JobParameters, measurements: JobMeasurements) {
        self.id = id; self.parameters = parameters; self.measurements = measurements
    }
}

/// Stage s → stage s+1: a micro-batch's hidden states after stage s's layers.
public struct HiddenMessage: PipelineMessage, Equatable {
    public static let kind = MessageKind.hidden

    public struct Header: Codable, Sendable, Equatable {
        public var microBatch: Int64
        /// Decode step of this micro-batch (0 = prefill).
        public var step: Int64
        public var width: Int
        public var sequences: [SequenceSlice]
        /// Sequences whose prefill is in this step, for the last stage.
        public var admitted: [AdmittedSequence]
        /// Sequences that finished: the middle stages drop their caches.
        public var released: [Int64]
    }

    public var header: Header
    /// Row-major [Σ newTokens, width], sequences in order.
    public var hidden: [Float]
    public var floats: [Float] { hidden }

    public var microBatch: Int64 { header.microBatch }
    public var step: Int64 { header.step }
    public var width: Int { header.width }
    public var sequences: [SequenceSlice] { header.sequences }
    public var admitted: [AdmittedSequence] { header.admitted }
    public var released: [Int64] { header.released }

    public init(microBatch: Int64, step: Int64, width: Int, sequences: [SequenceSlice], hidden: [Float],
                admitted: [AdmittedSequence] = [], released: [Int64] = []) {
        precondition(hidden.count == sequences.reduce(0) { $0 + $1.newTokens } * width,
                     "HiddenMessage: hidden must be [Σ newTokens, width]")
        header = Header(microBatch: microBatch, step: step, width: width, sequences: sequences, admitted: admitted,
                        released: released)
        self.hidden = hidden
    }

    public init(header: Header, floats: [Float]) throws {
        let width = try MessageCoding.count(header.width, "width", kind: Self.kind)
        var total = 0
        for slice in header.sequences {
            _ = try MessageCoding.count(slice.position, "position", kind: Self.kind)
            _ = try MessageCoding.count(slice.prefixLength, "prefixLength", kind: Self.kind)
            total += try MessageCoding.count(slice.newTokens, "newTokens", kind: Self.kind)
            if let parents = slice.parents {
                guard parents.count == slice.newTokens, parents.allSatisfy({ $0 >= 0 && $0 < parents.count }) else {
                    throw TransportError.invalidMessage(kind: Self.kind, reason: "sequence \(slice.id): beam parents "
                                                        + "\(parents) for \(slice.newTokens) new tokens")
                }
            }
        }
        guard total.multipliedReportingOverflow(by: width) == (floats.count, false) else {
            throw TransportError.invalidMessage(kind: Self.kind, reason: "\(floats.count) floats for "
                                                + "[\(total) tokens, \(width)] hidden states")
        }
        self.header = header
        hidden = floats
    }

    /// Total new tokens (rows of `hidden`).
    public var totalTokens: Int { sequences.reduce(0) { $0 + $1.newTokens } }

    /// The rows of `hidden` that belong to `sequences[index]`.
    public func rows(ofSequence index: Int) -> Range<Int> {
        let start = sequences[..<index].reduce(0) { $0 + $1.newTokens }
        return start..<(start + sequences[index].newTokens)
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.message == rhs.message }
}

// MARK: - tokens

/// The token the last stage sampled for one sequence.
public struct TokenUpdate: Codable, Sendable, Equatable {
    public var id: Int64
    /// The next token (beam search: of the first beam).
    public var token: Int32
    /// True when the sequence ended (EOS, max tokens, beam search done): stage 0 frees its slot.
    public var finished: Bool
    /// Beam search (nil otherwise): the next token of each running beam, and the beam of the previous
    /// step that each continues (`SequenceSlice.parents` of the next step).
    public var beamTokens: [Int32]?
    public var parents: [Int]?

    public init(id: Int64, token: Int32, finished: Bool, beamTokens: [Int32]? = nil, parents: [Int]? = nil) {
        self.id = id; self.token = token; self.finished = finished; self.beamTokens = beamTokens; self.parents = parents
    }
}

/// Last stage → stage 0: the next token of every sequence of a micro-batch.
public struct TokensMessage: HeaderOnlyMessage, Equatable {
    public static let kind = MessageKind.tokens
    public var microBatch: Int64
    public var step: Int64
    public var updates: [TokenUpdate]

    public init(microBatch: Int64, step: Int64, updates: [TokenUpdate]) {
        self.microBatch = microBatch; self.step = step; self.updates = updates
    }
}

// MARK: - result

/// Last stage (or a vision rank, for a bad image) → coordinator: one finished job.
public struct ResultMessage: HeaderOnlyMessage, Equatable {
    /// Why a job has no text: a record's error (`RecordError` of PaliBatch) as it travels.
    public struct Failure: Codable, Sendable, Equatable {
        /// One of PaliBatch's `RecordErrorKind`s.
        public var kind: String
        public var message: String

        public init(kind: String, message: String) { self.kind = kind; self.message = message }
    }

    public static let kind = MessageKind.result
    public var jobID: Int64
    /// Generated token ids (without the prompt); empty on failure.
    public var tokenIDs: [Int32]
    /// Per token, its log-probability under the model (log-softmax of the logits it was chosen from).
    public var tokenLogprobs: [Double]
    /// The answer's score: Σ tokenLogprobs, or for beam search the sequence score (Σ / length^1.0).
    public var logprob: Double?
    /// Set when the job failed.
    public var failure: Failure?
    public var measurements: JobMeasurements

    public init(jobID: Int64, tokenIDs: [Int32] = [], tokenLogprobs: [Double] = [], logprob: Double? = nil,
                failure: Failure? = nil, measurements: JobMeasurements = JobMeasurements()) {
        self.jobID = jobID; self.tokenIDs = tokenIDs; self.tokenLogprobs = tokenLogprobs; self.logprob = logprob
        self.failure = failure; self.measurements = measurements
    }

    public func validate() throws {
        guard tokenLogprobs.isEmpty || tokenLogprobs.count == tokenIDs.count else {
            throw TransportError.invalidMessage(kind: Self.kind, reason: "\(tokenLogprobs.count) token log-probs for "
                                                + "\(tokenIDs.count) tokens")
        }
    }
}

// MARK: - stats

/// Any rank → coordinator: counters and busy times for `stats.json`.
public struct StatsMessage: HeaderOnlyMessage, Equatable {
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
}

// MARK: - shutdown

/// Coordinator → every rank: stop. `code` 0 means the work is done (drain, send final stats, exit 0).
public struct ShutdownMessage: HeaderOnlyMessage, Equatable {
    public static let kind = MessageKind.shutdown
    public var code: Int64
    public var reason: String

    public init(code: Int64 = 0, reason: String = "") {
        self.code = code; self.reason = reason
    }
}

// MARK: - heartbeat

/// Any rank → any rank: "I am alive". Ranks that exchange no other traffic for a while send these.
public struct HeartbeatMessage: HeaderOnlyMessage, Equatable {
    public static let kind = MessageKind.heartbeat
    public var sequence: Int64
    /// The sender's `MonotonicClock.now()` (only comparable with the sender's own clock).
    public var sentAt: Double

    public init(sequence: Int64, sentAt: Double) {
        self.sequence = sequence; self.sentAt = sentAt
    }
}

// MARK: - trace

/// Worker → coordinator (`run --trace`): a chunk of the sender's timeline, in the sender's own
/// `MonotonicClock` (nanoseconds), and what the coordinator needs to put it on rank 0's clock. The
/// events travel packed (`Event.size` bytes each, little-endian; base64 in the JSON): decoding a JSON
/// array per field cost more than the rest of tracing.
public struct TraceMessage: HeaderOnlyMessage, Equatable {
    public static let kind = MessageKind.trace

    /// One span: `kind` from `start` for `duration` ns with arguments `a`, `b`, `c` (their meaning depends
    /// on the kind: PaliRun's `TraceEventKind`).
    public struct Event: Equatable, Sendable {
        public var start: Int64
        public var duration: Int64
        public var kind: UInt8
        public var a: Int32
        public var b: Int32
        public var c: Int32

        public init(start: Int64, duration: Int64, kind: UInt8, a: Int32 = 0, b: Int32 = 0, c: Int32 = 0) {
            self.start = start; self.duration = duration; self.kind = kind; self.a = a; self.b = b; self.c = c
        }

        /// start Int64, duration Int64, kind UInt32, a, b, c Int32.
        public static let size = 32
    }

    /// True for the last chunk a rank sends (at shutdown).
    public var isFinal: Bool
    /// The sender's host name (ranks on the host of rank 0 share its clock).
    public var host: String
    /// The smallest `receive time − sentAt` of the heartbeats the sender got from rank 0 (seconds,
    /// sender's clock minus rank 0's clock plus the latency); nil before any came.
    public var clock: Double?
    /// The events, packed (see `Event.size`).
    public var events: Data

    public init(isFinal: Bool, host: String, clock: Double?, events: [Event]) {
        self.isFinal = isFinal; self.host = host; self.clock = clock
        var bytes = [UInt8](repeating: 0, count: events.count * Event.size)
        bytes.withUnsafeMutableBytes { raw in
            for (i, e) in events.enumerated() {
                let o = i * Event.size
                raw.storeBytes(of: e.start.littleEndian, toByteOffset: o, as: Int64.self)
                raw.storeBytes(of: e.duration.littleEndian, toByteOffset: o + 8, as: Int64.self)
                raw.storeBytes(of: UInt32(e.kind).littleEndian, toByteOffset: o + 16, as: UInt32.self)
                raw.storeBytes(of: e.a.littleEndian, toByteOffset: o + 20, as: Int32.self)
                raw.storeBytes(of: e.b.littleEndian, toByteOffset: o + 24, as: Int32.self)
                raw.storeBytes(of: e.c.littleEndian, toByteOffset: o + 28, as: Int32.self)
            }
        }
        self.events = Data(bytes)
    }

    public var count: Int { events.count / Event.size }

    /// The events, unpacked.
    public var unpacked: [Event] {
        events.withUnsafeBytes { raw in
            (0..<count).map { i in
                let o = i * Event.size
                return Event(start: Int64(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: Int64.self)),
                             duration: Int64(littleEndian: raw.loadUnaligned(fromByteOffset: o + 8, as: Int64.self)),
                             kind: UInt8(truncatingIfNeeded: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: o + 16, as: UInt32.self))),
                             a: Int32(littleEndian: raw.loadUnaligned(fromByteOffset: o + 20, as: Int32.self)),
                             b: Int32(littleEndian: raw.loadUnaligned(fromByteOffset: o + 24, as: Int32.self)),
                             c: Int32(littleEndian: raw.loadUnaligned(fromByteOffset: o + 28, as: Int32.self)))
            }
        }
    }

    public func validate() throws {
        guard events.count % Event.size == 0 else {
            throw TransportError.invalidMessage(kind: Self.kind, reason: "\(events.count) bytes of events is not a "
                                                + "multiple of \(Event.size)")
        }
        let bad = events.withUnsafeBytes { raw in
            (0..<count).first { i in
                Int64(littleEndian: raw.loadUnaligned(fromByteOffset: i * Event.size + 8, as: Int64.self)) < 0
                    || UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * Event.size + 16, as: UInt32.self)) > 255
            }
        }
        if let bad {
            throw TransportError.invalidMessage(kind: Self.kind, reason: "event \(bad) has a negative duration or a kind over 255")
        }
    }
}

// MARK: - failure

/// Worker → coordinator: why this rank cannot go on (a silent peer, a failed MPI call, an error of its
/// role). The coordinator writes it into stats.json (outcome "failed") and ends the job; the worker
/// aborts on its own only if that does not happen within a few seconds.
public struct FailureMessage: HeaderOnlyMessage, Equatable {
    public static let kind = MessageKind.failure
    /// What failed, naming the ranks involved with their roles and hosts.
    public var reason: String

    public init(reason: String) { self.reason = reason }
}

// MARK: - Coding

/// The JSON coders of message headers: sorted keys (the same message is the same bytes), and
/// non-finite numbers written as strings rather than refused.
enum MessageCoding {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf",
                                                                      nan: "nan")
        return encoder
    }()

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf",
                                                                        nan: "nan")
        return decoder
    }()

    static func encode<T: Encodable>(_ header: T) -> [UInt8] {
        do {
            return [UInt8](try encoder.encode(header))
        } catch {
            preconditionFailure("a message header does not encode: \(error)")
        }
    }

    /// A non-negative count, at most Int32.max (so products of counts cannot overflow).
    static func count(_ value: Int, _ name: String, kind: MessageKind) throws -> Int {
        guard value >= 0, value <= Int(Int32.max) else {
            throw TransportError.invalidMessage(kind: kind, reason: "\(name) = \(value) is out of range 0...\(Int32.max)")
        }
        return value
    }

    /// A decoding error in a few words: what is wrong and at which key.
    static func describe(_ error: Error) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error as? DecodingError {
        case .keyNotFound(let key, let context)?:
            return "missing field \(([path(context)] + [key.stringValue]).filter { !$0.isEmpty }.joined(separator: "."))"
        case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?:
            return "field \(path(context)) has the wrong type"
        case .dataCorrupted(let context)?:
            return path(context).isEmpty ? "not valid JSON" : "field \(path(context)) is not valid"
        default:
            return "\(error)"
        }
    }
}
