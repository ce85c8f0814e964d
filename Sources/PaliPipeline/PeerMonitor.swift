// Failure detection: who was heard from when, and who has gone silent.
//
// mpirun already ends the job when a rank dies (exits or is killed). What it cannot see is a rank that
// is alive but stuck (a deadlock, a hung filesystem). Each rank therefore records every message it
// receives (`heard`), sends a heartbeat to the peers that watch it every `heartbeatInterval` (a
// `HeartbeatTimer`; 64 bytes per peer, cheap enough not to track other traffic), and, whenever `receive(timeout:)` returns, checks `silentPeers(olderThan:)`.
// With the defaults (heartbeat every 2 s, silence limit 20 s, receive timeout ≤ 1 s) a hung peer ends
// the job within ~21 s, with an abort that names it. A rank must heartbeat between layers during long
// computations (a prefill can take longer than the silence limit on a slow CPU).

import Foundation

/// A monotonic clock in seconds (CLOCK_MONOTONIC; unaffected by wall-clock changes).
public enum MonotonicClock {
    public static func now() -> Double {
        Double(DispatchTime.now().uptimeNanoseconds) / 1e9
    }
}

/// When each peer was last heard from. Single-threaded: owned by a rank's main loop.
public struct PeerMonitor: Sendable {
    /// Default silence after which a peer counts as hung (seconds).
    public static let defaultSilenceLimit = 20.0
    /// Default heartbeat period (seconds).
    public static let defaultHeartbeatInterval = 2.0

    private var lastHeard: [Int: Double]

    /// Starts watching `peers`, counting them as heard at `now` (so a slow start is not a failure).
    public init(peers: some Sequence<Int>, now: Double = MonotonicClock.now()) {
        lastHeard = Dictionary(peers.map { ($0, now) }, uniquingKeysWith: { a, _ in a })
    }

    /// The peers watched, in order.
    public var peers: [Int] { lastHeard.keys.sorted() }

    /// Records a message from `peer` (any kind counts). Unknown peers start being watched.
    public mutating func heard(from peer: Int, at time: Double = MonotonicClock.now()) {
        lastHeard[peer] = max(lastHeard[peer] ?? time, time)
    }

    /// Stops watching `peer` (it finished and said so).
    public mutating func forget(_ peer: Int) {
        lastHeard[peer] = nil
    }

    /// When `peer` was last heard from, nil if it is not watched.
    public func lastHeard(from peer: Int) -> Double? { lastHeard[peer] }

    /// Peers not heard from for more than `seconds`, sorted by rank.
    public func silentPeers(olderThan seconds: Double, now: Double = MonotonicClock.now()) -> [Int] {
        lastHeard.filter { now - $0.value > seconds }.keys.sorted()
    }

    /// Throws `.peerSilent` for the longest-silent peer past `seconds`, if any. `rank` is the caller's.
    public func requireAlive(olderThan seconds: Double = defaultSilenceLimit, rank: Int,
                             now: Double = MonotonicClock.now()) throws {
        let silent = lastHeard.filter { now - $0.value > seconds }
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
