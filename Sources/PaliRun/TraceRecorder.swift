// `run --trace FILE`: each rank records its own timeline in memory, and rank 0 gathers and writes them
// (TraceFile, in PaliBatch).
//
// Recording: one `TraceRecorder` per rank, owned by the rank's main loop (RankContext) and touched by no
// other thread, so no lock: an event is a 32-byte struct appended to a preallocated array. The spans use
// the very clock readings RankContext adds to stats.json's busy and idle seconds (`busy`, `receive`), so
// busy fractions computed from the trace are those of stats.json.
//
// Gathering: a worker sends its events to rank 0 as `TraceMessage` chunks, when the buffer fills or
// `flushInterval` has passed (from an idle wait, never inside a span) and a last one at shutdown; rank 0
// keeps them (TraceCollector) and writes the file at every end of the run (complete, interrupted,
// failed), so a rank that died leaves the part of its track sent before.
//
// Clocks: every span is in its rank's MonotonicClock. Ranks on rank 0's host share that clock (offset
// 0). For a rank on another host, the offset θ = clock₀ − clock_w comes from the heartbeats both ways
// (they carry the sender's time): d₁ = min over heartbeats w→0 of (arrival₀ − sentAt_w) = θ + L₁ and
// d₂ = min over heartbeats 0→w of (arrival_w − sentAt₀) = −θ + L₂, so θ ≈ (d₁ − d₂) / 2 with an error
// of at most (d₁ + d₂) / 2 (half the fastest round trip; the minimum drops the heartbeats that waited
// in a queue). The worker sends its d₂ with its chunks.
import Foundation
import PaliBatch
import PaliPipeline

/// What a span is; the raw value travels in `TraceMessage.kinds`. `a`, `b`, `c` mean, per kind:
enum TraceEventKind: UInt8 {
    /// Loading this rank's weights. a, b, c unused.
    case load = 1
    /// The coordinator's setup (manifest check, resume scan, run.json).
    case setup = 2
    /// A vision rank's batch: a = images, b = jobs.
    case visionBatch = 3
    /// A decoder stage's step of a micro-batch: a = micro-batch, b = step, c = rows.
    case stageStep = 4
    /// A send: a = message kind, b = destination rank, c = kilobytes.
    case send = 5
    /// A wait in `receive`: a = kind of what ended it (0: nothing came), b = its source.
    case idle = 6
    /// The coordinator's wait for the workers' final reports.
    case shutdown = 7

    var category: String {
        switch self {
        case .load: TraceFile.load
        case .setup, .shutdown: TraceFile.setup
        case .visionBatch, .stageStep: TraceFile.busy
        case .send: TraceFile.send
        case .idle: TraceFile.idle
        }
    }

    /// The span's name and arguments in the trace file.
    func span(a: Int32, b: Int32, c: Int32) -> (String, [(String, Int64)]) {
        switch self {
        case .load: return ("load weights", [])
        case .setup: return ("setup", [])
        case .visionBatch: return ("vision batch", [("images", Int64(a)), ("jobs", Int64(b))])
        case .stageStep: return ("micro-batch \(a)", [("micro_batch", Int64(a)), ("step", Int64(b)), ("rows", Int64(c))])
        case .send:
            let kind = MessageKind(rawValue: UInt8(clamping: a)).map { "\($0)" } ?? "kind \(a)"
            return ("send \(kind)", [("to", Int64(b)), ("kilobytes", Int64(c))])
        case .idle:
            let kind = a == 0 ? "nothing" : MessageKind(rawValue: UInt8(clamping: a)).map { "\($0)" } ?? "kind \(a)"
            return ("idle", a == 0 ? [] : [("until_" + kind + "_from", Int64(b))])
        case .shutdown: return ("shutdown", [])
        }
    }
}

struct TraceEvent {
    var start: Double
    var end: Double
    var kind: TraceEventKind
    var a: Int32
    var b: Int32
    var c: Int32
}

/// One rank's events (see the file header). Single-threaded: the rank's main loop only.
final class TraceRecorder {
    static let chunkEvents = 16_384
    static let flushInterval = 30.0

    private(set) var events: [TraceEvent] = []
    private var lastFlush = MonotonicClock.now()
    /// Index of the innermost open span (`begin` without `end`), -1 when none.
    private var open: [Int] = []
    /// The smallest (arrival − sentAt) of heartbeats per source (see the file header).
    private(set) var minimumDelay: [Int: Double] = [:]

    init() {
        events.reserveCapacity(Self.chunkEvents + 64)
        open.reserveCapacity(8)
    }

    @inline(__always)
    func record(_ kind: TraceEventKind, from start: Double, to end: Double, a: Int32 = 0, b: Int32 = 0, c: Int32 = 0) {
        events.append(TraceEvent(start: start, end: end, kind: kind, a: a, b: b, c: c))
    }

    /// Opens a span ending at `end(at:)`; spans opened meanwhile nest inside it.
    @inline(__always)
    func begin(_ kind: TraceEventKind, at start: Double, a: Int32 = 0, b: Int32 = 0, c: Int32 = 0) {
        open.append(events.count)
        events.append(TraceEvent(start: start, end: start, kind: kind, a: a, b: b, c: c))
    }

    @inline(__always)
    func end(at time: Double) {
        guard let i = open.popLast() else { return }
        events[i].end = time
    }

    /// Sets argument `c` of the innermost open span (e.g. a step's row count, known once it is built).
    func annotate(c: Int) {
        guard let i = open.last else { return }
        events[i].c = Int32(clamping: c)
    }

    func heartbeat(from source: Int, sentAt: Double, arrived: Double) {
        let delay = arrived - sentAt
        if delay < minimumDelay[source] ?? .infinity { minimumDelay[source] = delay }
    }

    /// Seconds this rank spent sending its chunks (building and encoding them included): the cost of
    /// gathering, reported by rank 0 when it writes the file.
    private(set) var gatherSeconds = 0.0

    /// Sends the recorded events to rank 0 as one chunk.
    func flush(to transport: Transport, isFinal: Bool) throws {
        let start = MonotonicClock.now()
        try transport.send(takeChunk(isFinal: isFinal), to: 0)
        gatherSeconds += MonotonicClock.now() - start
    }

    /// Whether a chunk should go now (outside any span).
    func wantsFlush(now: Double) -> Bool {
        open.isEmpty && !events.isEmpty && (events.count >= Self.chunkEvents || now - lastFlush >= Self.flushInterval)
    }

    /// Takes the recorded events out as a message (the buffer is emptied, its capacity kept).
    func takeChunk(isFinal: Bool) -> TraceMessage {
        let chunk = events.map { e in
            let start = Int64((e.start * 1e9).rounded())
            return TraceMessage.Event(start: start, duration: max(0, Int64((e.end * 1e9).rounded()) - start),
                                      kind: e.kind.rawValue, a: e.a, b: e.b, c: e.c)
        }
        events.removeAll(keepingCapacity: true)
        lastFlush = MonotonicClock.now()
        return TraceMessage(isFinal: isFinal, host: OutputLock.hostName, clock: minimumDelay[0], events: chunk)
    }
}

/// Rank 0's gathering of every rank's events, and the trace file it writes.
final class TraceCollector {
    private struct Received {
        var host = ""
        var clock: Double?
        var complete = false
        var events: [TraceMessage.Event] = []
    }

    let url: URL
    let layout: Layout
    let origin: Double
    private var received: [Int: Received] = [:]

    /// `origin`: rank 0's clock at the start of the run (time 0 of the trace).
    init(url: URL, layout: Layout, origin: Double) {
        self.url = url
        self.layout = layout
        self.origin = origin
    }

    /// Seconds rank 0 spent decoding and keeping chunks, and the workers' own sending cost (the largest).
    private(set) var receiveSeconds = 0.0
    var workerGatherSeconds: [Int: Double] = [:]

    /// Decodes and keeps a chunk from `rank`.
    func receive(_ message: Message, from rank: Int) throws {
        let start = MonotonicClock.now()
        add(try TraceMessage(message), from: rank)
        receiveSeconds += MonotonicClock.now() - start
    }

    func add(_ chunk: TraceMessage, from rank: Int) {
        var r = received[rank] ?? Received()
        r.host = chunk.host
        if let clock = chunk.clock { r.clock = min(clock, r.clock ?? .infinity) }
        r.complete = r.complete || chunk.isFinal
        r.events.append(contentsOf: chunk.unpacked)
        received[rank] = r
    }

    /// Writes the trace: rank 0's own `events`, the chunks received, and `delays` (rank 0's smallest
    /// heartbeat delays per worker) for the clocks of other hosts. A rank with no chunk has an empty track.
    /// Returns the number of spans written.
    @discardableResult
    func write(own: TraceRecorder, outcome: String) throws -> Int {
        let host = OutputLock.hostName
        var tracks = [TraceTrack(rank: 0, role: "\(layout.role(of: 0))", host: host,
                                 spans: own.events.map { span($0.kind, start: $0.start, end: $0.end, a: $0.a, b: $0.b, c: $0.c, offset: 0) })]
        for rank in 1..<layout.worldSize {
            let r = received[rank] ?? Received()
            var offset = 0.0, uncertainty: Double? = 0
            if !r.host.isEmpty, r.host != host {
                // θ = clock₀ − clock_w ≈ (d₁ − d₂)/2, error ≤ (d₁ + d₂)/2 (file header).
                if let d1 = own.minimumDelay[rank], let d2 = r.clock {
                    offset = (d1 - d2) / 2
                    uncertainty = (d1 + d2) / 2
                } else {
                    uncertainty = nil
                }
            }
            var track = TraceTrack(rank: rank, role: "\(layout.role(of: rank))", host: r.host.isEmpty ? "?" : r.host,
                                   clockOffset: offset, clockUncertainty: uncertainty, complete: r.complete)
            track.spans = r.events.map { e in
                let start = Double(e.start) / 1e9
                return span(TraceEventKind(rawValue: e.kind) ?? .idle, start: start, end: start + Double(e.duration) / 1e9,
                            a: e.a, b: e.b, c: e.c, offset: offset)
            }
            tracks.append(track)
        }
        try TraceFile.write(tracks, notes: [("outcome", outcome)], to: url)
        return tracks.reduce(0) { $0 + $1.spans.count }
    }

    private func span(_ kind: TraceEventKind, start: Double, end: Double, a: Int32, b: Int32, c: Int32,
                      offset: Double) -> TraceSpan {
        let (name, args) = kind.span(a: a, b: b, c: c)
        return TraceSpan(name: name, category: kind.category, start: (start + offset - origin) * 1e6,
                         duration: max(0, end - start) * 1e6, args: args)
    }
}
