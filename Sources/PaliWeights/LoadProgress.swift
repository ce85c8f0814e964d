// Progress of loading a model's weights: a line on stderr (or wherever `output` writes) when loading
// takes longer than `quietSeconds`, then one every `interval`, and the rate at the end. Pieces are
// reported from the packing threads (`add`), lines come from a timer thread, so a slow disk or a
// 10 GB checkpoint shows progress without the loading code knowing about terminals.
import Foundation

public final class LoadProgress: @unchecked Sendable {
    public let label: String
    public let totalBytes: Int
    private let output: @Sendable (String) -> Void
    private let quietSeconds: Double
    private let interval: Double
    private let lock = NSLock()
    private var done = 0
    private var started = DispatchTime.now()
    private var timer: DispatchSourceTimer?
    private var spoke = false

    /// `totalBytes`: the source bytes of the matrices to pack (0 when unknown).
    public init(label: String, totalBytes: Int, quietSeconds: Double = 2, interval: Double = 5,
                output: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        self.label = label
        self.totalBytes = totalBytes
        self.output = output
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
        output(String(format: "%@: loading weights: %.2f GB%@ in %.0f s (%.2f GB/s)", label, Double(bytes) / 1e9, of, s,
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
            output(String(format: "%@: loaded %.2f GB of weights in %.1f s (%.2f GB/s)%@", label, Double(bytes) / 1e9, s,
                          Double(bytes) / 1e9 / max(s, 1e-9), held))
        }
        return s
    }
}

extension Checkpoint {
    /// Bytes of the tensors whose canonical names satisfy `include` (what a role will load).
    public func byteCount(where include: (String) -> Bool) -> Int {
        tensorNames.filter(include).reduce(0) { $0 + (info($1)?.byteCount ?? 0) }
    }
}
