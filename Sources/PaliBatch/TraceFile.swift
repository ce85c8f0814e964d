// The timeline of a run (`paligemma run --trace FILE`): a Chrome / Perfetto trace in the JSON Trace Event
// Format, `{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}`, read by ui.perfetto.dev,
// chrome://tracing and `paligemma report`. One process per rank (pid = rank, named "rank N: role @ host"
// by "M" metadata events), one thread per rank (tid 0, its main loop), and "X" complete events with
// microsecond timestamps from rank 0's clock at the start of the run. Categories: "busy" (the spans
// stats.json counts as busy), "idle" (the waits it counts as idle), "send", "load", "setup".
//
// This file writes and reads that format; what the spans are and how they are recorded is PaliRun's
// (TraceRecorder). It does not read traces of other programs beyond what `read` needs.
import Foundation
import PaliJSON

/// One span of a rank's timeline, in microseconds of the trace's clock.
public struct TraceSpan: Sendable, Equatable {
    public var name: String
    public var category: String
    public var start: Double
    public var duration: Double
    public var args: [(String, Int64)]

    public init(name: String, category: String, start: Double, duration: Double, args: [(String, Int64)] = []) {
        self.name = name; self.category = category; self.start = start; self.duration = duration; self.args = args
    }

    public var end: Double { start + duration }

    public static func == (l: TraceSpan, r: TraceSpan) -> Bool {
        l.name == r.name && l.category == r.category && l.start == r.start && l.duration == r.duration
            && l.args.map(\.0) == r.args.map(\.0) && l.args.map(\.1) == r.args.map(\.1)
    }
}

/// One rank's track.
public struct TraceTrack: Sendable, Equatable {
    public var rank: Int
    /// The rank's role, e.g. "stage 0 of replica 0".
    public var role: String
    public var host: String
    /// Seconds added to the rank's own clock to put it on rank 0's (0 on rank 0's host).
    public var clockOffset: Double
    /// How far off `clockOffset` may be (seconds); 0 where the clock is rank 0's own.
    public var clockUncertainty: Double?
    /// Whether the rank's last chunk arrived (false: the track stops where the rank went silent).
    public var complete: Bool
    /// Spans in the order they started, parents before the spans they contain.
    public var spans: [TraceSpan]

    public init(rank: Int, role: String, host: String, clockOffset: Double = 0, clockUncertainty: Double? = 0,
                complete: Bool = true, spans: [TraceSpan] = []) {
        self.rank = rank; self.role = role; self.host = host; self.clockOffset = clockOffset
        self.clockUncertainty = clockUncertainty; self.complete = complete; self.spans = spans
    }

    public var label: String { "rank \(rank): \(role) @ \(host)" }

    /// Perfetto's process labels: the clock correction, and "incomplete" when the rank's end is missing.
    public var labels: String {
        var text = clockOffset == 0 && clockUncertainty == 0 ? "rank 0's clock"
            : String(format: "clock %+.3f ms", clockOffset * 1e3)
                + (clockUncertainty.map { String(format: " ± %.3f ms", $0 * 1e3) } ?? " (accuracy unknown)")
        if !complete { text += ", incomplete" }
        return text
    }

    /// Microseconds in spans of `category` (top-level spans of the category: busy and idle spans never
    /// nest in one another).
    public func total(_ category: String) -> Double {
        spans.reduce(0) { $0 + ($1.category == category ? $1.duration : 0) }
    }

    /// busy / (busy + idle), as stats.json computes `busy_fraction` from the same intervals; nil when
    /// the rank has neither.
    public var busyFraction: Double? {
        let busy = total(TraceFile.busy), idle = total(TraceFile.idle)
        return busy + idle > 0 ? busy / (busy + idle) : nil
    }
}

public enum TraceFile {
    public static let busy = "busy", idle = "idle", send = "send", load = "load", setup = "setup"

    /// The trace document of `tracks` (sorted by rank); `notes` go to "otherData".
    public static func json(_ tracks: [TraceTrack], notes: [(String, String)] = []) -> [UInt8] {
        var out = "{\"displayTimeUnit\":\"ms\",\"otherData\":{"
        var first = true
        func member(_ key: String, _ value: String) {
            if !first { out += "," }
            first = false
            JSONValue.encodeString(key, into: &out)
            out += ":"
            JSONValue.encodeString(value, into: &out)
        }
        member("producer", "paligemma run --trace")
        member("clock", "microseconds of rank 0's monotonic clock since the run started; other hosts' clocks "
               + "are shifted by the offset estimated from heartbeats (see docs/operations.md, Timeline)")
        for t in tracks.sorted(by: { $0.rank < $1.rank }) {
            var text = String(format: "host %@, clock offset %.6f s", t.host, t.clockOffset)
            if let u = t.clockUncertainty { text += String(format: " ± %.6f s", u) } else { text += " (unknown accuracy)" }
            if !t.complete { text += ", incomplete (the rank's last events did not arrive)" }
            member("rank \(t.rank)", text)
        }
        for (key, value) in notes { member(key, value) }
        out += "},\"traceEvents\":[\n"
        // The events, as bytes (a String grown by many small appends is copied over and over); names and
        // categories are escaped once each.
        var bytes = [UInt8](out.utf8)
        bytes.reserveCapacity(bytes.count + 160 * tracks.reduce(0) { $0 + $1.spans.count + 4 })
        var escaped: [String: [UInt8]] = [:]
        func quoted(_ text: String) -> [UInt8] {
            if let known = escaped[text] { return known }
            var e = ""
            JSONValue.encodeString(text, into: &e)
            let made = [UInt8](e.utf8)
            escaped[text] = made
            return made
        }
        var firstEvent = true
        func separate() {
            if !firstEvent { bytes.append(contentsOf: ",\n".utf8) }
            firstEvent = false
        }
        for t in tracks.sorted(by: { $0.rank < $1.rank }) {
            var name = "", labels = ""
            JSONValue.encodeString(t.label, into: &name)
            JSONValue.encodeString(t.labels, into: &labels)
            for text in ["{\"ph\":\"M\",\"pid\":\(t.rank),\"tid\":0,\"name\":\"process_name\",\"args\":{\"name\":\(name)}}",
                         "{\"ph\":\"M\",\"pid\":\(t.rank),\"tid\":0,\"name\":\"process_sort_index\",\"args\":{\"sort_index\":\(t.rank)}}",
                         "{\"ph\":\"M\",\"pid\":\(t.rank),\"tid\":0,\"name\":\"thread_name\",\"args\":{\"name\":\"main loop\"}}",
                         "{\"ph\":\"M\",\"pid\":\(t.rank),\"tid\":0,\"name\":\"process_labels\",\"args\":{\"labels\":\(labels)}}"] {
                separate()
                bytes.append(contentsOf: text.utf8)
            }
            let head = [UInt8]("{\"ph\":\"X\",\"pid\":\(t.rank),\"tid\":0,\"name\":".utf8)
            for s in t.spans {
                separate()
                bytes.append(contentsOf: head)
                bytes.append(contentsOf: quoted(s.name))
                bytes.append(contentsOf: ",\"cat\":".utf8)
                bytes.append(contentsOf: quoted(s.category))
                bytes.append(contentsOf: ",\"ts\":".utf8)
                appendMicroseconds(s.start, to: &bytes)
                bytes.append(contentsOf: ",\"dur\":".utf8)
                appendMicroseconds(s.duration, to: &bytes)
                if !s.args.isEmpty {
                    bytes.append(contentsOf: ",\"args\":{".utf8)
                    for (i, (key, value)) in s.args.enumerated() {
                        if i > 0 { bytes.append(UInt8(ascii: ",")) }
                        bytes.append(contentsOf: quoted(key))
                        bytes.append(UInt8(ascii: ":"))
                        appendInteger(value, to: &bytes)
                    }
                    bytes.append(UInt8(ascii: "}"))
                }
                bytes.append(UInt8(ascii: "}"))
            }
        }
        bytes.append(contentsOf: "\n]}\n".utf8)
        return bytes
    }

    static func appendInteger(_ value: Int64, to out: inout [UInt8]) { appendDecimal(value, to: &out) }

    /// Microseconds with nanosecond digits (three decimals), without Foundation's formatter.
    static func appendMicroseconds(_ us: Double, to out: inout [UInt8]) {
        let ns = Int64((us * 1000).rounded())
        if ns < 0 { out.append(UInt8(ascii: "-")) }
        let m = Int64(ns.magnitude)
        appendInteger(m / 1000, to: &out)
        let frac = m % 1000
        if frac != 0 {
            out.append(UInt8(ascii: "."))
            if frac < 100 { out.append(UInt8(ascii: "0")) }
            if frac < 10 { out.append(UInt8(ascii: "0")) }
            appendInteger(frac, to: &out)
        }
    }

    /// Writes the trace of `tracks` to `url` atomically (a temporary file beside it, then renamed; not
    /// synced to disk: it is a diagnostic, and a sync would cost more than the rest of the write).
    public static func write(_ tracks: [TraceTrack], notes: [(String, String)] = [], to url: URL) throws {
        try Data(json(tracks, notes: notes)).write(to: url, options: .atomic)
    }

    // MARK: Reading

    /// The tracks of a trace file: one per pid, named by its process_name metadata, with its "X" events.
    /// Checks what the format requires of every event; a malformed one is a `TraceFileError`.
    public static func read(_ url: URL) throws -> [TraceTrack] {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw TraceFileError(path: url.path, message: "cannot read: \(error.localizedDescription)")
        }
        return try parse(data, path: url.path)
    }

    public static func parse(_ data: Data, path: String = "trace") throws -> [TraceTrack] {
        func fail(_ message: String) -> TraceFileError { TraceFileError(path: path, message: message) }
        let root: JSONValue
        do {
            root = try JSONValue.parse(utf8: data)
        } catch {
            throw fail("not valid JSON (\(error))")
        }
        guard case .array(let events)? = root["traceEvents"] else {
            throw fail("no \"traceEvents\" array: not a trace in the JSON Trace Event Format")
        }
        var tracks: [Int: TraceTrack] = [:]
        for (i, e) in events.enumerated() {
            guard case .object = e, let ph = e["ph"]?.stringValue, let pid = e["pid"]?.intValue,
                  e["tid"]?.intValue != nil, let name = e["name"]?.stringValue else {
                throw fail("event \(i) lacks ph, pid, tid or name")
            }
            var track = tracks[pid] ?? TraceTrack(rank: pid, role: "", host: "", complete: true)
            switch ph {
            case "M":
                if name == "process_name", let label = e["args"]?["name"]?.stringValue {
                    // "rank N: role @ host"
                    var rest = Substring(label)
                    if let colon = rest.firstIndex(of: ":") { rest = rest[rest.index(after: colon)...] }
                    let parts = rest.split(separator: "@", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                    track.role = parts.first ?? ""
                    track.host = parts.count > 1 ? parts[1] : ""
                }
                if name == "process_labels", let labels = e["args"]?["labels"]?.stringValue {
                    track.complete = !labels.contains("incomplete")
                }
            case "X":
                guard let ts = e["ts"]?.doubleValue, let dur = e["dur"]?.doubleValue else {
                    throw fail("event \(i) (\(name)) lacks a numeric ts or dur")
                }
                guard dur >= 0 else { throw fail("event \(i) (\(name)) has a negative duration \(dur)") }
                var args: [(String, Int64)] = []
                if case .object(let members)? = e["args"] {
                    for (key, value) in members { if let v = value.intValue { args.append((key, Int64(v))) } }
                }
                track.spans.append(TraceSpan(name: name, category: e["cat"]?.stringValue ?? "", start: ts, duration: dur,
                                             args: args))
            default:
                break
            }
            tracks[pid] = track
        }
        return tracks.values.sorted { $0.rank < $1.rank }
    }

    /// Spans of `track` that overlap without one containing the other (tolerance `slack` µs), as
    /// "a overlaps b" lines; empty when the spans nest properly.
    public static func nestingProblems(_ track: TraceTrack, slack: Double = 0.002) -> [String] {
        var problems: [String] = []
        var open: [TraceSpan] = []
        for s in track.spans.sorted(by: { $0.start != $1.start ? $0.start < $1.start : $0.duration > $1.duration }) {
            while let top = open.last, top.end <= s.start + slack { open.removeLast() }
            if let top = open.last, s.end > top.end + slack {
                problems.append("rank \(track.rank): \(s.name) [\(s.start), \(s.end)] overlaps \(top.name) [\(top.start), \(top.end)]")
            }
            open.append(s)
        }
        return problems
    }
}

/// A trace file that cannot be read as one.
public struct TraceFileError: Error, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { "trace \(path): \(message) (give the file `paligemma run --trace` wrote)" }
}
