// This process's memory as the kernel counts it, for stats.json and load reports.
import Foundation

public enum ProcessMemory {
    /// Peak resident set size (VmHWM of /proc/self/status) in bytes; nil where there is no procfs.
    public static var peakResidentBytes: Int? { statusField("VmHWM:") }
    /// Current resident set size (VmRSS) in bytes.
    public static var residentBytes: Int? { statusField("VmRSS:") }

    private static func statusField(_ name: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            // "VmHWM:	  123456 kB"
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.count >= 2, let kb = Int(fields[1]) { return kb * 1024 }
        }
        return nil
    }
}
