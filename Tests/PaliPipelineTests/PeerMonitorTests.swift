// Failure detection bookkeeping, with injected times.
import Testing
@testable import PaliPipeline

@Test func silentPeersAreThoseNotHeardForLong() throws {
    var monitor = PeerMonitor(peers: [1, 2, 3], now: 100)
    #expect(monitor.silentPeers(olderThan: 20, now: 119).isEmpty)
    monitor.heard(from: 2, at: 110)
    monitor.heard(from: 3, at: 105)
    #expect(monitor.silentPeers(olderThan: 20, now: 126) == [1, 3])
    #expect(monitor.silentPeers(olderThan: 20, now: 131) == [1, 2, 3])
    #expect(monitor.lastHeard(from: 2) == 110)
    monitor.heard(from: 2, at: 90)  // an old timestamp never moves time backwards
    #expect(monitor.lastHeard(from: 2) == 110)
    monitor.forget(1)
    #expect(monitor.peers == [2, 3])
    #expect(monitor.silentPeers(olderThan: 20, now: 126) == [3])
    // A message from a peer that is not watched does not make it watched (it does not heartbeat to us).
    let watched = monitor.heard(from: 7, at: 126)
    #expect(!watched)
    #expect(monitor.peers == [2, 3])
    #expect(monitor.lastHeard(from: 7) == nil)
    #expect(monitor.silentPeers(olderThan: 20, now: 1000) == [2, 3])
}

@Test func aPeerMayHaveItsOwnSilenceLimit() throws {
    let monitor = PeerMonitor(peers: [0, 2, 3], limits: [2: 24, 9: 1], now: 0)
    #expect(monitor.silenceLimit(of: 2, default: 20) == 24)
    #expect(monitor.silenceLimit(of: 0, default: 20) == 20)
    #expect(monitor.silentPeers(olderThan: 20, now: 22) == [0, 3])
    #expect(monitor.silentPeers(olderThan: 20, now: 25) == [0, 2, 3])
    #expect(monitor.peers == [0, 2, 3], "a limit for a peer that is not watched does not watch it")
    var two = PeerMonitor(peers: [0, 2], limits: [2: 24], now: 0)
    two.heard(from: 0, at: 10)
    #expect(throws: Never.self) { try two.requireAlive(olderThan: 20, rank: 1, now: 23) }
    #expect(throws: TransportError.peerSilent(rank: 1, peer: 2, seconds: 25)) {
        try two.requireAlive(olderThan: 20, rank: 1, now: 25)
    }
}

@Test func requireAliveNamesTheLongestSilentPeer() {
    var monitor = PeerMonitor(peers: [1, 2, 4], now: 0)
    monitor.heard(from: 1, at: 10)
    #expect(throws: Never.self) { try monitor.requireAlive(olderThan: 20, rank: 0, now: 15) }
    #expect(throws: TransportError.peerSilent(rank: 0, peer: 2, seconds: 25)) {
        try monitor.requireAlive(olderThan: 20, rank: 0, now: 25)
    }
    let text = TransportError.peerSilent(rank: 0, peer: 2, seconds: 25).description
    #expect(text.contains("rank 2 has been silent for 25 s"))
}

@Test func heartbeatTimer() {
    var timer = HeartbeatTimer(interval: 2, now: 0)
    #expect(timer.due(now: 1.9) == nil)
    #expect(timer.due(now: 2)?.sequence == 0)
    #expect(timer.due(now: 3) == nil)
    #expect(timer.due(now: 4.5)?.sentAt == 4.5)
    #expect(timer.sequence == 2)
}
