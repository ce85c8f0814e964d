// The HTML report over a run's records (`paligemma report`): one self-contained page with each image
// (embedded as a data URI) with its prompt and answer, boxes (SVG rectangles with labels) and masks
// (COCO RLE decoded into SVG paths, semi-transparent) drawn over it, and the failed jobs with their error
// kind and message. Text from records is HTML-escaped everywhere. See docs/tasks.md.
import Foundation
import PaliBatch
import PaliGeneration
import PaliImage
import PaliJSON

/// The fields of one output record the report shows.
public struct ReportRecord {
    public struct Object {
        public var label: String
        public var box: [Int]?
        public var mask: COCORLE?
    }

    public var id: String
    public var image: String
    public var prompt: String
    public var status: String
    public var text: String?
    public var objects: [Object]
    public var problems: [String]
    public var errorKind: String?
    public var errorMessage: String?

    /// The fields of `record` the page shows; task objects that do not read as such are left out.
    public init(_ record: OutputRecord) {
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
public struct ReportTally {
    public let limit: Int
    public private(set) var total = 0, ok = 0, failedCount = 0, withObjects = 0, withProblems = 0
    public private(set) var shown: [ReportRecord] = []
    public private(set) var failed: [ReportRecord] = []

    public init(limit: Int) { self.limit = limit }

    public mutating func add(_ r: ReportRecord) {
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
public struct ReportPage {
    public var title: String
    public var shards: [String]
    public var tally: ReportTally
    /// Lines that are not records: (shard:line, the line's start).
    public var unreadable: [(String, String)]
    /// The folder relative image paths are relative to.
    public var imageBase: URL
    /// The run's timeline (`run --trace`), drawn after the summary when given.
    public var timeline: TimelineSection?

    public init(title: String, shards: [String], tally: ReportTally, unreadable: [(String, String)], imageBase: URL,
                timeline: TimelineSection? = nil) {
        self.title = title; self.shards = shards; self.tally = tally; self.unreadable = unreadable; self.imageBase = imageBase
        self.timeline = timeline
    }

    static let palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
                          "#fabed4", "#469990"]

    public func html() -> String {
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
            .timeline { overflow-x: auto; background: #fff; border: 1px solid #ddd; padding: 6px; }
            .timeline svg { display: block; } .lane-label { font-size: 12px; margin-top: 4px; white-space: nowrap; }
            </style></head><body>
            <h1>\(esc(title))</h1>
            <p class="summary"><span>\(t.total) records</span><span class="ok">\(t.ok) ok</span><span class="err">\(t.failedCount) error</span><span>\(t.withObjects) with objects</span>\(t.withProblems > 0 ? "<span>\(t.withProblems) with problems</span>" : "")<span>\(shards.count) shard\(shards.count == 1 ? "" : "s")</span></p>

            """
        if t.total > t.limit {
            h += "<p class=\"note\">Showing the first \(t.limit) of \(t.total) records (raise --limit to see more).</p>\n"
        }
        if shards.isEmpty { h += "<p class=\"note\">No shard-*.jsonl files in this folder.</p>\n" }
        if let timeline { h += timeline.html() }
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

// MARK: - Timeline

/// The run's timeline (`paligemma run --trace`) as one inline SVG per rank on a shared time axis: busy
/// time as bars coloured by micro-batch (stage steps) or teal (vision batches), idle grey, sends as ticks
/// under the lane, loading and setup in slate (`lane`), so a long job's page stays small.
public struct TimelineSection {
    public var tracks: [TraceTrack]
    /// Where the trace came from (shown on the page).
    public var source: String
    static let width = 1100.0, laneHeight = 26.0

    public init(tracks: [TraceTrack], source: String) {
        self.tracks = tracks
        self.source = source
    }

    static let microBatchColors = ["#4363d8", "#3cb44b", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#469990"]

    static func color(_ span: TraceSpan) -> String {
        switch span.category {
        case TraceFile.busy:
            if let mb = span.args.first(where: { $0.0 == "micro_batch" })?.1 {
                return microBatchColors[Int(mb) % microBatchColors.count]
            }
            return "#2a9d8f"
        case TraceFile.idle: return "#e4e4e4"
        case TraceFile.send: return "#d62728"
        case TraceFile.load: return "#8d99ae"
        default: return "#b8a9c9"
        }
    }

    public func html() -> String {
        let spans = tracks.flatMap(\.spans)
        guard let first = spans.map(\.start).min(), let last = spans.map(\.end).max(), last > first else {
            return "<h2>Timeline</h2>\n<p class=\"note\">\(esc(source)): no spans.</p>\n"
        }
        let span = last - first, w = Self.width
        var h = "<h2>Timeline</h2>\n<p class=\"note\">From \(esc(source)); \(String(format: "%.3f", span / 1e6)) s. "
            + "Busy (counted as in stats.json): stage steps coloured by micro-batch, vision batches teal; idle waits grey; "
            + "sends red ticks below a lane; loading and setup slate. Open the file in ui.perfetto.dev for detail.</p>\n"
        h += "<div class=\"timeline\">\n"
        h += axis(span: span)
        for track in tracks {
            // Rank 0 only coordinates: it has idle waits but no busy spans (stats.json does not count it either).
            let busy = track.spans.contains { $0.category == TraceFile.busy }
                ? track.busyFraction.map { String(format: "busy %.1f%%", 100 * $0) } ?? "" : "no busy spans"
            h += "<div class=\"lane-label\">\(esc(track.label)) · \(busy)\(track.complete ? "" : " · <b>incomplete</b>")"
            if let u = track.clockUncertainty, u > 0 { h += String(format: " · clock ±%.3f ms", u * 1e3) }
            h += "</div>\n"
            h += "<svg class=\"lane\" width=\"\(Int(w))\" height=\"\(Int(Self.laneHeight))\" viewBox=\"0 0 \(Int(w)) \(Int(Self.laneHeight))\" "
                + "xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"rank \(track.rank) timeline\">"
            h += lane(track, from: first, span: span)
            h += "</svg>\n"
        }
        h += "</div>\n"
        return h
    }

    /// One lane's rectangles. Time is cut into pixel columns; in each, the share of busy time is a bar
    /// from the bottom (coloured by the micro-batch that had most of it), loading and setup stack above
    /// it, idle is the grey background, and a column with a send gets a red tick below. Equal neighbouring
    /// columns are one rectangle, so a span many pixels wide is drawn as itself and a lane never has more
    /// than a few rectangles per column, however many spans it has.
    func lane(_ track: TraceTrack, from first: Double, span: Double) -> String {
        let columns = Int(Self.width), column = span / Double(columns)
        var busy = [Double](repeating: 0, count: columns), other = busy, sends = busy
        var busyBy = [[String: Double]](repeating: [:], count: columns)
        for s in track.spans {
            let a = (s.start - first) / column, b = (s.end - first) / column
            var c = max(0, min(columns - 1, Int(a)))
            while c < columns {
                let lo = max(a, Double(c)), hi = min(b, Double(c + 1))
                let share = max(0, hi - lo) + (s.duration == 0 && c == Int(a) ? 1e-3 : 0)
                switch s.category {
                case TraceFile.busy:
                    busy[c] += share
                    busyBy[c][Self.color(s), default: 0] += share
                case TraceFile.idle: break   // the background
                case TraceFile.send: sends[c] += share
                default: other[c] += share
                }
                if Double(c + 1) >= b { break }
                c += 1
            }
        }
        let full = 19.0
        var out = "<rect x=\"0\" y=\"1\" width=\"\(columns)\" height=\"19\" fill=\"#e4e4e4\"/>"
        // Rows of equal (colour, height) columns: busy bars, then load/setup above them, then send ticks.
        func runs(_ value: (Int) -> (color: String, y: Double, height: Double)?, title: String) {
            var c = 0
            while c < columns {
                guard let v = value(c) else { c += 1; continue }
                var e = c + 1
                while e < columns, let w = value(e), w == v { e += 1 }
                out += "<rect x=\"\(c)\" y=\"\(fmt(v.y))\" width=\"\(e - c)\" height=\"\(fmt(v.height))\" fill=\"\(v.color)\">"
                out += "<title>\(title) \(String(format: "%.3f–%.3f s", Double(c) * column / 1e6, Double(e) * column / 1e6))</title></rect>"
                c = e
            }
        }
        runs({ c in
            let h = (min(1, busy[c]) * full).rounded()
            guard h > 0, let color = busyBy[c].max(by: { $0.value < $1.value })?.key else { return nil }
            return (color, 1 + full - h, h)
        }, title: "busy")
        runs({ c in
            let below = (min(1, busy[c]) * full).rounded(), h = (min(1 - min(1, busy[c]), other[c]) * full).rounded()
            guard h > 0 else { return nil }
            return ("#8d99ae", 1 + full - below - h, h)
        }, title: "loading / setup")
        runs({ c in sends[c] > 0 ? ("#d62728", 21, 5) : nil }, title: "sends")
        return out
    }

    /// A time axis with about ten ticks at round seconds.
    func axis(span: Double) -> String {
        let seconds = span / 1e6
        let raw = seconds / 10, magnitude = pow(10, floor(log10(max(raw, 1e-6))))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var s = "<svg class=\"axis\" width=\"\(Int(Self.width))\" height=\"18\" viewBox=\"0 0 \(Int(Self.width)) 18\" xmlns=\"http://www.w3.org/2000/svg\">"
        var t = 0.0
        while t <= seconds + 1e-9 {
            let x = t / seconds * Self.width
            s += "<line x1=\"\(fmt(x))\" y1=\"12\" x2=\"\(fmt(x))\" y2=\"18\" stroke=\"#555\"/>"
            s += "<text x=\"\(fmt(min(x + 2, Self.width - 40)))\" y=\"10\" font-size=\"10\" font-family=\"sans-serif\" fill=\"#333\">\(String(format: step < 1 ? "%.2f s" : "%.0f s", t))</text>"
            t += step
        }
        return s + "</svg>\n"
    }

    func fmt(_ v: Double) -> String { String(format: "%.2f", v) }
}
