// Where the libraries' log messages go (swift-log): one line on stderr, "LABEL: MESSAGE", as the
// operator has always read them. At debug level and below the line ends with its metadata (the rank
// and role of a batch run: `mpi.rank`, `pipeline.role`). PALIGEMMA_LOG_LEVEL (trace, debug, info,
// notice, warning, error, critical) sets the level; info by default. The executable owns levels and
// output; the libraries only take a Logger.
import Foundation
import Logging

struct StandardErrorLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    init(label: String, level: Logger.Level) {
        self.label = label
        logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var text = "\(label): \(event.message)"
        if logLevel <= .debug {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            if !all.isEmpty { text += " [" + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "]" }
        }
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// Sends every Logger of this process here; call once, first thing in `main`.
    static func bootstrap(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let level = environment["PALIGEMMA_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info
        LoggingSystem.bootstrap { label in StandardErrorLogHandler(label: label, level: level) }
    }
}
