// `Transport` over Open MPI: one process per rank, launched by mpirun (or a singleton without it).
//
// Threading: MPI is initialized with MPI_THREAD_FUNNELED by default, which means every MPI call must
// come from the thread that created the transport (the rank's main loop). Compute may run on other
// threads; only the transport calls are funneled. Each method checks this with a precondition.
// `.serialized` lifts the rule: calls may come from any thread; the transport serializes them with a
// lock held around each MPI step, never while it sleeps between probes, so one thread can send while
// another waits in `receive`. `abort` may be called from any thread in both modes.
//
// Errors: MPI_COMM_WORLD gets MPI_ERRORS_RETURN, so a failed call returns a code instead of killing
// the job from inside MPI; every code is checked and becomes `TransportError.mpi` naming the call,
// this rank, the peer and the tag. What to do then (usually: `abort`) is the caller's decision.
//
// Messages: one message = one MPI transfer of its `WireFormat` bytes (MPI_BYTE), tag = kind raw value.
// Sends are MPI_Isend from a buffer the transport owns until MPI_Test reports completion. Receives
// are MPI_Iprobe(ANY_SOURCE, ANY_TAG) + MPI_Get_count + MPI_Recv of exactly that many bytes, with
// short sleeps between probes, so any size works and a timeout is always honoured.

import CMPI
import Foundation
import Logging

public final class MPITransport: Transport, @unchecked Sendable {
    /// The MPI thread level to request.
    public enum ThreadSupport: Sendable {
        /// MPI_THREAD_FUNNELED: all transport calls on the creating thread (the default).
        case funneled
        /// MPI_THREAD_SERIALIZED: any thread, one call at a time (the transport locks).
        case serialized

        var level: Int32 {
            switch self {
            case .funneled: return CMPI_thread_funneled()
            case .serialized: return CMPI_thread_serialized()
            }
        }
    }

    public let rank: Int
    public let size: Int
    public let threadSupport: ThreadSupport
    /// How long `flush` (and `finalize`) waits for pending sends before throwing `.timeout`; nil: forever.
    public var flushTimeout: Double?
    /// How long a call waits for another thread's MPI step to end before it gives up with `.stuck`
    /// (seconds). One step (a test, a probe, a receive of a probed message) takes microseconds to
    /// milliseconds, and the lock is never held while sleeping; a step that lasts seconds is stuck inside
    /// Open MPI (seen: the TCP transport's warning about a peer host that died waits on the local
    /// daemon, which is busy ending the job). The caller is then free to act: rank 0 writes stats.json.
    public var stuckCallLimit: Double = 3
    /// The longest sleep between probes while waiting (seconds). Sleeps start at 20 µs and double.
    public var maxPollInterval: Double = 0.001
    public private(set) var isFinalized = false
    /// Each rank's processor name (its host), gathered once at start (`host(of:)`).
    public let hostNames: [String]
    /// `isLaunchedByMPIRun` as it was before MPI was initialized.
    public let launchedByMPIRun: Bool

    private let owner = pthread_self()
    private let lock = NSLock()
    private var pending: [PendingSend] = []
    /// Messages received while `flush` waited (so a peer blocked on sending to us can finish); FIFO.
    private var inbox = FIFO<(source: Int, message: Message)>()
    private var traffic = TransportCounters()
    /// The peers of sends not yet complete, readable while another thread is inside MPI (`.stuck`).
    private let pendingPeersLock = NSLock()
    private var pendingPeers: [Int] = []

    /// One MPI_Isend in flight and the bytes it reads from.
    private struct PendingSend {
        var request: MPI_Request?
        let buffer: UnsafeMutableRawBufferPointer
        let peer: Int
        let tag: Int32
    }

    /// True when the process was started by mpirun/mpiexec, srun or another PMI/PMIx launcher: the one
    /// test of "launched under MPI" (`paligemma run` uses it to decide whether to initialize MPI). Without a launcher,
    /// `MPITransport()` still works as a singleton of size 1, but np=1 runs should use `LocalTransport`.
    /// Ask before creating the transport: Open MPI's singleton init sets the same variables
    /// (`launchedByMPIRun` keeps the answer from before initialization).
    public static var isLaunchedByMPIRun: Bool {
        isLaunchedByMPIRun(environment: ProcessInfo.processInfo.environment)
    }

    /// `isLaunchedByMPIRun` for a given environment: Open MPI's mpirun/prterun set `OMPI_COMM_WORLD_SIZE`
    /// (and `PMIX_RANK`), `srun --mpi=pmix` sets `PMIX_RANK` (and no size), MPICH's Hydra and Slurm's
    /// PMI-2 plugin set `PMI_RANK`/`PMI_SIZE`.
    public static func isLaunchedByMPIRun(environment: [String: String]) -> Bool {
        ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"].contains { environment[$0] != nil }
    }

    /// The number of processes the launcher says it started, from its environment, or nil when it does
    /// not say: `OMPI_COMM_WORLD_SIZE` (Open MPI), `PMI_SIZE` (Hydra, PMI-2), or, for a Slurm task
    /// started with PMIx (`PMIX_RANK` and `SLURM_PROCID` set, no Open MPI variables),
    /// `SLURM_STEP_NUM_TASKS`. Only a cross-check: the world size itself comes from `MPI_Comm_size`.
    /// A launcher that says N > 1 while MPI initializes as a world of 1 does not speak this MPI
    /// library's launch protocol (e.g. `srun --mpi=none`, or MPICH's mpiexec with Open MPI).
    public static func launcherWorldSize(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int? {
        for key in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
            if let value = environment[key], let size = Int(value) { return size }
        }
        if environment["PMIX_RANK"] != nil, environment["SLURM_PROCID"] != nil,
           let value = environment["SLURM_STEP_NUM_TASKS"], let size = Int(value) {
            return size
        }
        return nil
    }

    /// This process's rank as the launcher's environment gives it (`OMPI_COMM_WORLD_RANK`, `PMIX_RANK`,
    /// `PMI_RANK`), or nil. Only a cross-check, like `launcherWorldSize`: a rank above 0 in an MPI world of
    /// 1 means the launcher and the MPI library did not connect.
    public static func launcherRank(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int? {
        for key in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"] {
            if let value = environment[key], let rank = Int(value) { return rank }
        }
        return nil
    }

    /// Initializes MPI (`MPI_Init_thread`) and sets MPI_ERRORS_RETURN on MPI_COMM_WORLD.
    /// At most one `MPITransport` per process: MPI can be initialized and finalized only once.
    public init(threadSupport: ThreadSupport = .funneled, flushTimeout: Double? = 60) throws {
        self.threadSupport = threadSupport
        self.flushTimeout = flushTimeout
        self.launchedByMPIRun = Self.isLaunchedByMPIRun
        var flag: Int32 = 0
        try Self.check(MPI_Finalized(&flag), "MPI_Finalized", rank: -1)
        guard flag == 0 else { throw TransportError.lifecycle("MPI was already finalized in this process; it cannot be restarted") }
        try Self.check(MPI_Initialized(&flag), "MPI_Initialized", rank: -1)
        guard flag == 0 else { throw TransportError.lifecycle("MPI is already initialized in this process; create one MPITransport per process") }

        var provided: Int32 = 0
        try Self.check(MPI_Init_thread(nil, nil, threadSupport.level, &provided), "MPI_Init_thread", rank: -1)
        var worldRank: Int32 = 0, worldSize: Int32 = 0
        try Self.check(MPI_Comm_set_errhandler(CMPI_comm_world(), CMPI_errors_return()), "MPI_Comm_set_errhandler",
                       rank: -1)
        try Self.check(MPI_Comm_rank(CMPI_comm_world(), &worldRank), "MPI_Comm_rank", rank: -1)
        try Self.check(MPI_Comm_size(CMPI_comm_world(), &worldSize), "MPI_Comm_size", rank: Int(worldRank))
        rank = Int(worldRank)
        size = Int(worldSize)
        guard provided >= threadSupport.level else {
            throw TransportError.threadSupport(requested: threadSupport.level, provided: provided)
        }
        hostNames = try Self.gatherProcessorNames(rank: Int(worldRank), size: Int(worldSize))
    }

    /// Every rank's MPI_Get_processor_name, by one MPI_Allgather of fixed-size names at start (every
    /// rank is there then), so that an abort can say on which host a silent or failed rank runs.
    private static func gatherProcessorNames(rank: Int, size: Int) throws -> [String] {
        let width = Int(CMPI_max_processor_name())
        var mine = [CChar](repeating: 0, count: width)
        var length: Int32 = 0
        try check(MPI_Get_processor_name(&mine, &length), "MPI_Get_processor_name", rank: rank)
        var all = [CChar](repeating: 0, count: width * size)
        try check(MPI_Allgather(&mine, Int32(width), CMPI_char(), &all, Int32(width), CMPI_char(), CMPI_comm_world()),
                  "MPI_Allgather (processor names)", rank: rank)
        return (0..<size).map { index in
            let bytes = all[(index * width)..<((index + 1) * width)].prefix { $0 != 0 }
            return String(decoding: bytes.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    public func host(of rank: Int) -> String? {
        hostNames.indices.contains(rank) ? hostNames[rank] : nil
    }

    // No deinit: buffers of sends still in flight are leaked on purpose, as MPI may still read them.

    /// Safe from any thread (no MPI call).
    public var counters: TransportCounters {
        lock.lock(); defer { lock.unlock() }
        return traffic
    }

    /// Sends still in flight (safe from any thread).
    public var pendingSends: Int {
        lock.lock(); defer { lock.unlock() }
        return pending.count
    }

    // MARK: Transport

    public func send(_ message: Message, to peer: Int) throws {
        try withMPI {
            try checkUsable()
            guard (0..<size).contains(peer) else { throw TransportError.invalidRank(rank: peer, size: size, from: rank) }
            let byteCount = WireFormat.encodedSize(of: message)
            guard byteCount <= Int(Int32.max) else {
                throw TransportError.messageTooLarge(bytes: byteCount, limit: Int(Int32.max))
            }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: byteCount, alignment: 16)
            WireFormat.encode(message, into: buffer)
            let tag = Int32(message.kind.rawValue)
            var request: MPI_Request? = CMPI_request_null()
            let code = MPI_Isend(buffer.baseAddress, Int32(byteCount), CMPI_byte(), Int32(peer), tag,
                                 CMPI_comm_world(), &request)
            guard code == CMPI_success() else {
                buffer.deallocate()
                throw error("MPI_Isend", code, peer: peer, tag: Int(tag))
            }
            pending.append(PendingSend(request: request, buffer: buffer, peer: peer, tag: tag))
            publishPendingPeers()
            traffic.messagesSent += 1
            traffic.bytesSent += byteCount
            try reapSends()
        }
    }

    public func receive(timeout: Double?) throws -> (source: Int, message: Message)? {
        let deadline = timeout.map { MonotonicClock.now() + max(0, $0) }
        var sleep = 20e-6
        while true {
            let received = try withMPI { () throws -> (source: Int, message: Message)? in
                try checkUsable()
                if let queued = inbox.popFirst() { return queued }
                try reapSends()
                return try probeAndReceive()
            }
            if let received { return received }
            // Sleep without the lock, so other threads (in .serialized mode) can send meanwhile.
            let now = MonotonicClock.now()
            if let deadline, now >= deadline { return nil }
            Thread.sleep(forTimeInterval: min(sleep, deadline.map { $0 - now } ?? sleep))
            sleep = min(sleep * 2, maxPollInterval)
        }
    }

    public func poll() throws -> (source: Int, message: Message)? {
        try receive(timeout: 0)
    }

    public func flush() throws {
        let deadline = flushTimeout.map { MonotonicClock.now() + $0 }
        var sleep = 20e-6
        while true {
            let outcome = try withMPI { () throws -> (done: Bool, received: Bool, peers: [Int]) in
                try checkUsable()
                try reapSends()
                if pending.isEmpty { return (true, false, []) }
                // Keep receiving meanwhile: a peer that is itself flushing a large send to us needs our
                // receive, or both sides wait forever in MPI's rendezvous protocol.
                if let received = try probeAndReceive() {
                    inbox.append(received)
                    return (false, true, [])
                }
                return (false, false, Array(Set(pending.map(\.peer))).sorted())
            }
            if outcome.done { return }
            if outcome.received { continue }
            if let deadline, MonotonicClock.now() >= deadline {
                throw TransportError.timeout(operation: "flush (sends to the listed ranks pending)", rank: rank,
                                             peers: outcome.peers, seconds: flushTimeout ?? 0)
            }
            Thread.sleep(forTimeInterval: sleep)
            sleep = min(sleep * 2, maxPollInterval)
        }
    }

    /// Drives MPI's progress without waiting: completes sends that can complete and moves messages that
    /// have arrived into the inbox, so a background thread can keep transfers going while the main
    /// thread computes (needs `.serialized`). A no-op once finalized.
    public func progress() throws {
        try withMPI {
            guard !isFinalized else { return }
            try reapSends()
            while let received = try probeAndReceive() { inbox.append(received) }
        }
    }

    /// Flushes pending sends, then calls MPI_Finalize. The transport cannot be used afterwards.
    public func finalize() throws {
        if try withMPI({ isFinalized }) { return }
        try flush()
        try withMPI {
            isFinalized = true
            try check(MPI_Finalize(), "MPI_Finalize")
        }
    }

    public func abort(_ reason: String) -> Never {
        // No lock: another thread may be inside a call; MPI_Abort is the last call anyway.
        transportLogger.critical("rank \(rank) of \(size) on \(host(of: rank) ?? HostName.current) aborts the job: \(reason)",
                                 metadata: ["mpi.rank": "\(rank)"])
        if !isFinalized {
            _ = MPI_Abort(CMPI_comm_world(), 1)
        }
        exit(1)
    }

    // MARK: Internals (called with the lock held, on the right thread)

    /// Tests every pending send and frees the buffers of the completed ones.
    private func reapSends() throws {
        var index = 0
        while index < pending.count {
            var done: Int32 = 0
            let code = MPI_Test(&pending[index].request, &done, CMPI_status_ignore())
            guard code == CMPI_success() else {
                let failed = pending.remove(at: index)
                // The request is dead; its buffer is leaked rather than freed under MPI's feet.
                throw error("MPI_Test (send)", code, peer: failed.peer, tag: Int(failed.tag))
            }
            if done != 0 {
                pending[index].buffer.deallocate()
                pending.remove(at: index)
            } else {
                index += 1
            }
        }
        publishPendingPeers()
    }

    private func publishPendingPeers() {
        let peers = Array(Set(pending.map(\.peer))).sorted()
        pendingPeersLock.lock()
        pendingPeers = peers
        pendingPeersLock.unlock()
    }

    /// One message if one is waiting, received whole whatever its size.
    private func probeAndReceive() throws -> (source: Int, message: Message)? {
        var found: Int32 = 0
        var status = MPI_Status()
        try check(MPI_Iprobe(CMPI_any_source(), CMPI_any_tag(), CMPI_comm_world(), &found, &status), "MPI_Iprobe")
        guard found != 0 else { return nil }
        let source = CMPI_status_source(&status), tag = CMPI_status_tag(&status)
        var count: Int32 = 0
        try check(MPI_Get_count(&status, CMPI_byte(), &count), "MPI_Get_count", peer: Int(source), tag: Int(tag))
        let byteCount = Int(count)
        var received = MPI_Status()
        let bytes = try [UInt8](unsafeUninitializedCapacity: byteCount) { buffer, initialized in
            let code = MPI_Recv(buffer.baseAddress, count, CMPI_byte(), source, tag, CMPI_comm_world(), &received)
            guard code == CMPI_success() else {
                initialized = 0
                throw error("MPI_Recv", code, peer: Int(source), tag: Int(tag))
            }
            initialized = byteCount
        }
        traffic.messagesReceived += 1
        traffic.bytesReceived += byteCount
        let message: Message
        do {
            message = try WireFormat.decode(bytes)
        } catch TransportError.corruptMessage(_, let reason) {
            throw TransportError.corruptMessage(source: Int(source), reason: reason + " (tag \(tag), \(byteCount) bytes)")
        }
        guard Int32(message.kind.rawValue) == tag else {
            throw TransportError.corruptMessage(source: Int(source),
                                                reason: "a \(message.kind) message arrived with tag \(tag)")
        }
        return (Int(source), message)
    }

    private func checkUsable() throws {
        guard !isFinalized else { throw TransportError.lifecycle("rank \(rank): the transport was finalized") }
    }

    private func withMPI<T>(_ body: () throws -> T) throws -> T {
        if threadSupport == .funneled {
            precondition(pthread_equal(pthread_self(), owner) != 0,
                         "MPITransport is MPI_THREAD_FUNNELED: call it only from the thread that created it")
        }
        guard lock.lock(before: Date(timeIntervalSinceNow: stuckCallLimit)) else {
            pendingPeersLock.lock()
            let peers = pendingPeers
            pendingPeersLock.unlock()
            throw TransportError.stuck(rank: rank, seconds: stuckCallLimit, pendingSendsTo: peers)
        }
        defer { lock.unlock() }
        return try body()
    }

    private func check(_ code: Int32, _ call: String, peer: Int? = nil, tag: Int? = nil) throws {
        guard code == CMPI_success() else { throw error(call, code, peer: peer, tag: tag) }
    }

    private func error(_ call: String, _ code: Int32, peer: Int?, tag: Int?) -> TransportError {
        .mpi(call: call, code: code, rank: rank, peer: peer, tag: tag, message: Self.errorString(code))
    }

    private static func check(_ code: Int32, _ call: String, rank: Int) throws {
        guard code == CMPI_success() else {
            throw TransportError.mpi(call: call, code: code, rank: rank, peer: nil, tag: nil, message: errorString(code))
        }
    }

    /// MPI_Error_string for `code`.
    static func errorString(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(CMPI_max_error_string()) + 1)
        var length: Int32 = 0
        guard MPI_Error_string(code, &buffer, &length) == CMPI_success() else { return "unknown MPI error" }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A first-in first-out queue with amortized O(1) push and pop; popped slots are released at once.
struct FIFO<Element> {
    private var items: [Element?] = []
    private var head = 0

    var isEmpty: Bool { head == items.count }
    var count: Int { items.count - head }

    mutating func append(_ item: Element) { items.append(item) }

    mutating func popFirst() -> Element? {
        guard head < items.count else { return nil }
        let item = items[head]
        items[head] = nil
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64, head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return item
    }
}
