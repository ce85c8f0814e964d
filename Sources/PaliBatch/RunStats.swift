// stats.json: counts, throughput and per-role busy/idle time of one run (one invocation; a resumed run
// writes its own, counting the records it skipped as done).
import Foundation
import PaliJSON

/// Seconds on a monotonic clock.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Counts and rates of a run. Thread-safe.
public final class RunStats: @unchecked Sendable {
    public static let fileName = "stats.json"

    private let lock = NSLock()
    private let clock: () -> Double
    private let startClock: Double
    private let startedAt: Date
    private var endClock: Double?
    private var endedAt: Date?
    private var outcomeText = "running"
    private var outcomeDetails: [(String, JSONValue)] = []
    private var okCount = 0
    private var errorCount = 0
    private var skippedCount: Int
    private var prefill = 0
    private var decode = 0
    private var roleTimes: [(String, RoleStats)] = []

    /// `skipped`: records already done by an earlier run (resume).
    public init(skipped: Int = 0, startedAt: Date = Date(), clock: @escaping () -> Double = monotonicSeconds) {
        self.skippedCount = skipped
        self.startedAt = startedAt
        self.clock = clock
        self.startClock = clock()
    }

    /// Counts one finished record: its prompt tokens (prefill, image tokens included) and generated tokens.
    public func record(_ status: RecordStatus, prefillTokens: Int = 0, generatedTokens: Int = 0) {
        lock.locked {
            if status == .ok { okCount += 1 } else { errorCount += 1 }
            prefill += prefillTokens
            decode += generatedTokens
        }
    }

    /// Busy and idle seconds per rank or stage, e.g. ["stage 0 of replica 0": (busy: 12.5, idle: 1.5)].
    /// Written sorted by name.
    public func setRoles(_ roles: [String: (busy: Double, idle: Double)]) {
        setRoles(roles.mapValues { RoleStats(busy: $0.busy, idle: $0.idle) })
    }

    /// Per rank: busy/idle seconds, and what its loading cost (written when known).
    public func setRoles(_ roles: [String: RoleStats]) {
        let sorted = roles.map { ($0.key, $0.value) }.sorted { $0.0 < $1.0 }
        lock.locked { roleTimes = sorted }
    }

    /// Stops the wall clock. `outcome`: "complete", or "interrupted" (SIGTERM/SIGUSR1), or "failed".
    /// `details` are written right after `outcome` (e.g. `signal` of an interrupted run, `error` of a failed one).
    public func finish(outcome: String = "complete", details: [(String, JSONValue)] = [], at date: Date = Date()) {
        lock.locked {
            if endClock == nil { endClock = clock(); endedAt = date }
            outcomeText = outcome
            outcomeDetails = details
        }
    }

    public var ok: Int { lock.locked { okCount } }
    public var errors: Int { lock.locked { errorCount } }
    public var skipped: Int { lock.locked { skippedCount } }
    public var prefillTokens: Int { lock.locked { prefill } }
    public var generatedTokens: Int { lock.locked { decode } }

    /// Seconds from the start to `finish` (or to now while running).
    public var wallSeconds: Double { lock.locked { (endClock ?? clock()) - startClock } }

    public var json: JSONValue {
        lock.locked {
            let wall = (endClock ?? clock()) - startClock
            func rate(_ n: Int) -> JSONValue { wall > 0 ? .double(Double(n) / wall, decimals: 3) : .null }
            let processed = okCount + errorCount
            return .object([
                ("started_at", .string(RunInfo.timestamp(startedAt))),
                ("finished_at", endedAt.map { .string(RunInfo.timestamp($0)) } ?? .null),
                ("outcome", .string(outcomeText)),
            ] + outcomeDetails + [
                ("wall_s", .double(wall, decimals: 3)),
            ] + loadFields + [
                ("records", .object([
                    ("ok", .int(okCount)),
                    ("error", .int(errorCount)),
                    ("processed", .int(processed)),
                    ("skipped_done", .int(skippedCount)),
                ])),
                ("images_per_s", rate(processed)),
            ] + visionFields + [
                ("prefill_tokens", .int(prefill)),
                ("decode_tokens", .int(decode)),
                ("prefill_tokens_per_s", rate(prefill)),
                ("decode_tokens_per_s", rate(decode)),
                ("roles", .object(roleTimes.map { name, r in
                    let total = r.busy + r.idle
                    var fields: [(String, JSONValue)] = [
                        ("busy_s", .double(r.busy, decimals: 3)),
                        ("idle_s", .double(r.idle, decimals: 3)),
                        ("busy_fraction", total > 0 ? .double(r.busy / total, decimals: 4) : .null),
                    ]
                    if let l = r.loadSeconds { fields.append(("load_s", .double(l, decimals: 3))) }
                    if let w = r.weightBytes { fields.append(("weight_bytes", .int(w))) }
                    if let p = r.peakRSSBytes { fields.append(("peak_rss_bytes", .int(p))) }
                    if let v = r.visionImages { fields.append(("vision_images", .int(v))) }
                    return (name, .object(fields))
                })),
            ])
        }
    }

    /// `vision_images`: images the vision ranks encoded (vision passes), when they said.
    private var visionFields: [(String, JSONValue)] {
        let counts = roleTimes.compactMap(\.1.visionImages)
        return counts.isEmpty ? [] : [("vision_images", .int(counts.reduce(0, +)))]
    }

    /// `load_s`: the longest any rank took to load its weights (the job's start-up), when known.
    private var loadFields: [(String, JSONValue)] {
        let loads = roleTimes.compactMap(\.1.loadSeconds)
        return loads.isEmpty ? [] : [("load_s", .double(loads.max()!, decimals: 3))]
    }

    /// Writes stats.json atomically; `url` is the file (a path ending in "stats.json") or the output
    /// directory, which must exist: when it is gone (deleted during the run) this throws
    /// `OutputError.directoryGone` rather than write a file where the folder was.
    public func write(to url: URL) throws {
        try DurableFile.replace(DurableFile.metadataFile(url, named: RunStats.fileName), with: json.prettyEncoded() + "\n")
    }
}

/// One rank's line in stats.json's `roles`.
public struct RoleStats: Sendable, Equatable {
    public var busy: Double
    public var idle: Double
    /// Seconds it took to load (and pack) the rank's weights.
    public var loadSeconds: Double?
    /// Bytes of packed matrices the rank holds.
    public var weightBytes: Int?
    /// The rank's process's peak resident memory (VmHWM; one process holds every role at np 1).
    public var peakRSSBytes: Int?
    /// Images a vision rank encoded (vision passes; an image with several prompts is encoded once).
    public var visionImages: Int?

    public init(busy: Double, idle: Double, loadSeconds: Double? = nil, weightBytes: Int? = nil, peakRSSBytes: Int? = nil,
                visionImages: Int? = nil) {
        self.busy = busy; self.idle = idle
        self.loadSeconds = loadSeconds; self.weightBytes = weightBytes; self.peakRSSBytes = peakRSSBytes
        self.visionImages = visionImages
    }
}
