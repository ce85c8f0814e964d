// Clock alignment of `run --trace` (TraceCollector): a rank on another host is put on rank 0's clock by
// the offset its heartbeats give both ways, θ = (d₁ − d₂)/2 with error ≤ (d₁ + d₂)/2; a rank on rank 0's
// host keeps its clock; a rank that sent nothing has an empty, incomplete track.
import Foundation
import Testing
import PaliBatch
import PaliPipeline
@testable import PaliRun

@Test func anotherHostsClockIsShiftedByTheHeartbeatOffset() throws {
    let layout = try Layout(visionRanks: 1, stages: 2, replicas: 1)   // ranks 0..3
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("trace-clock-\(UUID().uuidString).json")
    defer { try? FileManager.default.removeItem(at: url) }
    // Rank 0's clock runs θ = 1000 s ahead of rank 1's (another host); messages take 1 ms one way, 3 ms the other.
    let theta = 1000.0
    let own = TraceRecorder()
    own.heartbeat(from: 1, sentAt: 5.0, arrived: 5.0 + theta + 0.001)
    own.heartbeat(from: 1, sentAt: 7.0, arrived: 7.0 + theta + 0.250)   // queued: the minimum ignores it
    own.record(.idle, from: 1000.5, to: 1001.0)
    let collector = TraceCollector(url: url, layout: layout, origin: 1000.0)
    let sentAt0 = 1006.0
    let d2 = (sentAt0 - theta + 0.003) - sentAt0    // the worker's smallest (arrival − sentAt) from rank 0
    collector.add(TraceMessage(isFinal: true, host: "elsewhere-\(UUID().uuidString)", clock: d2,
                               events: [.init(start: 7_000_000_000, duration: 2_000_000, kind: TraceEventKind.stageStep.rawValue,
                                              a: 1, b: 4, c: 3)]),
                  from: 1)
    // Rank 2 is on this host: its clock is rank 0's.
    collector.add(TraceMessage(isFinal: true, host: OutputLock.hostName, clock: 123,
                               events: [.init(start: 1_002_000_000_000, duration: 1_000, kind: TraceEventKind.idle.rawValue, b: -1)]),
                  from: 2)
    try collector.write(own: own, outcome: "complete")
    let tracks = try TraceFile.read(url)
    #expect(tracks.map(\.rank) == [0, 1, 2, 3])
    // θ estimated as 1000 − 0.001 s (half the 2 ms asymmetry), error bound 2 ms.
    let step = try #require(tracks[1].spans.first)
    #expect(step.name == "micro-batch 1" && step.args.map(\.0) == ["micro_batch", "step", "rows"])
    #expect(abs(step.start - (7.0 + theta - 0.001 - 1000.0) * 1e6) < 0.01, "\(step.start)")
    #expect(abs(step.duration - 2000) < 0.01)
    let text = try String(contentsOf: url, encoding: .utf8)
    #expect(text.contains("clock +999999.000 ms ± 2.000 ms"), "the offset and its bound are in the process labels")
    #expect(abs(tracks[2].spans[0].start - 2e6) < 0.01)
    #expect(tracks[0].spans[0].start == 0.5e6)
    #expect(tracks[3].spans.isEmpty && !tracks[3].complete)
    #expect(tracks[1].complete && tracks[2].complete)
}
