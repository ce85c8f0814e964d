// Progress of loading a model's weights: a log line (swift-log, info) when loading takes longer than
// `quietSeconds`, then one every `interval`, and the rate at the end. Pieces are
// reported from the packing threads (`add`), lines come from a timer thread, so a slow disk or a
// 10 GB checkpoint shows progress without the loading code knowing about terminals.
import Foundation
import Logging

public final class LoadProgress: @unchecked Sendable {
    /// Starts every line ("rank 3 (stage 1 of replica 0)"); nil: the logger's label says enough.
    public let subject: String?
    public let totalBytes: Int
    private let logger: Logger
    private let quietSeconds: Double
    private let interval: Double
    private let lock = NSLock()
    private var done = 0
    private var started = DispatchTime.now()
    private var timer: DispatchSourceTimer?
    private var spoke = false

    /// `totalBytes`: the source bytes of the matrices to pack (0 when unknown).
    public init(logger: Logger, subject: String? = nil, totalBytes: Int, quietSeconds: Double = 2, interval: Double = 5) {
        self.logger = logger
        self.subject = subject
        self.totalBytes = totalBytes
        self.quietSeconds = quietSeconds
        self.interval = interval
    }

    /// Starts the clock and the timer.
    public func start() {
        started = DispatchTime.now()
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue.global(qos: .utility))
        t.schedule(deadline: .now() + quietSeconds, repeating: interval)
        t.setEventHandler { [weak self] in self?.tick() }
        lock.lock(); timer = t; lock.unlock()
        t.resume()
    }

    /// Records `bytes` more packed (any thread).
    public func add(_ bytes: Int) {
        lock.lock(); done += bytes; lock.unlock()
    }

    public var seconds: Double { Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9 }

    private func tick() {
        lock.lock()
        let bytes = done
        spoke = true
        lock.unlock()
        let s = seconds
        let of = totalBytes > 0 ? String(format: " of %.2f GB (%.0f%%)", Double(totalBytes) / 1e9,
                                         100 * Double(bytes) / Double(totalBytes)) : ""
        say(String(format: "loading weights: %.2f GB%@ in %.0f s (%.2f GB/s)", Double(bytes) / 1e9, of, s,
                   Double(bytes) / 1e9 / max(s, 1e-9)))
    }

    /// Stops the timer; says how long loading took when it took long enough to have spoken. Returns
    /// the seconds since `start`.
    @discardableResult
    public func finish(holding heldBytes: Int? = nil) -> Double {
        lock.lock()
        let t = timer
        timer = nil
        let bytes = done, said = spoke
        lock.unlock()
        t?.cancel()
        let s = seconds
        if said || s > quietSeconds {
            let held = heldBytes.map { String(format: "; %.2f GB of packed weights in memory", Double($0) / 1e9) } ?? ""
            say(String(format: "loaded %.2f GB of weights in %.1f s (%.2f GB/s)%@", Double(bytes) / 1e9, s,
                       Double(bytes) / 1e9 / max(s, 1e-9), held))
        }
        return s
    }

    private func say(_ text: String) {
        logger.info("\(subject.map { $0 + ": " } ?? "")\(text)")
    }
}

extension Checkpoint {
    /// Bytes of the tensors whose canonical names satisfy `include` (what a role will load).
    public func byteCount(where include: (String) -> Bool) -> Int {
        tensorNames.filter(include).reduce(0) { $0 + (info($1)?.byteCount ?? 0) }
    }
}
