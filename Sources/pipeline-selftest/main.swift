// A rank program for the real-mpirun tests of PaliPipeline (Tests/PaliPipelineTests/MPIRunTests.swift).
// It is not part of the product; run it by hand as
//
//   mpirun --oversubscribe --bind-to none -np 3 .build/debug/pipeline-selftest ring
//
// Modes:
//   ring       messages of every kind and varied sizes (up to 4 MiB) go around the ring 0 → 1 → … → 0;
//              every rank checks each one against the expected content and order, every rank also
//              streams numbered heartbeats to rank 0 (FIFO per pair), and rank 0 collects reports.
//              Then every rank sends 4 MiB to every other rank and flushes before receiving (no deadlock).
//              Exit 0 when everything arrived intact. Also works without mpirun (a singleton of size 1).
//   crash      rank 1 exits(1) without MPI_Finalize; the others wait for messages. mpirun must end
//              the job with a nonzero status.
//   hang S     rank 1 stays alive but silent; rank 0 watches its peers with a PeerMonitor and aborts
//              the job, naming rank 1, after S seconds of silence.

import Foundation
import PaliPipeline

let arguments = CommandLine.arguments
let mode = arguments.count > 1 ? arguments[1] : "ring"

func log(_ text: String) {
    FileHandle.standardError.write(Data("pipeline-selftest: \(text)\n".utf8))
}

let transport: MPITransport
do {
    transport = try MPITransport(flushTimeout: 20)
} catch {
    log("cannot start MPI: \(error)")
    exit(2)
}
let rank = transport.rank, size = transport.size

// MARK: - Deterministic test messages

/// SplitMix64: the same stream on every rank.
struct Stream {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    mutating func float() -> Float { Float(Int64(bitPattern: next()) >> 40) / 65_536 }
}

let selftestParameters = JobParameters(maxNewTokens: 8, temperature: 0.5, topK: 4, topP: nil, seed: 9)

/// Message `i` of the ring: typed messages of every kind, then raw envelopes of random sizes.
func ringMessage(_ i: Int) -> Message {
    var s = Stream(state: UInt64(i) &* 7919 &+ 17)
    switch i {
    case 0: return HeartbeatMessage(sequence: 42, sentAt: 1.5).message
    case 1: return JobMessage(jobID: 7, imagePath: "images/çà/日本.jpg", promptIDs: [2, 106, 1645, 108],
                              parameters: JobParameters(maxNewTokens: 32, temperature: 0, topK: nil, topP: nil, seed: 1)).message
    case 2:
        let sequences = [SequenceSlice(id: 1, position: 0, newTokens: 260, prefixLength: 260),
                         SequenceSlice(id: 2, position: 270, newTokens: 1, prefixLength: 262),
                         SequenceSlice(id: 3, position: 5, newTokens: 3, prefixLength: 4)]
        let width = 64
        return HiddenMessage(microBatch: 3, step: 9, width: width, sequences: sequences,
                             hidden: (0..<(264 * width)).map { _ in s.float() }, released: [4, 5]).message
    case 3:  // 4 MiB of floats: forces MPI's rendezvous protocol.
        return EmbeddingsMessage(jobID: 7, tokens: 256, width: 4096, embeddings: (0..<(256 * 4096)).map { _ in s.float() },
                                 promptIDs: [2, 3, 4], parameters: selftestParameters,
                                 measurements: JobMeasurements(imageWidth: 640, imageHeight: 480, visionSeconds: 0.5)).message
    case 4: return TokensMessage(microBatch: 3, step: 10, updates: [TokenUpdate(id: 1, token: 1, finished: true),
                                                                    TokenUpdate(id: 2, token: 255_999, finished: false)]).message
    case 5: return ResultMessage(jobID: 7, failure: .init(kind: "unreadable_image", message: "truncated"),
                                 measurements: JobMeasurements(visionSeconds: 0.25)).message
    case 6: return StatsMessage(sequence: 1, isFinal: false, values: ["busy_seconds": 12.5]).message
    case 7: return Message(kind: .hidden)  // empty
    default:
        return Message(kind: MessageKind.allCases[s.int(MessageKind.allCases.count)],
                       header: (0..<s.int(70_000)).map { _ in UInt8(truncatingIfNeeded: s.next()) },
                       floats: (0..<s.int(300_000)).map { _ in s.float() })
    }
}

/// The 4 MiB message rank `source` sends to every other rank after the ring.
func crossfire(from source: Int) -> EmbeddingsMessage {
    EmbeddingsMessage(jobID: 1000 + Int64(source), tokens: 256, width: 4096,
                      embeddings: (0..<(256 * 4096)).map { Float($0 % 1000 + source) }, promptIDs: [Int32(source)],
                      parameters: selftestParameters, measurements: JobMeasurements())
}

let ringCount = 16
let streamCount = 200

func fail(_ text: String) -> Never {
    transport.abort("self-test failed: \(text)")
}

func receive(_ what: String, timeout: Double = 15) -> (source: Int, message: Message) {
    do {
        guard let received = try transport.receive(timeout: timeout) else { fail("timed out waiting for \(what)") }
        return received
    } catch {
        fail("receive (\(what)): \(error)")
    }
}

// MARK: - Modes

func ring() {
    let next = (rank + 1) % size, previous = (rank + size - 1) % size
    do {
        if rank == 0 {
            for i in 0..<ringCount { try transport.send(ringMessage(i), to: next) }
        }
        // Numbered heartbeats to rank 0 (checked there for FIFO per sender).
        if rank != 0 || size == 1 {
            for i in 0..<streamCount { try transport.send(HeartbeatMessage(sequence: Int64(i), sentAt: 0), to: 0) }
        }
    } catch {
        fail("send: \(error)")
    }

    var ringSeen = 0
    var streamNext = [Int](repeating: 0, count: size)
    var reports = 0
    let streamSources = size == 1 ? [0] : Array(1..<size)
    func ringDone() -> Bool { ringSeen == ringCount }
    func allDone() -> Bool {
        ringDone() && (rank != 0 || (reports == size - 1 && streamSources.allSatisfy { streamNext[$0] == streamCount }))
    }

    // Crossfire (after the ring): every rank sends 4 MiB to every other rank and flushes before it
    // receives anything. Without flush's draining receive this would deadlock in MPI's rendezvous.
    var crossfireSeen = Set<Int>()
    func isCrossfire(_ source: Int, _ message: Message) -> Bool {
        guard message.kind == .embeddings, let embeddings = try? EmbeddingsMessage(message),
              embeddings.jobID >= 1000 else { return false }
        guard embeddings.jobID == 1000 + Int64(source), embeddings == crossfire(from: source),
              crossfireSeen.insert(source).inserted else {
            fail("rank \(rank): crossfire message from rank \(source) is wrong or repeated")
        }
        return true
    }

    while !allDone() {
        let (source, message) = receive("ring message \(ringSeen) / reports")
        if isCrossfire(source, message) { continue }
        if message.kind == .heartbeat, let beat = try? HeartbeatMessage(message), beat.sentAt == 0, rank == 0 {
            guard beat.sequence == Int64(streamNext[source]) else {
                fail("rank 0 got heartbeat \(beat.sequence) from rank \(source), expected \(streamNext[source]) (FIFO broken)")
            }
            streamNext[source] += 1
            continue
        }
        if message.kind == .stats, let report = try? StatsMessage(message), report.sequence == -1 {
            guard report.values["ok"] == 1 else { fail("rank \(source) reported a ring mismatch") }
            reports += 1
            continue
        }
        guard source == previous else { fail("rank \(rank) got \(message) from rank \(source), expected rank \(previous)") }
        guard message == ringMessage(ringSeen) else {
            fail("rank \(rank): ring message \(ringSeen) (\(message)) differs from what was sent")
        }
        // Typed messages must also decode as their kind.
        do {
            switch ringSeen {
            case 0: _ = try HeartbeatMessage(message)
            case 1: guard try JobMessage(message).imagePath == "images/çà/日本.jpg" else { fail("job path") }
            case 2: guard try HiddenMessage(message).rows(ofSequence: 2) == 261..<264 else { fail("hidden rows") }
            case 3: guard try EmbeddingsMessage(message).embeddings.count == 256 * 4096 else { fail("embeddings") }
            case 4: guard try TokensMessage(message).updates[1].token == 255_999 else { fail("tokens") }
            case 5: guard try ResultMessage(message).measurements.visionSeconds == 0.25 else { fail("result") }
            case 6: _ = try StatsMessage(message)
            default: break
            }
        } catch {
            fail("rank \(rank): ring message \(ringSeen) does not decode: \(error)")
        }
        ringSeen += 1
        if rank != 0 {
            do { try transport.send(message, to: next) } catch { fail("forward: \(error)") }
            if ringDone() {
                do {
                    try transport.send(StatsMessage(sequence: -1, isFinal: true, values: ["ok": 1]), to: 0)
                } catch {
                    fail("report: \(error)")
                }
            }
        }
    }

    do {
        for peer in 0..<size where peer != rank { try transport.send(crossfire(from: rank), to: peer) }
        try transport.flush()
    } catch {
        fail("crossfire: \(error)")
    }
    while crossfireSeen.count < size - 1 {
        let (source, message) = receive("crossfire")
        guard isCrossfire(source, message) else { fail("rank \(rank): unexpected \(message) from rank \(source)") }
    }

    do {
        if rank == 0 {
            for peer in 1..<size { try transport.send(ShutdownMessage(code: 0, reason: "done"), to: peer) }
            let counters = transport.counters
            print("ring ok: \(size) rank(s), \(ringCount) ring messages, \(counters.bytesSent) bytes sent by rank 0, "
                  + "launched by mpirun: \(transport.launchedByMPIRun)")
        } else {
            while true {
                let (_, message) = receive("shutdown")
                if message.kind == .shutdown { break }
            }
        }
        try transport.finalize()
    } catch {
        fail("shutdown: \(error)")
    }
}

func crash() {
    if rank == 1 {
        Thread.sleep(forTimeInterval: 0.3)
        log("rank 1 exits abruptly")
        exit(1)
    }
    let start = MonotonicClock.now()
    while MonotonicClock.now() - start < 60 {
        _ = try? transport.receive(timeout: 0.5)
    }
    log("rank \(rank): nobody ended the job within 60 s")
    exit(3)
}

func hang(silenceLimit: Double) {
    if rank == 1 {
        Thread.sleep(forTimeInterval: 120)  // alive, silent
        exit(4)
    }
    if rank == 0 {
        var monitor = PeerMonitor(peers: 1..<size)
        let start = MonotonicClock.now()
        while MonotonicClock.now() - start < 60 {
            do {
                if let (source, _) = try transport.receive(timeout: 0.2) { monitor.heard(from: source) }
                try monitor.requireAlive(olderThan: silenceLimit, rank: rank)
            } catch {
                transport.abort("\(error)")
            }
        }
        log("rank 0: no silence detected within 60 s")
        exit(3)
    }
    var timer = HeartbeatTimer(interval: 0.3)
    let start = MonotonicClock.now()
    while MonotonicClock.now() - start < 60 {
        if let beat = timer.due() { try? transport.send(beat, to: 0) }
        _ = try? transport.receive(timeout: 0.1)
    }
    exit(3)
}

switch mode {
case "ring": ring()
case "crash": crash()
case "hang": hang(silenceLimit: arguments.count > 2 ? Double(arguments[2]) ?? 3 : 3)
default:
    log("unknown mode \(mode); use ring, crash or hang S")
    exit(2)
}
