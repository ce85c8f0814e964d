// Failure detection: who was heard from when, and who has gone silent.
//
// mpirun already ends the job when a rank dies (exits or is killed). What it cannot see is a rank that
// is alive but stuck (a deadlock, a hung node, a lost link). Who watches whom is fixed by the layout
// (`Layout.watchedPeers`): rank 0 watches every worker; a worker watches rank 0 and the ranks it
// exchanges data with (its replica's vision ranks, stage 0, the neighbouring stages). Each rank sends
// a heartbeat to exactly the ranks that watch it (`Layout.watchers`, the inverse of the watch sets, so
// the two cannot disagree), from its communication thread: at once when the thread starts (before the
// rank reads its tokenizer or loads weights) and then every `heartbeatInterval` (a `HeartbeatTimer`;
// 64 bytes per peer, cheap enough not to track other traffic). That thread never waits on computation,
// so a long load, vision batch or prefill is never silence. Each rank records every message it
// receives from a watched peer (`heard`; a message from any other rank does not make it watched, as it
// does not heartbeat to us), and whenever `receive(timeout:)` finds nothing waiting checks
// `requireAlive`. With the defaults (heartbeat every 2 s, silence limit 20 s, receive timeout ≤ 1 s) a
// hung peer ends the job within ~21 s, with an abort that names it. A worker's watch on another worker
// has a longer limit (`limits`: +2 heartbeat intervals), so rank 0, which keeps what is whole and
// writes stats.json before it ends the job, is the one that notices a hung worker.

import Foundation

/// A monotonic clock in seconds (CLOCK_MONOTONIC; unaffected by wall-clock changes).
public enum MonotonicClock {
    public static func now() -> Double {
        Double(DispatchTime.now().uptimeNanoseconds) / 1e9
    }
}

/// When each watched peer was last heard from. Single-threaded: owned by a rank's main loop.
///
/// The set of watched peers is fixed when the monitor is made (`Layout.watchedPeers`) and only shrinks
/// (`forget`): a message from a peer that is not watched is not a reason to start watching it, since
/// only the peers that watch a rank receive its heartbeats (`Layout.watchers`).
public struct PeerMonitor: Sendable {
    /// Default silence after which a peer counts as hung (seconds).
    public static let defaultSilenceLimit = 20.0
    /// Default heartbeat period (seconds).
    public static let defaultHeartbeatInterval = 2.0

    private var lastHeard: [Int: Double]
    /// Silence limits of single peers, overriding the limit given to `requireAlive`.
    private var limits: [Int: Double]

    /// Starts watching `peers`, counting them as heard at `now` (so a slow start is not a failure).
    /// `limits` gives some peers their own silence limit (seconds), overriding `requireAlive`'s.
    public init(peers: some Sequence<Int>, limits: [Int: Double] = [:], now: Double = MonotonicClock.now()) {
        let watched = Dictionary(peers.map { ($0, now) }, uniquingKeysWith: { a, _ in a })
        lastHeard = watched
        self.limits = limits.filter { watched[$0.key] != nil }
    }

    /// The peers watched, in order.
    public var peers: [Int] { lastHeard.keys.sorted() }

    /// Records a message from `peer` (any kind counts). A peer that is not watched is ignored (it does
    /// not start being watched). Returns whether `peer` is watched.
    @discardableResult
    public mutating func heard(from peer: Int, at time: Double = MonotonicClock.now()) -> Bool {
        guard let last = lastHeard[peer] else { return false }
        lastHeard[peer] = max(last, time)
        return true
    }

    /// Stops watching `peer` (it finished and said so).
    public mutating func forget(_ peer: Int) {
        lastHeard[peer] = nil
        limits[peer] = nil
    }

    /// When `peer` was last heard from, nil if it is not watched.
    public func lastHeard(from peer: Int) -> Double? { lastHeard[peer] }

    /// The silence limit of `peer`: its own, or `seconds`.
    public func silenceLimit(of peer: Int, default seconds: Double) -> Double { limits[peer] ?? seconds }

    /// Peers not heard from for more than their silence limit (`seconds` unless they have their own),
    /// sorted by rank.
    public func silentPeers(olderThan seconds: Double, now: Double = MonotonicClock.now()) -> [Int] {
        lastHeard.filter { now - $0.value > silenceLimit(of: $0.key, default: seconds) }.keys.sorted()
    }

    /// Throws `.peerSilent` for the longest-silent peer past its silence limit (`seconds` unless it has
    /// its own), if any. `rank` is the caller's.
    public func requireAlive(olderThan seconds: Double = defaultSilenceLimit, rank: Int,
                             now: Double = MonotonicClock.now()) throws {
        let silent = lastHeard.filter { now - $0.value > silenceLimit(of: $0.key, default: seconds) }
        guard let (peer, time) = silent.min(by: { ($0.value, $0.key) < ($1.value, $1.key) }) else { return }
        throw TransportError.peerSilent(rank: rank, peer: peer, seconds: now - time)
    }
}

/// Tells a rank when to send its next heartbeat.
public struct HeartbeatTimer: Sendable {
    public let interval: Double
    private var last: Double
    /// The next heartbeat's sequence number.
    public private(set) var sequence: Int64 = 0

    public init(interval: Double = PeerMonitor.defaultHeartbeatInterval, now: Double = MonotonicClock.now()) {
        self.interval = interval
        self.last = now
    }

    /// A heartbeat to send (to every watched peer) if `interval` has passed since the last one, else nil.
    public mutating func due(now: Double = MonotonicClock.now()) -> HeartbeatMessage? {
        guard now - last >= interval else { return nil }
        last = now
        defer { sequence += 1 }
        return HeartbeatMessage(sequence: sequence, sentAt: now)
    }
}
