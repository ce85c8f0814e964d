// The trace file (`run --trace`): what TraceFile writes is JSON in the Trace Event Format that its reader
// gives back span for span; busy fractions come from busy and idle spans only; overlapping spans that do
// not nest are found.
import Foundation
import PaliBatch
import Testing

private func sampleTracks() -> [TraceTrack] {
    [TraceTrack(rank: 0, role: "coordinator", host: "h0",
                spans: [TraceSpan(name: "setup", category: TraceFile.setup, start: 0, duration: 1000),
                        TraceSpan(name: "idle", category: TraceFile.idle, start: 1000, duration: 0.5)]),
     TraceTrack(rank: 1, role: "stage 0 of replica 0", host: "h\"1", clockOffset: 0.0125, clockUncertainty: 0.000_05,
                complete: false,
                spans: [TraceSpan(name: "load weights", category: TraceFile.load, start: 10, duration: 5000),
                        TraceSpan(name: "micro-batch 1", category: TraceFile.busy, start: 6000, duration: 300.25,
                                  args: [("micro_batch", 1), ("step", 7), ("rows", 3)]),
                        TraceSpan(name: "send hidden", category: TraceFile.send, start: 6300, duration: 0.125,
                                  args: [("to", 2), ("kilobytes", 0)]),
                        TraceSpan(name: "idle", category: TraceFile.idle, start: 6300.25, duration: 100)])]
}

@Test func traceFilesRoundTripThroughTheReader() throws {
    let tracks = sampleTracks()
    let text = String(decoding: TraceFile.json(tracks, notes: [("outcome", "complete")]), as: UTF8.self)
    // Valid JSON for a reader that is not ours, with the top-level members the format names.
    let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    #expect(object["traceEvents"] is [Any] && object["displayTimeUnit"] as? String == "ms")
    #expect((object["otherData"] as? [String: Any])?["outcome"] as? String == "complete")
    let read = try TraceFile.parse(Data(text.utf8))
    #expect(read.map(\.rank) == [0, 1])
    #expect(read[1].role == "stage 0 of replica 0" && read[1].host == "h\"1" && !read[1].complete && read[0].complete)
    #expect(read[0].spans == tracks[0].spans && read[1].spans == tracks[1].spans)
    // busy / (busy + idle): loading and sends are neither.
    #expect(abs(read[1].busyFraction! - 300.25 / 400.25) < 1e-12)
    #expect(read[0].busyFraction == 0)
    #expect(TraceFile.nestingProblems(read[1]).isEmpty)
}

@Test func overlappingSpansThatDoNotNestAreFound() {
    var track = sampleTracks()[1]
    track.spans.append(TraceSpan(name: "late", category: TraceFile.send, start: 6200, duration: 200))
    let problems = TraceFile.nestingProblems(track)
    #expect(problems.first?.contains("late") == true && problems.first?.contains("overlaps micro-batch 1") == true, "\(problems)")
}

@Test func malformedTracesAreRefusedWithTheReason() {
    func reason(_ text: String) -> String? {
        do { _ = try TraceFile.parse(Data(text.utf8)); return nil } catch { return "\(error)" }
    }
    #expect(reason("[")?.contains("not valid JSON") == true)
    #expect(reason("{\"events\":[]}")?.contains("traceEvents") == true)
    #expect(reason(#"{"traceEvents":[{"ph":"X","pid":0,"tid":0,"name":"a","ts":1}]}"#)?.contains("ts or dur") == true)
    #expect(reason(#"{"traceEvents":[{"ph":"X","pid":0,"tid":0,"name":"a","ts":1,"dur":-2}]}"#)?.contains("negative") == true)
    #expect(reason(#"{"traceEvents":[{"ph":"X","tid":0,"name":"a","ts":1,"dur":2}]}"#)?.contains("lacks") == true)
}
