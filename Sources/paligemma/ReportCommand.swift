// `paligemma report`: reads a run's shards and writes the HTML page of PaliReport (ReportPage) over them.
import ArgumentParser
import Foundation
import PaliBatch
import PaliReport

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write OUTPUT-DIR/report.html: images with boxes and masks, answers, and errors of a run.",
        discussion: """
            Reads every shard-*.jsonl of the output folder. Relative image paths resolve against --image-root,
            else the folder of --manifest, else the folder of the manifest recorded in run.json ("manifest"),
            else the current directory. Images are embedded as they are on disk (JPEG or PNG); only the first
            --limit records are shown as cards (all records are counted in the summary). With --trace FILE (or a
            trace.json in the output folder, e.g. from `run --trace OUTPUT-DIR/trace.json`) the page also draws the
            run's timeline: one SVG lane per rank, so the pipeline's idle bubbles can be seen offline.
            """)

    @Option(help: "The run's output folder (shard-*.jsonl, run.json).") var outputDir: String
    @Option(help: "Folder that relative image paths are relative to.") var imageRoot: String?
    @Option(help: "The run's manifest (relative image paths are relative to its folder).") var manifest: String?
    @Option(help: "Most records shown as cards with their image.") var limit: Int = 500
    @Option(help: "Report file (default: OUTPUT-DIR/report.html).") var output: String?
    @Option(help: ArgumentHelp("A timeline written by `run --trace` to draw (default: OUTPUT-DIR/trace.json if present).",
                               valueName: "file")) var trace: String?

    func validate() throws {
        if limit < 0 { throw ValidationError("--limit must be ≥ 0") }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: outputDir, isDirectory: &isDir), isDir.boolValue else {
            throw ValidationError("--output-dir \(outputDir): no such folder (give the folder a run wrote its shards to)")
        }
    }

    func run() throws {
        let dir = URL(fileURLWithPath: outputDir)
        let shardNames = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { $0.hasPrefix("shard-") && $0.hasSuffix(".jsonl") }.sorted()
        var tally = ReportTally(limit: limit)
        var unreadable: [(String, String)] = []
        for name in shardNames {
            let text = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                if let record = OutputRecord(jsonLine: line) {
                    tally.add(ReportRecord(record))
                } else {
                    unreadable.append(("\(name):\(n + 1)", String(line.prefix(200))))
                }
            }
        }
        let base = imageBase(outputDir: dir)
        var timeline: TimelineSection?
        let traceURL = trace.map { URL(fileURLWithPath: $0) } ?? dir.appendingPathComponent("trace.json")
        if trace != nil || FileManager.default.fileExists(atPath: traceURL.path) {
            timeline = TimelineSection(tracks: try TraceFile.read(traceURL), source: traceURL.path)
        }
        let page = ReportPage(title: "PaliGemma report: \(dir.lastPathComponent)", shards: shardNames,
                              tally: tally, unreadable: unreadable, imageBase: base, timeline: timeline)
        let target = output.map { URL(fileURLWithPath: $0) } ?? dir.appendingPathComponent("report.html")
        try Data(page.html().utf8).write(to: target, options: .atomic)
        print("\(target.path): \(tally.total) records (\(tally.ok) ok, \(tally.failedCount) error) from "
              + "\(shardNames.count) shard\(shardNames.count == 1 ? "" : "s")"
              + (tally.total > limit ? "; first \(limit) shown" : ""))
    }

    /// The folder relative image paths are relative to.
    func imageBase(outputDir: URL) -> URL {
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        func folder(ofManifest path: String) -> URL {
            let url = path.hasPrefix("/") ? URL(fileURLWithPath: path) : cwd.appendingPathComponent(path)
            var isDir: ObjCBool = false
            // A folder of images is its own base.
            if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue { return url }
            return url.deletingLastPathComponent()
        }
        if let imageRoot { return imageRoot.hasPrefix("/") ? URL(fileURLWithPath: imageRoot) : cwd.appendingPathComponent(imageRoot) }
        if let manifest { return folder(ofManifest: manifest) }
        if let info = try? RunInfo.load(from: outputDir),
           let m = info.settings.first(where: { $0.0 == "manifest" })?.1.stringValue {
            return folder(ofManifest: m)
        }
        return cwd
    }
}
