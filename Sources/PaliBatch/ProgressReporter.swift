// Progress on stderr: a live line on a terminal, a log line every `interval` seconds otherwise.
//
//   terminal:  \r1200/5000 (24.0%) | 3 errors | 4.10 images/s | 51.2 tokens/s | ETA 15m27s\e[K
//   log:       progress 1200/5000 (24.0%) | 3 errors | 4.10 images/s | 51.2 tokens/s | ETA 15m27s | elapsed 4m52s
import Foundation

public final class ProgressReporter: @unchecked Sendable {
    /// Writes to the process's stderr.
    public static func standardError(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// Least time between two redraws of the terminal line.
    public static let terminalInterval = 0.2

    private let total: Int?
    private let alreadyDone: Int
    public let isTerminal: Bool
    private let interval: Double
    private let output: (String) -> Void
    private let clock: () -> Double
    private let lock = NSLock()
    private let start: Double
    private var lastPrint: Double?
    private var done = 0
    private var errors = 0
    private var tokens = 0
    private var finished = false

    /// `total`: entries in the manifest (nil when unknown); `alreadyDone`: of them, done by an earlier run.
    /// `update` then counts the records of this run. `isTerminal` nil asks isatty(stderr).
    public init(total: Int?, alreadyDone: Int, isTerminal: Bool? = nil, interval: Double = 30,
                output: @escaping (String) -> Void = ProgressReporter.standardError,
                clock: @escaping () -> Double = monotonicSeconds) {
        self.total = total
        self.alreadyDone = alreadyDone
        self.isTerminal = isTerminal ?? (isatty(STDERR_FILENO) != 0)
        self.interval = interval
        self.output = output
        self.clock = clock
        self.start = clock()
    }

    /// `done`, `errors`, `generatedTokens`: totals of this run so far (records written, of which failed;
    /// tokens generated).
    public func update(done: Int, errors: Int, generatedTokens: Int) {
        lock.locked {
            guard !finished else { return }
            self.done = done
            self.errors = errors
            self.tokens = generatedTokens
            let now = clock()
            if isTerminal {
                if let last = lastPrint, now - last < ProgressReporter.terminalInterval { return }
                lastPrint = now
                output("\r" + line(now: now) + "\u{1B}[K")
            } else {
                if now - (lastPrint ?? start) < interval { return }
                lastPrint = now
                output("progress " + line(now: now) + " | elapsed " + ProgressReporter.duration(now - start) + "\n")
            }
        }
    }

    /// Prints the final state (ends the terminal line). Later calls do nothing.
    public func finish() {
        lock.locked {
            guard !finished else { return }
            finished = true
            let now = clock()
            if isTerminal {
                output("\r" + line(now: now) + "\u{1B}[K\n")
            } else {
                output("done " + line(now: now) + " | elapsed " + ProgressReporter.duration(now - start) + "\n")
            }
        }
    }

    /// "1200/5000 (24.0%) | 3 errors | 4.10 images/s | 51.2 tokens/s | ETA 15m27s".
    private func line(now: Double) -> String {
        let elapsed = now - start
        let count = alreadyDone + done
        var parts: [String] = []
        if let total {
            let percent = total > 0 ? 100 * Double(count) / Double(total) : 100
            parts.append("\(count)/\(total) (\(String(format: "%.1f", percent))%)")
        } else {
            parts.append("\(count) done")
        }
        parts.append(errors == 1 ? "1 error" : "\(errors) errors")
        let imageRate = elapsed > 0 ? Double(done) / elapsed : 0
        let tokenRate = elapsed > 0 ? Double(tokens) / elapsed : 0
        parts.append(String(format: "%.2f images/s", imageRate))
        parts.append(String(format: "%.1f tokens/s", tokenRate))
        if let total {
            let remaining = max(0, total - count)
            if remaining == 0 {
                parts.append("ETA 0s")
            } else if imageRate > 0 {
                parts.append("ETA " + ProgressReporter.duration(Double(remaining) / imageRate))
            } else {
                parts.append("ETA --")
            }
        }
        return parts.joined(separator: " | ")
    }

    /// "42s", "5m03s", "2h05m".
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "--" }
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m" + String(format: "%02d", s % 60) + "s" }
        return "\(s / 3600)h" + String(format: "%02d", (s % 3600) / 60) + "m"
    }
}
