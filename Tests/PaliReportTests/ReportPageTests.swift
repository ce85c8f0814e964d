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
