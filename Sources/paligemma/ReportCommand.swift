// `paligemma report`: one self-contained HTML page over a run's output folder, to look at the results:
// each image (embedded as a data URI) with its prompt and answer, boxes (SVG rectangles with labels)
// and masks (COCO RLE decoded into SVG paths, semi-transparent) drawn over it, and the failed jobs with
// their error kind and message. Text from records is HTML-escaped everywhere. See docs/tasks.md.
import ArgumentParser
import Foundation
import PaliBatch
import PaliGeneration
import PaliImage
import PaliJSON

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write OUTPUT-DIR/report.html: images with boxes and masks, answers, and errors of a run.",
        discussion: """
            Reads every shard-*.jsonl of the output folder. Relative image paths resolve against --image-root,
            else the folder of --manifest, else the folder of the manifest recorded in run.json ("manifest"),
            else the current directory. Images are embedded as they are on disk (JPEG or PNG); only the first
            --limit records are shown as cards (all records are counted in the summary).
            """)

    @Option(help: "The run's output folder (shard-*.jsonl, run.json).") var outputDir: String
    @Option(help: "Folder that relative image paths are relative to.") var imageRoot: String?
    @Option(help: "The run's manifest (relative image paths are relative to its folder).") var manifest: String?
    @Option(help: "Most records shown as cards with their image.") var limit: Int = 500
    @Option(help: "Report file (default: OUTPUT-DIR/report.html).") var output: String?

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
        let page = ReportPage(title: "PaliGemma report: \(dir.lastPathComponent)", shards: shardNames,
                              tally: tally, unreadable: unreadable, imageBase: base)
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

/// The fields of one output record the report shows.
struct ReportRecord {
    struct Object {
        var label: String
        var box: [Int]?
        var mask: COCORLE?
    }

    var id: String
    var image: String
    var prompt: String
    var status: String
    var text: String?
    var objects: [Object]
    var problems: [String]
    var errorKind: String?
    var errorMessage: String?

    /// The fields of `record` the page shows; task objects that do not read as such are left out.
    init(_ record: OutputRecord) {
        id = record.id
        image = record.image
        prompt = record.prompt
        status = record.status.rawValue
        text = record.text
        if case .array(let items)? = record.taskField("objects") {
            objects = items.compactMap { item in
                guard case .object = item else { return nil }
                var mask: COCORLE?
                if case .array(let size)? = item["mask"]?["size"], let counts = item["mask"]?["counts"]?.stringValue {
                    mask = COCORLE(size: size.compactMap(\.intValue), counts: counts)
                }
                var box: [Int]?
                if case .array(let bins)? = item["box"] { box = bins.compactMap(\.intValue) }
                return Object(label: item["label"]?.stringValue ?? "", box: box?.count == 4 ? box : nil, mask: mask)
            }
        } else {
            objects = []
        }
        if case .array(let items)? = record.taskField("problems") { problems = items.compactMap(\.stringValue) } else { problems = [] }
        errorKind = record.error?.kind
        errorMessage = record.error?.message
    }
}

/// Counts over all records, and the records the page shows (the first `limit`, and the first
/// `limit` failures), so a run of any size is read in bounded memory.
struct ReportTally {
    let limit: Int
    var total = 0, ok = 0, failedCount = 0, withObjects = 0, withProblems = 0
    var shown: [ReportRecord] = []
    var failed: [ReportRecord] = []

    init(limit: Int) { self.limit = limit }

    mutating func add(_ r: ReportRecord) {
        total += 1
        if r.status == "ok" { ok += 1 } else {
            failedCount += 1
            if failed.count < max(limit, 1) { failed.append(r) }
        }
        if !r.objects.isEmpty { withObjects += 1 }
        if !r.problems.isEmpty { withProblems += 1 }
        if shown.count < limit { shown.append(r) }
    }
}

/// The HTML page.
struct ReportPage {
    var title: String
    var shards: [String]
    var tally: ReportTally
    var unreadable: [(String, String)]
    var imageBase: URL

    static let palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
                          "#fabed4", "#469990"]

    func html() -> String {
        let t = tally
        var h = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>\(esc(title))</title>
            <style>
            body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #222; background: #fafafa; }
            h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 20px 0 8px; }
            .summary span { display: inline-block; margin-right: 14px; padding: 3px 8px; border-radius: 4px; background: #eee; }
            .summary .ok { background: #d8f0d8; } .summary .err { background: #f6d3d3; }
            table { border-collapse: collapse; background: #fff; } td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
            .grid { display: flex; flex-wrap: wrap; gap: 12px; }
            .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px; width: 360px; }
            .card.error { border-color: #d66; }
            .card svg { width: 100%; height: auto; display: block; background: #eee; }
            .card .noimg { padding: 30px 8px; background: #eee; color: #777; text-align: center; }
            .id { font-weight: 600; word-break: break-all; } .prompt { color: #555; } .status-error { color: #b00; font-weight: 600; }
            .text { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, monospace; font-size: 12px; background: #f4f4f4; padding: 4px; margin: 4px 0; }
            .objects { margin: 4px 0; padding-left: 18px; } .problem { color: #a60; } .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
            .note { color: #777; }
            </style></head><body>
            <h1>\(esc(title))</h1>
            <p class="summary"><span>\(t.total) records</span><span class="ok">\(t.ok) ok</span><span class="err">\(t.failedCount) error</span><span>\(t.withObjects) with objects</span>\(t.withProblems > 0 ? "<span>\(t.withProblems) with problems</span>" : "")<span>\(shards.count) shard\(shards.count == 1 ? "" : "s")</span></p>

            """
        if t.total > t.limit {
            h += "<p class=\"note\">Showing the first \(t.limit) of \(t.total) records (raise --limit to see more).</p>\n"
        }
        if shards.isEmpty { h += "<p class=\"note\">No shard-*.jsonl files in this folder.</p>\n" }
        if t.failedCount > 0 {
            h += "<h2>Errors (\(t.failedCount))</h2>\n<table><tr><th>id</th><th>image</th><th>kind</th><th>message</th></tr>\n"
            for r in t.failed {
                h += "<tr><td>\(esc(r.id))</td><td>\(esc(r.image))</td><td>\(esc(r.errorKind ?? r.status))</td><td>\(esc(r.errorMessage ?? ""))</td></tr>\n"
            }
            if t.failedCount > t.failed.count { h += "<tr><td colspan=\"4\" class=\"note\">… \(t.failedCount - t.failed.count) more</td></tr>\n" }
            h += "</table>\n"
        }
        if !unreadable.isEmpty {
            h += "<h2>Unreadable lines (\(unreadable.count))</h2>\n<table><tr><th>where</th><th>line</th></tr>\n"
            for (place, line) in unreadable.prefix(100) { h += "<tr><td>\(esc(place))</td><td>\(esc(line))</td></tr>\n" }
            h += "</table>\n"
        }
        h += "<h2>Records</h2>\n<div class=\"grid\">\n"
        for (i, r) in t.shown.enumerated() { h += card(r, index: i) }
        h += "</div>\n</body></html>\n"
        return h
    }

    func card(_ r: ReportRecord, index: Int) -> String {
        var h = "<div class=\"card\(r.status == "ok" ? "" : " error")\">\n"
        h += figure(r, index: index)
        h += "<div class=\"id\">\(esc(r.id))</div>"
        h += "<div class=\"prompt\">\(esc(r.prompt))</div>"
        if r.status != "ok" {
            h += "<div class=\"status-error\">\(esc(r.errorKind ?? r.status)): \(esc(r.errorMessage ?? ""))</div>"
        }
        if let text = r.text { h += "<div class=\"text\">\(esc(text))</div>" }
        if !r.objects.isEmpty {
            h += "<ol class=\"objects\">"
            for (i, o) in r.objects.enumerated() {
                let color = Self.palette[i % Self.palette.count]
                let box = o.box.map { "[\($0.map(String.init).joined(separator: ", "))]" } ?? "no box"
                let area = o.mask?.decode().map { " · mask \($0.reduce(0) { $0 + Int($1) }) px" } ?? (o.mask != nil ? " · bad mask" : "")
                h += "<li><span class=\"swatch\" style=\"background:\(color)\"></span>\(esc(o.label.isEmpty ? "(no label)" : o.label)) \(box)\(area)</li>"
            }
            h += "</ol>"
        }
        for p in r.problems { h += "<div class=\"problem\">⚠ \(esc(p))</div>" }
        return h + "\n</div>\n"
    }

    /// The image with its overlays, or a note saying why there is none.
    /// Width of the image in the card, in CSS pixels (card width minus padding): overlay sizes are
    /// given in screen pixels and converted to image units, so tiny and huge images look alike.
    static let displayWidth = 344.0

    func figure(_ r: ReportRecord, index: Int) -> String {
        guard !r.image.isEmpty else { return "<div class=\"noimg\">no image</div>\n" }
        let url = r.image.hasPrefix("/") ? URL(fileURLWithPath: r.image) : imageBase.appendingPathComponent(r.image)
        guard let bytes = try? Data(contentsOf: url) else {
            return "<div class=\"noimg\">image not found: \(esc(url.path))</div>\n"
        }
        let header: ImageHeader
        do {
            header = try ImageDecoder().header(data: Array(bytes), name: url.path)
        } catch {
            return "<div class=\"noimg\">unreadable image: \(esc("\(error)"))</div>\n"
        }
        let (w, hgt) = (header.width, header.height)
        let mime = header.format == .png ? "image/png" : "image/jpeg"
        let unit = Double(w) / Self.displayWidth   // image units per screen pixel
        let stroke = 2 * unit, font = 13 * unit
        var s = "<svg viewBox=\"0 0 \(w) \(hgt)\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"\(esc(r.image))\">"
        s += "<image href=\"data:\(mime);base64,\(bytes.base64EncodedString())\" x=\"0\" y=\"0\" width=\"\(w)\" height=\"\(hgt)\"/>"
        // Masks: a light tint plus diagonal stripes of the object's colour, visible over any image.
        for (i, o) in r.objects.enumerated() {
            let color = Self.palette[i % Self.palette.count]
            guard let m = o.mask, m.height == hgt, m.width == w, let bits = m.decode() else { continue }
            let id = "m\(index)-\(i)", path = Self.maskPath(bits, width: w, height: hgt)
            s += "<defs><pattern id=\"\(id)\" width=\"\(fmt(8 * unit))\" height=\"\(fmt(8 * unit))\" patternUnits=\"userSpaceOnUse\" "
                + "patternTransform=\"rotate(45)\"><rect width=\"\(fmt(3 * unit))\" height=\"\(fmt(8 * unit))\" fill=\"\(color)\"/></pattern></defs>"
            s += "<path d=\"\(path)\" fill=\"#fff\" fill-opacity=\"0.35\" shape-rendering=\"crispEdges\"/>"
            s += "<path d=\"\(path)\" fill=\"url(#\(id))\" fill-opacity=\"0.9\" shape-rendering=\"crispEdges\"/>"
        }
        for (i, o) in r.objects.enumerated() {
            guard let b = o.box else { continue }
            let color = Self.palette[i % Self.palette.count]
            s += "<rect x=\"\(b[0])\" y=\"\(b[1])\" width=\"\(max(0, b[2] - b[0]))\" height=\"\(max(0, b[3] - b[1]))\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"\(fmt(stroke))\"/>"
            if !o.label.isEmpty {
                // A filled tag above the box (inside it when the box touches the top edge).
                let shown = o.label.count > 40 ? String(o.label.prefix(39)) + "…" : o.label
                let tagHeight = font * 1.3, tagWidth = (Double(shown.count) * 0.6 * font + 6 * unit)
                let top = Double(b[1]) - tagHeight >= 0 ? Double(b[1]) - tagHeight : Double(b[1])
                s += "<rect x=\"\(b[0])\" y=\"\(fmt(top))\" width=\"\(fmt(tagWidth))\" height=\"\(fmt(tagHeight))\" fill=\"\(color)\" fill-opacity=\"0.85\"/>"
                s += "<text x=\"\(fmt(Double(b[0]) + 3 * unit))\" y=\"\(fmt(top + font * 1.0))\" font-size=\"\(fmt(font))\" "
                    + "font-family=\"sans-serif\" fill=\"#fff\">\(esc(shown))</text>"
            }
        }
        return s + "</svg>\n"
    }

    /// One SVG path over the mask's horizontal runs of foreground pixels.
    static func maskPath(_ bits: [UInt8], width w: Int, height h: Int) -> String {
        var d = ""
        for y in 0..<h {
            var x = 0
            while x < w {
                guard bits[y * w + x] != 0 else { x += 1; continue }
                let start = x
                while x < w && bits[y * w + x] != 0 { x += 1 }
                d += "M\(start) \(y)h\(x - start)v1h-\(x - start)z"
            }
        }
        return d
    }

    func fmt(_ v: Double) -> String { String(format: "%.2f", v) }
}

/// Text and attribute values, HTML-escaped.
private func esc(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.count)
    for c in s.unicodeScalars {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default: out.unicodeScalars.append(c)
        }
    }
    return out
}
