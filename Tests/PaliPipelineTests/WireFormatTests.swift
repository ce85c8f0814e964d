// Wire format: every kind round-trips, random envelopes round-trip, and every corrupt, truncated or
// foreign buffer is an error (never a crash).
import Foundation
import Testing
@testable import PaliPipeline

/// One sample of every typed message, with payloads that exercise the edges (unicode, NaN, empty).
let sampleParameters = JobParameters(maxNewTokens: 8, temperature: 0.7, topK: 40, topP: 0.9, seed: .max)
let greedyParameters = JobParameters(maxNewTokens: 1, temperature: 0, topK: nil, topP: nil, seed: 0)

let typedSamples: [any PipelineMessage] = [
    JobMessage(jobID: 12, imagePath: "data/ß/猫.png", promptIDs: [2, 5, 1000], parameters: sampleParameters),
    JobMessage(jobID: -1, imagePath: "", promptIDs: [], parameters: greedyParameters),
    EmbeddingsMessage(jobID: 3, tokens: 4, width: 3, embeddings: (0..<12).map(Float.init), promptIDs: [9],
                      parameters: sampleParameters,
                      measurements: JobMeasurements(imageWidth: 640, imageHeight: 480, visionSeconds: 0.125)),
    EmbeddingsMessage(jobID: 3, tokens: 0, width: 2048, embeddings: [], promptIDs: [], parameters: greedyParameters,
                      measurements: JobMeasurements()),
    HiddenMessage(microBatch: 2, step: 0, width: 2,
                  sequences: [SequenceSlice(id: 5, position: 0, newTokens: 3, prefixLength: 3),
                              SequenceSlice(id: 6, position: 10, newTokens: 1, prefixLength: 8)],
                  hidden: [1, 2, 3, 4, 5, 6, .nan, -.infinity],
                  admitted: [AdmittedSequence(id: 5, parameters: sampleParameters,
                                              measurements: JobMeasurements(imageWidth: 1, imageHeight: 2))],
                  released: [1, 2]),
    HiddenMessage(microBatch: 0, step: 5, width: 16, sequences: [], hidden: []),
    HiddenMessage(microBatch: 1, step: 3, width: 1,
                  sequences: [SequenceSlice(id: 7, position: 12, newTokens: 3, prefixLength: 9, parents: [0, 0, 2])],
                  hidden: [1, 2, 3],
                  admitted: [AdmittedSequence(id: 7, parameters: JobParameters(maxNewTokens: 9, temperature: 0, topK: nil,
                                                                               topP: nil, seed: 1, beams: 3),
                                              measurements: JobMeasurements())]),
    TokensMessage(microBatch: 1, step: 4, updates: [TokenUpdate(id: 5, token: 1, finished: true),
                                                    TokenUpdate(id: 6, token: 257_151, finished: false)]),
    TokensMessage(microBatch: 1, step: 4, updates: []),
    TokensMessage(microBatch: 0, step: 2, updates: [TokenUpdate(id: 7, token: 5, finished: false, beamTokens: [5, 9, 5],
                                                                parents: [1, 0, 0])]),
    ResultMessage(jobID: 7, tokenIDs: [5, 1], tokenLogprobs: [-0.25, -1e-9], logprob: -0.125),
    ResultMessage(jobID: 9, tokenIDs: [100, 200, 1],
                  measurements: JobMeasurements(imageWidth: 3, imageHeight: 4, visionSeconds: 0.5, prefillSeconds: 1e-7,
                                                decodeSeconds: 1.25)),
    ResultMessage(jobID: 9, failure: .init(kind: "unreadable_image", message: "bad \"file\"\n")),
    StatsMessage(sequence: 3, isFinal: true, values: ["busy_seconds": 3.5, "tokens": 1e6, "é": -0.0]),
    ShutdownMessage(code: 0, reason: "done"),
    ShutdownMessage(code: 2, reason: "rank 3 is silent"),
    HeartbeatMessage(sequence: 77, sentAt: 12345.678),
    TraceMessage(isFinal: false, host: "node-ß", clock: -0.25,
                 events: [.init(start: 1, duration: 0, kind: 1, a: 0, b: 3, c: .max),
                          .init(start: -9_000_000_000_000, duration: 5, kind: 255, a: -1, b: 4, c: .min)]),
    TraceMessage(isFinal: true, host: "", clock: nil, events: []),
    FailureMessage(reason: "rank 1 (vision 0 of replica 0) on node7 has been silent for 24 s; \"é\"\n"),
]

private func roundTrip<M: PipelineMessage & Equatable>(_ sample: M) throws {
    let envelope = sample.message
    #expect(envelope.kind == M.kind)
    let bytes = WireFormat.encode(envelope)
    #expect(bytes.count == WireFormat.encodedSize(of: envelope))
    let decoded = try WireFormat.decode(bytes)
    #expect(decoded == envelope)
    // (Messages with floats compare their envelopes, bit for bit: NaN ≠ NaN under Float's ==.)
    #expect(try M(decoded) == sample)
}

@Test(arguments: typedSamples.indices)
func everyKindRoundTrips(index: Int) throws {
    switch typedSamples[index] {
    case let m as JobMessage: try roundTrip(m)
    case let m as EmbeddingsMessage: try roundTrip(m)
    case let m as HiddenMessage: try roundTrip(m)
    case let m as TokensMessage: try roundTrip(m)
    case let m as ResultMessage: try roundTrip(m)
    case let m as StatsMessage: try roundTrip(m)
    case let m as ShutdownMessage: try roundTrip(m)
    case let m as HeartbeatMessage: try roundTrip(m)
    case let m as TraceMessage: try roundTrip(m)
    case let m as FailureMessage: try roundTrip(m)
    default: Issue.record("sample \(index) has no round-trip case")
    }
}

@Test func samplesCoverEveryKind() {
    #expect(Set(typedSamples.map { type(of: $0).kind }) == Set(MessageKind.allCases))
}

@Test func randomEnvelopesRoundTrip() throws {
    var random = TestRandom(seed: 1)
    for _ in 0..<300 {
        let message = random.message(maxFloats: random.int(10) == 0 ? 200_000 : 300)
        let bytes = WireFormat.encode(message)
        #expect(bytes.count == WireFormat.encodedSize(of: message))
        #expect(try WireFormat.decode(bytes) == message)
    }
}

@Test func frameLayout() {
    let message = Message(kind: .tokens, header: Array("{}".utf8), floats: [1.5, 2])
    let bytes = WireFormat.encode(message)
    #expect(Array(bytes[0..<4]) == Array("PGPL".utf8))
    #expect(bytes[4] == WireFormat.version && WireFormat.version == 4)
    #expect(bytes[5] == MessageKind.tokens.rawValue)
    #expect(bytes.count == 32 + 2 * 4 + 2)
    // Little-endian counts, the floats right after the frame, then the header.
    #expect(Array(bytes[8..<16]) == [2, 0, 0, 0, 2, 0, 0, 0])
    #expect(Array(bytes[32..<36]) == [0, 0, 0xC0, 0x3F])  // 1.5f
    #expect(Array(bytes[40...]) == Array("{}".utf8))
}

@Test func headersAreJSONWithSortedKeys() {
    let message = TokensMessage(microBatch: 1, step: 2, updates: [TokenUpdate(id: 3, token: 4, finished: true)]).message
    #expect(String(decoding: message.header, as: UTF8.self)
            == #"{"microBatch":1,"step":2,"updates":[{"finished":true,"id":3,"token":4}]}"#)
    #expect(message.floats.isEmpty)
}

private func corruptReason(_ bytes: [UInt8]) -> String? {
    do {
        _ = try WireFormat.decode(bytes)
        return nil
    } catch let TransportError.corruptMessage(_, reason) {
        return reason
    } catch {
        return "unexpected error \(error)"
    }
}

@Test func everyTruncationAndTrailingByteThrows() {
    let bytes = WireFormat.encode(Message(kind: .hidden, header: [5, 6, 7], floats: [1, 2]))
    for length in 0..<bytes.count {
        let reason = corruptReason(Array(bytes[0..<length]))
        #expect(reason != nil, "a \(length)-byte prefix decoded")
        #expect(reason?.hasPrefix("unexpected") != true)
    }
    #expect(corruptReason(bytes + [0])?.contains("trailing") == true)
    #expect(corruptReason(Array(bytes.dropLast()))?.contains("truncated") == true)
}

@Test func everySingleBitFlipThrows() {
    let bytes = WireFormat.encode(Message(kind: .result, header: Array("hello, wire".utf8), floats: [0.5, 3]))
    for index in bytes.indices {
        for bit in 0..<8 {
            var flipped = bytes
            flipped[index] ^= UInt8(1 << bit)
            let reason = corruptReason(flipped)
            #expect(reason != nil && reason?.hasPrefix("unexpected") != true, "flip of bit \(bit) in byte \(index)")
        }
    }
}

@Test func foreignAndGarbageBuffersThrow() {
    var random = TestRandom(seed: 99)
    for _ in 0..<2_000 {
        let garbage = (0..<random.int(200)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        #expect(corruptReason(garbage) != nil)
    }
    #expect(corruptReason(Array("GET / HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\n\r\n".utf8))?.contains("magic") == true)
    var newer = WireFormat.encode(Message(kind: .heartbeat))
    newer[4] = WireFormat.version + 1
    #expect(corruptReason(newer)?.contains("version") == true)
}

@Test func headerCountsCannotPointPastTheBuffer() {
    // A header that claims 2^32-1 floats with a matching checksum must fail on the length, not read memory.
    var bytes = WireFormat.encode(Message(kind: .hidden))
    bytes.replaceSubrange(8..<12, with: [0xFF, 0xFF, 0xFF, 0xFF])
    let checksum = bytes.withUnsafeBytes { UInt32(truncatingIfNeeded: WireFormat.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<24]))) }
    withUnsafeBytes(of: checksum.littleEndian) { bytes.replaceSubrange(24..<28, with: $0) }
    #expect(corruptReason(bytes)?.contains("truncated") == true)
}

// MARK: Typed validation

private func invalidReason<M: PipelineMessage>(_ type: M.Type, _ message: Message) -> String? {
    do {
        _ = try M(message)
        return nil
    } catch let TransportError.invalidMessage(kind, reason) {
        #expect(kind == M.kind)
        return reason
    } catch {
        return "unexpected error \(error)"
    }
}

@Test func typedDecodingChecksHeadersAgainstPayloads() {
    var hidden = HiddenMessage(microBatch: 1, step: 0, width: 2,
                               sequences: [SequenceSlice(id: 1, position: 0, newTokens: 2, prefixLength: 2)],
                               hidden: [1, 2, 3, 4]).message
    hidden.floats.removeLast()
    #expect(invalidReason(HiddenMessage.self, hidden)?.contains("floats") == true)

    var embeddings = EmbeddingsMessage(jobID: 1, tokens: 2, width: 2, embeddings: [1, 2, 3, 4], promptIDs: [],
                                       parameters: greedyParameters, measurements: JobMeasurements()).message
    embeddings.header = Array(String(decoding: embeddings.header, as: UTF8.self)
        .replacingOccurrences(of: #""width":2"#, with: #""width":1099511627776"#).utf8)
    #expect(invalidReason(EmbeddingsMessage.self, embeddings)?.contains("range") == true)

    // A header that is not JSON, lacks a field or has one of the wrong type.
    var tokens = TokensMessage(microBatch: 0, step: 0, updates: [TokenUpdate(id: 1, token: 2, finished: false)]).message
    tokens.header = Array("{".utf8)
    #expect(invalidReason(TokensMessage.self, tokens)?.contains("not valid JSON") == true)
    tokens.header = Array(#"{"microBatch":0,"updates":[]}"#.utf8)
    #expect(invalidReason(TokensMessage.self, tokens)?.contains("missing field step") == true)
    tokens.header = Array(#"{"microBatch":0,"step":0,"updates":[{"id":1,"token":2,"finished":2}]}"#.utf8)
    #expect(invalidReason(TokensMessage.self, tokens)?.contains("wrong type") == true)

    // Beam parents that do not match the rows, or point outside the beams.
    for parents in [[0, 0], [0, 0, 3], [-1, 0, 0]] {
        let beams = HiddenMessage(microBatch: 0, step: 2, width: 1,
                                  sequences: [SequenceSlice(id: 1, position: 5, newTokens: 3, prefixLength: 4, parents: parents)],
                                  hidden: [1, 2, 3]).message
        #expect(invalidReason(HiddenMessage.self, beams)?.contains("beam parents") == true, "\(parents)")
    }
    // Token log-probs for another number of tokens.
    let scores = ResultMessage(jobID: 1, tokenIDs: [4, 5], tokenLogprobs: [-1], logprob: -1).message
    #expect(invalidReason(ResultMessage.self, scores)?.contains("log-probs") == true)

    // Trace events: packed bytes that are not whole events, a negative duration; and they unpack as packed.
    let events: [TraceMessage.Event] = [.init(start: 5, duration: 7, kind: 4, a: 1, b: 2, c: 3), .init(start: -1, duration: 0, kind: 6)]
    #expect(TraceMessage(isFinal: true, host: "h", clock: nil, events: events).unpacked == events)
    var ragged = TraceMessage(isFinal: false, host: "h", clock: nil, events: events)
    ragged.events.removeLast()
    #expect(invalidReason(TraceMessage.self, ragged.message)?.contains("not a multiple of 32") == true)
    let backwards = TraceMessage(isFinal: false, host: "h", clock: nil, events: [.init(start: 1, duration: -1, kind: 1)])
    #expect(invalidReason(TraceMessage.self, backwards.message)?.contains("negative duration") == true)

    // Floats on a kind without a payload.
    var job = JobMessage(jobID: 1, imagePath: "a.jpg", promptIDs: [], parameters: greedyParameters).message
    job.floats = [1]
    #expect(invalidReason(JobMessage.self, job)?.contains("without a payload") == true)

    // The wrong kind.
    #expect(invalidReason(ShutdownMessage.self, HeartbeatMessage(sequence: 1, sentAt: 0).message)?
        .contains("heartbeat") == true)
}

@Test func hiddenRowsFollowSequences() {
    let message = HiddenMessage(microBatch: 0, step: 0, width: 1,
                                sequences: [SequenceSlice(id: 1, position: 0, newTokens: 3, prefixLength: 3),
                                            SequenceSlice(id: 2, position: 0, newTokens: 0, prefixLength: 0),
                                            SequenceSlice(id: 3, position: 4, newTokens: 1, prefixLength: 3)],
                                hidden: [0, 1, 2, 3])
    #expect(message.totalTokens == 4)
    #expect(message.rows(ofSequence: 0) == 0..<3)
    #expect(message.rows(ofSequence: 1) == 3..<3)
    #expect(message.rows(ofSequence: 2) == 3..<4)
}

/// The fuzzer's seeds (Fuzz/corpus/wire, written by Fuzz/make-seeds.py) are real messages of today's wire
/// format: each decodes, checksums included, and reads as the typed message of its kind. (They were
/// version 2 until the fuzz build broke on two new kinds: this keeps them in step with `version`.)
@Test func fuzzSeedsAreMessagesOfThisWireFormat() throws {
    let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus/wire")
    let names = try FileManager.default.contentsOfDirectory(atPath: corpus.path).filter { $0.hasSuffix(".bin") }.sorted()
    #expect(Set(names.map { String($0.dropLast(4)) }) == Set(MessageKind.allCases.map(\.description)), "one seed per kind")
    for name in names {
        let message = try WireFormat.decode([UInt8](Data(contentsOf: corpus.appendingPathComponent(name))))
        #expect(message.kind.description + ".bin" == name)
        switch message.kind {
        case .job: _ = try JobMessage(message)
        case .embeddings: _ = try EmbeddingsMessage(message)
        case .hidden: _ = try HiddenMessage(message)
        case .tokens: _ = try TokensMessage(message)
        case .result: _ = try ResultMessage(message)
        case .stats: _ = try StatsMessage(message)
        case .shutdown: _ = try ShutdownMessage(message)
        case .heartbeat: _ = try HeartbeatMessage(message)
        case .trace: _ = try TraceMessage(message)
        case .failure: _ = try FailureMessage(message)
        }
    }
}
