// The report page: records counted, failures listed, boxes drawn over the image, record text escaped.
import Foundation
import PaliBatch
import PaliJSON
import PaliReport
import Testing

private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

@Test func pageCountsEscapesAndDrawsBoxes() throws {
    let images = fixtures.appendingPathComponent("demo")
    let image = try #require(try FileManager.default.contentsOfDirectory(atPath: images.appendingPathComponent("images").path)
        .sorted().first { $0.hasSuffix(".png") })
    let box = OutputRecord(id: "a<1>", image: "images/\(image)", prompt: "detect cat & dog", status: .ok,
                           text: "<loc0000><loc0000><loc0512><loc0512> cat", tokens: [1],
                           taskFields: [("objects", .array([.object([("label", .string("cat")),
                                                                     ("box", .array([.int(1), .int(2), .int(30), .int(40)]))])]))])
    let entry = ManifestEntry(line: 2, id: "b", image: "missing.png", imagePath: nil, pathError: nil, prompt: "caption")
    let failed = OutputRecord.failure(entry, kind: RecordErrorKind.missingImage, message: "missing.png: no such file")
    var tally = ReportTally(limit: 10)
    for line in [box.jsonLine, failed.jsonLine] {
        tally.add(ReportRecord(try #require(OutputRecord(jsonLine: Substring(line)))))
    }
    #expect(tally.total == 2 && tally.ok == 1 && tally.failedCount == 1 && tally.withObjects == 1)

    let html = ReportPage(title: "run <x>", shards: ["shard-00000.jsonl"], tally: tally,
                          unreadable: [("shard-00000.jsonl:3", "not json")], imageBase: images).html()
    #expect(html.hasPrefix("<!DOCTYPE html>"))
    #expect(html.contains("<title>run &lt;x&gt;</title>"))
    #expect(html.contains("a&lt;1&gt;") && !html.contains("a<1>"))
    #expect(html.contains("detect cat &amp; dog"))
    #expect(html.contains("<span>2 records</span>") && html.contains("1 error"))
    #expect(html.contains("missing_image") && html.contains("image not found"))
    #expect(html.contains("<rect x=\"1\" y=\"2\" width=\"29\" height=\"38\""))
    #expect(html.contains("data:image/png;base64,"))
    #expect(html.contains("Unreadable lines (1)"))
}

/// The timeline: one inline SVG lane per rank, busy shares beside the names, many tiny spans merged into
/// few rectangles, nothing loaded from elsewhere.
@Test func timelineDrawsALanePerRankOffline() {
    var spans: [TraceSpan] = []
    for i in 0..<5000 {   // 5000 steps of 1 ms with 1 ms idle after each: 10 s
        spans.append(TraceSpan(name: "micro-batch \(i % 2)", category: TraceFile.busy, start: Double(i) * 2000, duration: 1000,
                               args: [("micro_batch", Int64(i % 2))]))
        spans.append(TraceSpan(name: "idle", category: TraceFile.idle, start: Double(i) * 2000 + 1000, duration: 1000))
    }
    let tracks = [TraceTrack(rank: 0, role: "coordinator", host: "a<b>"),
                  TraceTrack(rank: 1, role: "stage 0 of replica 0", host: "a<b>", complete: false, spans: spans)]
    let html = ReportPage(title: "t", shards: [], tally: ReportTally(limit: 1), unreadable: [], imageBase: fixtures,
                          timeline: TimelineSection(tracks: tracks, source: "trace.json")).html()
    #expect(html.contains("<h2>Timeline</h2>"))
    #expect(html.components(separatedBy: "<svg class=\"lane\"").count - 1 == 2)
    #expect(html.contains("rank 1: stage 0 of replica 0 @ a&lt;b&gt; · busy 50.0%"))
    #expect(html.contains("incomplete"))
    #expect(!html.contains("<script") && !html.contains("src=\"http") && !html.contains("href=\"http"))
    // 10 000 spans over 1100 px: drawn as at most a few rectangles per pixel column.
    let rects = html.components(separatedBy: "<rect").count - 1
    #expect(rects < 3 * 1100, "\(rects) rectangles")
}
