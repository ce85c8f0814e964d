// `Transport` between threads of one process: each rank is a thread holding one endpoint of a group.
//
// Used for np=1 runs (every role in one process) and for testing the pipeline without mpirun. The
// semantics are MPITransport's: nonblocking sends, FIFO per sender→receiver pair, any-source receive
// with a timeout, abort ends the job. Each rank has one mailbox (a FIFO guarded by a condition
// variable); a send appends to the receiver's mailbox, so a send is complete as soon as it returns
// and `flush` has nothing to wait for.

import Foundation
import Logging

public final class LocalTransport: Transport, @unchecked Sendable {
    /// What `abort` does after recording the reason and waking every endpoint.
    public enum AbortBehavior: Sendable {
        /// Exit the process with status 1, as MPI_Abort ends an mpirun job (np=1 runs).
        case exitProcess
        /// Block the calling thread forever; every other endpoint's next call throws `.aborted` (tests).
        case parkThread
    }

    public let rank: Int
    public var size: Int { fabric.size }
    private let fabric: Fabric
    private let countersLock = NSLock()
    private var traffic = TransportCounters()

    /// `size` connected endpoints; give endpoint `r` to the thread that plays rank `r`.
    /// - Parameters:
    ///   - checksWireFormat: send every message through `WireFormat.encode`/`decode` (as MPI does), so
    ///     in-process tests also catch messages the wire would reject. Costs a copy per message.
    ///   - abortBehavior: `.exitProcess` for real runs, `.parkThread` for tests.
    public static func group(size: Int, checksWireFormat: Bool = false,
                             abortBehavior: AbortBehavior = .exitProcess) -> [LocalTransport] {
        precondition(size >= 1, "LocalTransport.group needs at least one rank")
        let fabric = Fabric(size: size, checksWireFormat: checksWireFormat, abortBehavior: abortBehavior)
        return (0..<size).map { LocalTransport(rank: $0, fabric: fabric) }
    }

    private init(rank: Int, fabric: Fabric) {
        self.rank = rank
        self.fabric = fabric
    }

    /// The rank and reason of the abort that ended this group, if any.
    public var abortReason: (rank: Int, reason: String)? { fabric.abortState }

    public var counters: TransportCounters {
        countersLock.lock(); defer { countersLock.unlock() }
        return traffic
    }

    // MARK: Transport

    public func send(_ message: Message, to peer: Int) throws {
        try fabric.throwIfAborted()
        guard (0..<size).contains(peer) else { throw TransportError.invalidRank(rank: peer, size: size, from: rank) }
        let delivered = fabric.checksWireFormat ? try WireFormat.decode(WireFormat.encode(message)) : message
        let byteCount = WireFormat.encodedSize(of: message)
        countersLock.lock()
        traffic.messagesSent += 1
        traffic.bytesSent += byteCount
        countersLock.unlock()
        let mailbox = fabric.mailboxes[peer]
        mailbox.condition.lock()
        mailbox.queue.append((rank, delivered))
        mailbox.condition.signal()
        mailbox.condition.unlock()
    }

    public func receive(timeout: Double?) throws -> (source: Int, message: Message)? {
        let mailbox = fabric.mailboxes[rank]
        let deadline = timeout.map { Date(timeIntervalSinceNow: max(0, $0)) }
        mailbox.condition.lock()
        defer { mailbox.condition.unlock() }
        while true {
            try fabric.throwIfAborted()
            if let (source, message) = mailbox.queue.popFirst() {
                countersLock.lock()
                traffic.messagesReceived += 1
                traffic.bytesReceived += WireFormat.encodedSize(of: message)
                countersLock.unlock()
                return (source, message)
            }
            if let deadline {
                if Date() >= deadline { return nil }
                _ = mailbox.condition.wait(until: deadline)
            } else {
                mailbox.condition.wait()
            }
        }
    }

    public func poll() throws -> (source: Int, message: Message)? {
        try receive(timeout: 0)
    }

    public func flush() throws {
        try fabric.throwIfAborted()
    }

    public func abort(_ reason: String) -> Never {
        transportLogger.critical("rank \(rank) of \(size) on \(HostName.current) aborts the job: \(reason)", metadata: ["mpi.rank": "\(rank)"])
        fabric.abort(by: rank, reason: reason)
        switch fabric.abortBehavior {
        case .exitProcess:
            exit(1)
        case .parkThread:
            let never = NSCondition()
            never.lock()
            while true { never.wait() }
        }
    }

    // MARK: Shared state

    private final class Mailbox: @unchecked Sendable {
        let condition = NSCondition()
        var queue = FIFO<(Int, Message)>()
    }

    private final class Fabric: @unchecked Sendable {
        let size: Int
        let checksWireFormat: Bool
        let abortBehavior: AbortBehavior
        let mailboxes: [Mailbox]
        private let lock = NSLock()
        private var aborted: (rank: Int, reason: String)?

        init(size: Int, checksWireFormat: Bool, abortBehavior: AbortBehavior) {
            self.size = size
            self.checksWireFormat = checksWireFormat
            self.abortBehavior = abortBehavior
            self.mailboxes = (0..<size).map { _ in Mailbox() }
        }

        var abortState: (rank: Int, reason: String)? {
            lock.lock(); defer { lock.unlock() }
            return aborted
        }

        func throwIfAborted() throws {
            if let (rank, reason) = abortState { throw TransportError.aborted(by: rank, reason: reason) }
        }

        func abort(by rank: Int, reason: String) {
            lock.lock()
            if aborted == nil { aborted = (rank, reason) }
            lock.unlock()
            for mailbox in mailboxes {
                mailbox.condition.lock()
                mailbox.condition.broadcast()
                mailbox.condition.unlock()
            }
        }
    }
}
