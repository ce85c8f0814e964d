// LocalTransport: the in-process transport keeps MPI's semantics (FIFO per pair, any-source receive,
// timeouts, abort ends the group) under many threads sending in random order.
import Foundation
import Testing
@testable import PaliPipeline

/// Runs `body(rank)` on one thread per rank and waits for all of them.
private func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for rank in 0..<count {
        group.enter()
        let thread = Thread {
            body(rank)
            group.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    group.wait()
}

/// Collects failures from rank threads (Swift Testing's #expect is fine off the test's thread, but a
/// summary keeps the output readable when many messages are wrong).
private final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ text: String) { lock.lock(); items.append(text); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}

@Test(arguments: [false, true])
func manyThreadsKeepFIFOPerPair(checksWireFormat: Bool) {
    let ranks = 6, perRank = 400
    let endpoints = LocalTransport.group(size: ranks, checksWireFormat: checksWireFormat, abortBehavior: .parkThread)
    // Each rank's plan: a random destination per message, the same on every thread (seeded by rank).
    let plans: [[Int]] = (0..<ranks).map { rank in
        var random = TestRandom(seed: UInt64(rank) + 1)
        return (0..<perRank).map { _ in random.int(ranks) }
    }
    let expected: [[Int]] = (0..<ranks).map { destination in
        (0..<ranks).map { source in plans[source].filter { $0 == destination }.count }
    }
    let failures = Failures()
    onThreads(ranks) { rank in
        let transport = endpoints[rank]
        var random = TestRandom(seed: UInt64(rank) * 1000 + 7)
        var nextSequence = [Int](repeating: 0, count: ranks)       // per destination
        var nextExpected = [Int](repeating: 0, count: ranks)       // per source
        let total = expected[rank].reduce(0, +)
        var received = 0, sent = 0
        func take(_ item: (source: Int, message: Message)) {
            let (source, message) = item
            let fields = String(decoding: message.header, as: UTF8.self).split(separator: " ").compactMap { Int($0) }
            guard fields.count == 2, fields[0] == source else {
                failures.add("rank \(rank): message from \(source) has header \(fields)")
                return
            }
            if fields[1] != nextExpected[source] {
                failures.add("rank \(rank): from \(source) got #\(fields[1]), expected #\(nextExpected[source])")
            }
            if message.floats.count != fields[1] % 97 || message.floats.first.map({ $0 != Float(source) }) == true {
                failures.add("rank \(rank): payload of #\(fields[1]) from \(source) is wrong")
            }
            nextExpected[source] += 1
            received += 1
        }
        do {
            // Interleave sends with polls in a random rhythm, then drain with a blocking receive.
            while sent < perRank {
                let destination = plans[rank][sent]
                let sequence = nextSequence[destination]
                nextSequence[destination] += 1
                try transport.send(Message(kind: .hidden, header: Array("\(rank) \(sequence)".utf8),
                                           floats: [Float](repeating: Float(rank), count: sequence % 97)),
                                   to: destination)
                sent += 1
                if random.int(3) == 0, let item = try transport.poll() { take(item) }
            }
            try transport.flush()
            while received < total {
                guard let item = try transport.receive(timeout: 10) else {
                    failures.add("rank \(rank): timed out with \(received) of \(total) messages")
                    return
                }
                take(item)
            }
            if try transport.poll() != nil { failures.add("rank \(rank): an extra message arrived") }
            let counters = transport.counters
            if counters.messagesSent != perRank || counters.messagesReceived != total {
                failures.add("rank \(rank): counters \(counters)")
            }
        } catch {
            failures.add("rank \(rank): \(error)")
        }
    }
    #expect(failures.all.isEmpty, "\(failures.all.prefix(10))")
}

@Test func receiveTimesOutWithNil() throws {
    let endpoints = LocalTransport.group(size: 2)
    let start = MonotonicClock.now()
    #expect(try endpoints[0].receive(timeout: 0.2) == nil)
    let elapsed = MonotonicClock.now() - start
    #expect(elapsed >= 0.19 && elapsed < 5)
    #expect(try endpoints[1].poll() == nil)
    #expect(try endpoints[1].receive(timeout: 0) == nil)
}

@Test func blockingReceiveWakesOnSend() throws {
    let endpoints = LocalTransport.group(size: 2)
    let sender = endpoints[1]
    Thread.detachNewThread {
        Thread.sleep(forTimeInterval: 0.1)
        try? sender.send(ShutdownMessage(code: 0, reason: "bye"), to: 0)
    }
    let received = try #require(try endpoints[0].receive(timeout: nil))
    #expect(received.source == 1)
    #expect(try ShutdownMessage(received.message).reason == "bye")
}

@Test func sendingToItselfAndToAMissingRank() throws {
    let endpoints = LocalTransport.group(size: 3)
    try endpoints[2].send(HeartbeatMessage(sequence: 1, sentAt: 0), to: 2)
    #expect(try endpoints[2].poll()?.source == 2)
    #expect(throws: TransportError.invalidRank(rank: 3, size: 3, from: 0)) {
        try endpoints[0].send(Message(kind: .heartbeat), to: 3)
    }
    #expect(throws: TransportError.self) { try endpoints[0].send(Message(kind: .heartbeat), to: -1) }
}

@Test func wireCheckingRejectsWhatMPIWouldReject() throws {
    // With checksWireFormat the message is serialized; a well-formed envelope passes unchanged.
    let endpoints = LocalTransport.group(size: 2, checksWireFormat: true)
    let message = Message(kind: .embeddings, header: [4], floats: [.nan, 1])
    try endpoints[0].send(message, to: 1)
    #expect(try endpoints[1].poll()?.message == message)
    #expect(endpoints[0].counters.bytesSent == WireFormat.encodedSize(of: message))
    #expect(endpoints[1].counters.bytesReceived == WireFormat.encodedSize(of: message))
}

@Test func abortEndsTheGroup() throws {
    let endpoints = LocalTransport.group(size: 3, abortBehavior: .parkThread)
    let aborting = endpoints[2]
    Thread.detachNewThread {
        Thread.sleep(forTimeInterval: 0.1)
        aborting.abort("rank 1 has been silent for 20 s")
    }
    // A receive waiting forever is woken by the abort and throws, naming the aborting rank.
    #expect(throws: TransportError.aborted(by: 2, reason: "rank 1 has been silent for 20 s")) {
        _ = try endpoints[0].receive(timeout: nil)
    }
    #expect(throws: TransportError.self) { try endpoints[1].send(Message(kind: .heartbeat), to: 0) }
    #expect(throws: TransportError.self) { try endpoints[1].flush() }
    #expect(endpoints[1].abortReason?.rank == 2)
}

@Test func everyRankOfAnInProcessGroupIsOnThisHost() {
    let endpoints = LocalTransport.group(size: 3, abortBehavior: .parkThread)
    var buffer = [CChar](repeating: 0, count: 256)
    gethostname(&buffer, 255)
    let host = String(cString: buffer)
    #expect(!host.isEmpty)
    #expect((0..<3).map { endpoints[1].host(of: $0) } == [host, host, host])
    #expect(endpoints[0].host(of: 3) == nil && endpoints[0].host(of: -1) == nil)
}
