// What every rank of a batch run shares: its transport, its role, a heartbeat to the peers that watch
// it, a watch on the peers it depends on (both from the Layout: `watchedPeers`, `watchers`), clocks
// of busy and idle time for stats.json, and with `run --trace` the rank's timeline over the same clocks.
import Foundation
import Logging
import PaliBatch
import PaliPipeline

final class RankContext {
    let transport: Transport
    let layout: Layout
    let role: Role
    let peerTimeout: Double
    let heartbeatInterval: Double
    /// Peers this rank watches (`Layout.watchedPeers`): rank 0 watches every worker, a worker watches
    /// rank 0 and the ranks it exchanges data with.
    let watchedPeers: [Int]
    /// Ranks this one sends heartbeats to: exactly the ranks that watch it (`Layout.watchers`), so no
    /// rank ever watches a peer that does not heartbeat to it.
    let heartbeatTargets: [Int]
    /// This rank's logger: label "paligemma run", metadata `mpi.rank` and `pipeline.role`.
    let logger: Logger
    private(set) var monitor: PeerMonitor
    private var background: Thread?
    private let stopFlag = StopFlag()
    /// Called from the communication thread when the transport is stuck (the coordinator sets it: the
    /// thread stuck inside MPI may be its main thread, which then never reaches its own stats.json write).
    let onStuckTransport = StuckHandler()
    private(set) var busySeconds = 0.0
    private(set) var idleSeconds = 0.0
    private var statsSequence: Int64 = 0
    /// Seconds this rank spent loading its weights, and the bytes of packed matrices it holds.
    var loadSeconds = 0.0
    var weightBytes = 0
    let started = MonotonicClock.now()
    /// This rank's timeline (`run --trace`); nil when not tracing.
    var trace: TraceRecorder?

    /// The silence limit of a worker's watch on another worker: `peerTimeout` plus two heartbeat
    /// intervals. Rank 0 watches every worker with `peerTimeout` and so notices a hung worker first: it
    /// completes the shard being written and writes stats.json before it ends the job. The workers' own
    /// watch on their data neighbours is the backstop (e.g. a link between two worker hosts that fails
    /// while both still reach rank 0).
    static func neighbourSilenceLimit(peerTimeout: Double, heartbeatInterval: Double) -> Double {
        peerTimeout + 2 * heartbeatInterval
    }

    init(transport: Transport, layout: Layout, peerTimeout: Double, heartbeatInterval: Double) {
        self.transport = transport
        self.layout = layout
        let rank = transport.rank
        role = layout.role(of: rank)
        self.peerTimeout = peerTimeout
        self.heartbeatInterval = heartbeatInterval
        watchedPeers = layout.watchedPeers(of: rank)
        heartbeatTargets = layout.watchers(of: rank)
        var logger = Logger(label: "paligemma run")
        logger[metadataKey: "mpi.rank"] = "\(rank)"
        logger[metadataKey: "pipeline.role"] = "\(role)"
        self.logger = logger
        let neighbourLimit = Self.neighbourSilenceLimit(peerTimeout: peerTimeout, heartbeatInterval: heartbeatInterval)
        let limits = rank == 0 ? [:] : Dictionary(uniqueKeysWithValues: watchedPeers.filter { $0 != 0 }.map { ($0, neighbourLimit) })
        monitor = PeerMonitor(peers: watchedPeers, limits: limits)
    }

    /// Starts the rank's communication thread: heartbeats to `heartbeatTargets` (every rank that watches
    /// this one) at once and then every interval, and `transport.progress()` every millisecond so that
    /// sends and receives move on while the main thread computes (MPI progresses only inside MPI calls).
    /// The thread never waits on computation, so the heartbeat proves the process is alive during a long
    /// load or forward. Start it before anything slow (reading the tokenizer, loading weights).
    func startBackground() {
        let transport = self.transport, targets = heartbeatTargets, interval = heartbeatInterval
        let stop = stopFlag, logger = self.logger, onStuck = onStuckTransport
        let thread = Thread {
            var timer = HeartbeatTimer(interval: interval, now: MonotonicClock.now() - interval)
            while !stop.isSet {
                do {
                    if let beat = timer.due() {
                        for target in targets { try transport.send(beat, to: target) }
                    }
                    try transport.progress()
                } catch {
                    if stop.isSet { return }
                    logger.error("rank \(transport.rank): communication thread: \(error)")
                    if case TransportError.stuck = error { onStuck(error) }
                    return
                }
                Thread.sleep(forTimeInterval: 0.001)
            }
        }
        thread.name = "paligemma-comm-\(rank)"
        thread.start()
        background = thread
    }

    /// Stops the communication thread (before shutdown and MPI_Finalize).
    func stopBackground() {
        stopFlag.set()
        while let thread = background, !thread.isFinished { Thread.sleep(forTimeInterval: 0.001) }
        background = nil
    }

    var rank: Int { transport.rank }

    /// `rank` for messages an operator reads: its number, role and host ("rank 2 (stage 0 of replica 0)
    /// on node3"), the host as the transport learnt it at start.
    func describe(_ rank: Int) -> String {
        let role = (0..<layout.worldSize).contains(rank) ? " (\(layout.role(of: rank)))" : ""
        return "rank \(rank)\(role)" + (transport.host(of: rank).map { " on \($0)" } ?? "")
    }

    /// Checks that watched peers are alive (throws naming a silent one, its role and its host). Call it
    /// only after a receive found nothing waiting, so heartbeats that arrived during a long computation
    /// have been counted.
    func checkPeers() throws {
        do {
            try monitor.requireAlive(olderThan: peerTimeout, rank: rank)
        } catch TransportError.peerSilent(_, let peer, let seconds) {
            throw RunError.silentPeer(peerRank: peer, peer: describe(peer), seconds: seconds)
        }
    }

    /// `error` with the ranks it names described by role and host, where the error is one that names
    /// ranks by number only.
    func named(_ error: Error) -> Error {
        if case TransportError.stuck(_, let seconds, let peers) = error {
            return RunError.stuckInMPI(seconds: seconds, pendingSendsTo: peers.map(describe))
        }
        return error
    }

    /// Seconds a worker that cannot go on waits, after telling the coordinator why, for the coordinator to
    /// end the job (writing stats.json first) before it aborts the job itself.
    static let failureReportGrace = 3.0
    /// Seconds a worker stuck inside an MPI call waits before it aborts the job itself (see `reportFailure`).
    static let stuckAbortDelay = 5.0

    /// A worker that cannot go on (`error`) tells the coordinator why (`FailureMessage`), so that rank 0
    /// writes the reason into stats.json and ends the job itself, then waits up to `failureReportGrace`
    /// for that to happen. It does not try when the coordinator is the peer it lost, when MPI is stuck in
    /// this rank, or when the job is already being ended. Returns when the caller should abort the job
    /// itself.
    func reportFailure(_ error: Error, reason: String) {
        guard rank != 0 else { return }
        switch error {
        case RunError.silentPeer(0, _, _): return            // the coordinator is the one lost
        case TransportError.aborted: return                  // the job is already ending
        case RunError.stuckInMPI:
            // Sending would be stuck too. A host that died stalls the coordinator's calls as well (or makes
            // mpirun end the job with SIGTERM): give it the head start to write stats.json before this rank
            // aborts the job — an abort from here first would end rank 0 before it writes (seen in the
            // multi-host test's host-kill fault, as a race between the ranks' 3 s stuck-call detectors).
            Thread.sleep(forTimeInterval: Self.stuckAbortDelay)
            return
        default: break
        }
        do {
            try transport.send(FailureMessage(reason: reason), to: 0)
            let deadline = MonotonicClock.now() + Self.failureReportGrace
            while MonotonicClock.now() < deadline {
                // Rank 0 aborts the job (which ends this process) once it has written stats.json; a
                // shutdown from it also means it has the report.
                if let (_, message) = try transport.receive(timeout: 0.05), message.kind == .shutdown { return }
            }
            logger.notice("rank \(rank): the coordinator did not end the job within \(Self.failureReportGrace) s of the report")
        } catch {
            logger.notice("rank \(rank): cannot report the failure to the coordinator (\(error))")
        }
    }

    /// Waits for a message up to `timeout`, counting the wait as idle time; any message counts as a sign
    /// of life of its sender if that sender is watched (a message never adds a watched peer: only the
    /// watchers of a rank get its heartbeats). When nothing came, checks that the watched peers are alive.
    func receive(timeout: Double?) throws -> (source: Int, message: Message)? {
        let start = MonotonicClock.now()
        let received = try transport.receive(timeout: timeout)
        let end = MonotonicClock.now()
        idleSeconds += end - start
        if let trace {
            trace.record(.idle, from: start, to: end, a: Int32(received?.message.kind.rawValue ?? 0),
                         b: Int32(received?.source ?? -1))
            if let received, received.message.kind == .heartbeat, let beat = try? HeartbeatMessage(received.message) {
                trace.heartbeat(from: received.source, sentAt: beat.sentAt, arrived: end)
            }
            if rank != 0, trace.wantsFlush(now: end) { try trace.flush(to: transport, isFinal: false) }
        }
        if let received {
            monitor.heard(from: received.source)
        } else {
            try checkPeers()   // nothing waiting: every heartbeat that came in has been counted
        }
        return received
    }

    /// Runs `work`, counting it as busy time; on the trace, a span of `kind` (arguments `a`, `b`, `c`:
    /// TraceEventKind) over the same interval.
    func busy<T>(_ kind: TraceEventKind, a: Int = 0, b: Int = 0, c: Int = 0, _ work: () throws -> T) rethrows -> T {
        let start = MonotonicClock.now()
        trace?.begin(kind, at: start, a: Int32(clamping: a), b: Int32(clamping: b), c: Int32(clamping: c))
        defer {
            let end = MonotonicClock.now()
            busySeconds += end - start
            trace?.end(at: end)
        }
        return try work()
    }

    /// Sends `message` to `rank`, as a span on the trace.
    func send(_ message: some PipelineMessage, to rank: Int) throws {
        guard let trace else { return try transport.send(message, to: rank) }
        let start = MonotonicClock.now()
        let envelope = message.message
        try transport.send(envelope, to: rank)
        trace.record(.send, from: start, to: MonotonicClock.now(), a: Int32(envelope.kind.rawValue), b: Int32(rank),
                     c: Int32(clamping: WireFormat.encodedSize(of: envelope) / 1024))
    }

    /// Runs `work` (not busy, not idle: loading, setup), as a span of `kind` on the trace.
    func span<T>(_ kind: TraceEventKind, _ work: () throws -> T) rethrows -> T {
        guard let trace else { return try work() }
        trace.begin(kind, at: MonotonicClock.now())
        defer { trace.end(at: MonotonicClock.now()) }
        return try work()
    }

    func forget(_ peer: Int) { monitor.forget(peer) }

    /// A worker's end, after its role stopped on the coordinator's `ShutdownMessage` (and sent its final
    /// stats): completes this rank's sends while receiving whatever comes meanwhile (`flush`), tells the
    /// coordinator with a `ShutdownMessage`, then keeps receiving (and dropping) messages until the
    /// coordinator's second `ShutdownMessage` says every worker's sends are complete, or `timeout`
    /// seconds have passed. Only then may this rank go on to MPI_Finalize: a peer whose large send to it
    /// was still under way would otherwise wait for ever (`Coordinator.shutdownWorkers`).
    func finishShutdown(timeout: Double) throws {
        try transport.flush()
        try transport.send(ShutdownMessage(reason: "sends complete"), to: 0)
        let deadline = MonotonicClock.now() + timeout
        while MonotonicClock.now() < deadline {
            if let (source, message) = try transport.receive(timeout: 0.05), source == 0, message.kind == .shutdown { break }
        }
        try transport.flush()
    }

    /// Sends this rank's final counters to the coordinator.
    func sendFinalStats(_ values: [String: Double]) throws {
        var all = values
        all["busy_seconds"] = busySeconds
        all["idle_seconds"] = idleSeconds
        all["wall_seconds"] = MonotonicClock.now() - started
        all["load_seconds"] = loadSeconds
        all["weight_bytes"] = Double(weightBytes)
        if let peak = ProcessMemory.peakResidentBytes { all["peak_rss_bytes"] = Double(peak) }
        statsSequence += 1
        // The last trace chunk goes first: the coordinator stops listening to a rank once it has its final stats.
        if let trace {
            try trace.flush(to: transport, isFinal: true)
            all["trace_seconds"] = trace.gatherSeconds
        }
        try transport.send(StatsMessage(sequence: statsSequence, isFinal: true, values: all), to: 0)
    }
}

/// Message kinds a rank did not expect are a bug (mismatched builds are caught by the wire format).
func unexpected(_ message: Message, from source: Int, at context: RankContext) -> RunError {
    .internalMessage("rank \(context.rank) (\(context.role)) got an unexpected \(message.kind) message from rank \(source)")
}

/// A flag set once from one thread and read from another.
/// What a rank does when its communication thread finds the transport stuck (another thread inside one
/// MPI call for over `stuckCallLimit`): set once by the role, called from the communication thread.
final class StuckHandler: @unchecked Sendable {
    private let lock = NSLock()
    private var body: ((Error) -> Void)?
    func set(_ handler: @escaping (Error) -> Void) { lock.lock(); body = handler; lock.unlock() }
    func callAsFunction(_ error: Error) {
        lock.lock()
        let handler = body
        lock.unlock()
        handler?(error)
    }
}

final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
