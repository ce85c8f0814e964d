// Which GEMM each of the model's matrices is packed for, chosen by timing the candidates on this
// machine (not by CPUID alone), once per CPU model and library versions, cached on disk.
//
// For a weight [N, K] the candidates (our AVX-512, AVX2 and portable kernels; OpenBLAS for F32
// weights) are timed at M = 1, 8, 64 and 256 rows — decode at batch 1, decode of a few jobs,
// a small prefill, an image or a prompt — and the one with the least total time over the four wins:
// one call in each bucket is about how a caption's work is spread (one prefill, tens of decode steps
// of a few rows). A weight has one layout, so the choice is per matrix shape, not per call.
//
// The cache (`gemm-choice.json` under $PALIGEMMA_CACHE_DIR, else $XDG_CACHE_HOME/paligemma, else
// ~/.cache/paligemma) holds the rates with the machine they were measured on: CPU name, family, model,
// stepping and ISA features, OpenBLAS's build string, our kernels' version. A file that is corrupt, of
// another format, or from another machine is measured again and rewritten, never trusted. Ranks of one
// job on one host take a file lock, so one measures and the others read its result.
import CKernels
import CBLAS
import Foundation
import PaliJSON

#if canImport(Glibc)
import Glibc
#endif

/// How matrices get their GEMM (`--gemm`, `--batch-invariant`).
public enum GEMMPolicy: Sendable, Equatable, CustomStringConvertible {
    /// Timed on this machine per matrix shape (cached); `batchInvariant` keeps to kernels whose
    /// results do not depend on the rows batched together.
    case auto(batchInvariant: Bool)
    /// This kernel for every matrix (where it multiplies the weight's precision).
    case fixed(GEMMKernel)

    /// The kernel for a weight [n, k] kept at `precision`; `rowLookups`: its rows are also read one by
    /// one (a tied embedding), which only our own layouts do cheaply.
    public func kernel(n: Int, k: Int, precision: WeightPrecision, rowLookups: Bool = false) -> GEMMKernel {
        switch self {
        case .fixed(let kernel):
            return kernel.supports(precision) && (kernel.isOurs || !rowLookups) ? kernel : .best
        case .auto(let invariant):
            return GEMMChoice.shared.entry(n: n, k: k, precision: precision, rowLookups: rowLookups)
                .choice(batchInvariant: invariant, oursOnly: rowLookups)
        }
    }

    /// `auto` or a kernel's name; nil for anything else.
    public init?(name: String, batchInvariant: Bool = false) {
        if name == "auto" { self = .auto(batchInvariant: batchInvariant); return }
        guard let kernel = GEMMKernel(name: name) else { return nil }
        self = .fixed(kernel)
    }

    public var description: String {
        switch self {
        case .auto(let invariant): return invariant ? "auto (batch-invariant kernels)" : "auto"
        case .fixed(let kernel): return kernel.description
        }
    }
}

/// The measured choice of GEMM per weight shape, with the cache behind it. Thread-safe.
public final class GEMMChoice: @unchecked Sendable {
    /// The rows (M) each candidate is timed at.
    public static let buckets = [1, 8, 64, 256]
    /// Bump when a kernel changes enough that old measurements mislead.
    static let kernelsVersion = 4
    static let format = 1

    /// Rates measured for one weight shape.
    public struct Entry: Equatable, Sendable {
        public let n: Int, k: Int
        public let precision: WeightPrecision
        /// GFLOP/s per kernel per bucket (a kernel pruned early has fewer buckets: it lost them).
        public let gflops: [GEMMKernel: [Int: Double]]

        /// The fastest kernel over all buckets (least total time), among batch-invariant ones if asked,
        /// among our own if asked.
        public func choice(batchInvariant: Bool, oursOnly: Bool = false) -> GEMMKernel {
            var best: (GEMMKernel, Double)?
            for (kernel, rates) in gflops where (!batchInvariant || kernel.isBatchInvariant(for: precision)) && (!oursOnly || kernel.isOurs) {
                var total = 0.0
                for m in GEMMChoice.buckets {
                    guard let r = rates[m], r > 0 else { total = .infinity; break }
                    total += 2 * Double(m * n * k) / (r * 1e9)
                }
                if best == nil || total < best!.1 || (total == best!.1 && kernel.rawValue > best!.0.rawValue) {
                    best = (kernel, total)
                }
            }
            guard let best, best.1.isFinite else { return .best }
            return best.0
        }
    }

    /// The machine a cache belongs to: a file written on any other is measured again.
    public struct Machine: Equatable, Sendable {
        public var cpu: String, features: String, openblas: String, onednn: String, kernels: Int

        public static let current = Machine(cpu: CPUInfo.name, features: String(cString: pg_cpu_features()),
                                            openblas: String(cString: openblas_get_config()),
                                            onednn: String(cString: pg_onednn_version()),
                                            kernels: GEMMChoice.kernelsVersion)
    }

    public static let shared = GEMMChoice(cacheFile: GEMMChoice.defaultCacheFile())

    /// Where the cache lives: $PALIGEMMA_CACHE_DIR, $XDG_CACHE_HOME/paligemma or ~/.cache/paligemma; nil when none.
    public static func defaultCacheFile() -> URL? {
        let env = ProcessInfo.processInfo.environment
        let dir: URL
        if let d = env["PALIGEMMA_CACHE_DIR"], !d.isEmpty { dir = URL(fileURLWithPath: d) }
        else if let d = env["XDG_CACHE_HOME"], !d.isEmpty { dir = URL(fileURLWithPath: d).appendingPathComponent("paligemma") }
        else if let h = env["HOME"], !h.isEmpty { dir = URL(fileURLWithPath: h).appendingPathComponent(".cache/paligemma") }
        else { return nil }
        return dir.appendingPathComponent("gemm-choice.json")
    }

    public let cacheFile: URL?
    public let machine: Machine
    /// Told what happens (a measurement starts, a cache is ignored and why); the CLI logs it.
    nonisolated(unsafe) public static var log: (String) -> Void = { _ in }

    /// Shapes this instance has timed (tests: a valid cache means none).
    public var measurementCount: Int { lock.lock(); defer { lock.unlock() }; return measured }
    private var measured = 0

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private var loaded = false
    /// Shapes asked for, in order (what `bench` prints).
    private var asked: [String] = []
    private var remeasured: Set<String> = []
    /// Measure every shape again (once in this process) instead of trusting the cache (`bench --remeasure-gemm`).
    public var remeasureAll: Bool {
        get { lock.lock(); defer { lock.unlock() }; return _remeasureAll }
        set { lock.lock(); _remeasureAll = newValue; lock.unlock() }
    }
    private var _remeasureAll = false

    public init(cacheFile: URL?, machine: Machine = .current) {
        self.cacheFile = cacheFile
        self.machine = machine
    }

    static func key(_ n: Int, _ k: Int, _ p: WeightPrecision) -> String { "\(n)x\(k):\(p)" }

    /// The rates for a weight shape: cached, or measured now (`remeasure`: measured now in any case).
    /// `rowLookups`: the shape is asked for a matrix whose rows are also looked up (only our kernels serve it).
    public func entry(n: Int, k: Int, precision: WeightPrecision, remeasure: Bool = false, rowLookups: Bool = false) -> Entry {
        lock.lock()
        defer { lock.unlock() }
        let key = Self.key(n, k, precision)
        if rowLookups { lookups.insert(key) }
        let remeasure = remeasure || (_remeasureAll && !remeasured.contains(key))
        if !asked.contains(key) { asked.append(key) }
        if !loaded { loaded = true; entries = readCache() ?? [:] }
        if !remeasure, let e = entries[key] { return e }
        return withFileLock {
            // Another process may have measured it meanwhile.
            if !remeasure, let fresh = readCache() {
                entries.merge(fresh) { old, _ in old }
                if let e = entries[key] { return e }
            }
            Self.log("measuring GEMM kernels for weights [\(n), \(k)] \(precision) (once for this CPU; cached in \(cacheFile?.path ?? "memory only"))")
            let start = DispatchTime.now().uptimeNanoseconds
            let e = Self.measure(n: n, k: k, precision: precision)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            Self.log("GEMM kernels for [\(n), \(k)] \(precision) timed in \(String(format: "%.1f", seconds)) s: \(e.choice(batchInvariant: false, oursOnly: rowLookups)) fastest\(rowLookups ? " of ours" : "")")
            measured += 1
            entries[key] = e
            remeasured.insert(key)
            writeCache()
            return e
        }
    }

    /// Every shape asked for so far, with its rates and whether its rows are looked up, in the order asked.
    public var askedEntries: [(entry: Entry, rowLookups: Bool)] {
        lock.lock()
        defer { lock.unlock() }
        return asked.compactMap { key in entries[key].map { ($0, lookups.contains(key)) } }
    }
    private var lookups: Set<String> = []

    // MARK: Measuring

    /// Times every candidate for a weight [n, k] at each bucket. Columns beyond 4,096 are left out
    /// (the rate per output column is the same: threads split columns). A weight of a megabyte or
    /// more is timed cold, as the model meets it (each layer's weights are used once per forward, and
    /// the model is far larger than any cache): before each timed call a buffer of twice the
    /// last-level cache is read through. Smaller ones are timed warm, over repeated calls.
    public static func measure(n: Int, k: Int, precision: WeightPrecision,
                               candidates: [GEMMKernel] = GEMMKernel.allCases) -> Entry {
        let kernels = candidates.filter { $0.isAvailable && $0.supports(precision) }
        let nm = min(n, 4096), maxM = buckets.last!
        var rng = SplitMix64(seed: UInt64(n &* 31 &+ k))
        let w = Tensor(zeros: [nm, max(k, 1)])
        for i in 0..<w.count { w.data[i] = Float(Double(rng.next() >> 11) * 0x1p-53 - 0.5) }
        let x = Tensor(zeros: [maxM, max(k, 1)])
        for i in 0..<x.count { x.data[i] = Float(Double(rng.next() >> 11) * 0x1p-53 - 0.5) }
        let y = Tensor(zeros: [maxM, nm])
        let cold = nm * max(k, 1) * precision.bytesPerElement >= 1 << 20
        let flush = cold ? Tensor(zeros: [min(2 * lastLevelCacheBytes, 512 << 20) / 4]) : nil
        if let flush { for i in stride(from: 0, to: flush.count, by: 1024) { flush.data[i] = 1 } }
        func evict() {
            guard let flush else { return }
            Parallel.forEachChunk(flush.count, grain: 1 << 20) { r in
                if pg_stream_sum(flush.data + r.lowerBound, r.count).isNaN { print("") }   // keeps the reads
            }
        }
        var packed: [GEMMKernel: PackedWeight] = [:]
        var rates: [GEMMKernel: [Int: Double]] = [:]
        var alive = kernels
        for m in buckets {
            var times: [GEMMKernel: Double] = [:]
            for kernel in alive {
                let weight = packed[kernel] ?? PackedWeight(w, precision: precision, kernel: kernel)
                packed[kernel] = weight
                let call = { Linear.forward(x.data, rows: m, inFeatures: k, weight: weight, bias: nil, into: y.data) }
                call()  // warm-up (a library's first call for this M may build its kernel)
                // Fastest of 3 runs: one cold call each, or warm calls adding up to ~10 ms.
                var best = Double.infinity
                for _ in 0..<3 {
                    evict()
                    var calls = 0
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    var elapsed = 0.0
                    repeat {
                        call()
                        calls += 1
                        elapsed = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
                    } while !cold && elapsed < 0.01
                    best = min(best, elapsed / Double(calls))
                }
                times[kernel] = best
                rates[kernel, default: [:]][m] = 2 * Double(m * nm * k) / best / 1e9
            }
            // A kernel 4× slower than the best here is not timed at larger M (it has lost).
            let fastest = times.values.min() ?? 0
            alive = alive.filter { times[$0]! <= 4 * fastest }
        }
        return Entry(n: n, k: k, precision: precision, gflops: rates)
    }

    /// The last-level cache's size (Linux sysconf), 64 MB where it is not known.
    static let lastLevelCacheBytes: Int = {
        #if os(Linux)
        let l3 = sysconf(Int32(_SC_LEVEL3_CACHE_SIZE)), l2 = sysconf(Int32(_SC_LEVEL2_CACHE_SIZE))
        if l3 > 0 { return l3 }
        if l2 > 0 { return l2 }
        #endif
        return 64 << 20
    }()

    // MARK: The cache file

    private func readCache() -> [String: Entry]? {
        guard let url = cacheFile, let data = try? Data(contentsOf: url) else { return nil }
        do {
            return try Self.decode(data, machine: machine)
        } catch {
            Self.log("GEMM choice cache \(url.path) not used (\(error)): measuring again")
            return nil
        }
    }

    struct CacheError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// The entries of a cache file written on `machine`; throws saying why a file cannot be used.
    static func decode(_ data: Data, machine: Machine) throws -> [String: Entry] {
        let root: JSONValue
        do { root = try JSONValue.parse(utf8: data) } catch { throw CacheError("corrupt: \(error)") }
        guard root["format"]?.intValue == format else { throw CacheError("format is not \(format)") }
        guard let m = root["machine"],
              let cpu = m["cpu"]?.stringValue, let features = m["features"]?.stringValue,
              let openblas = m["openblas"]?.stringValue, let onednn = m["onednn"]?.stringValue,
              let kernels = m["kernels"]?.intValue
        else { throw CacheError("no machine description") }
        let theirs = Machine(cpu: cpu, features: features, openblas: openblas, onednn: onednn, kernels: kernels)
        guard theirs == machine else {
            throw CacheError("measured on another machine or build: \(cpu) [\(features)], \(openblas), \(onednn.isEmpty ? "no oneDNN" : onednn), kernels v\(kernels)")
        }
        guard case .array(let shapes)? = root["shapes"] else { throw CacheError("no shapes") }
        var out: [String: Entry] = [:]
        for s in shapes {
            guard let n = s["n"]?.intValue, let k = s["k"]?.intValue, n > 0, k >= 0,
                  let p = s["precision"]?.stringValue.flatMap(WeightPrecision.init(rawValue:)),
                  case .object(let perKernel)? = s["gflops"]
            else { throw CacheError("a shape entry is malformed") }
            var rates: [GEMMKernel: [Int: Double]] = [:]
            for (name, value) in perKernel {
                guard let kernel = GEMMKernel(name: name), case .object(let perM) = value
                else { throw CacheError("unknown kernel \(name) for [\(n), \(k)]") }
                for (mText, r) in perM {
                    guard let m = Int(mText), buckets.contains(m), let rate = r.doubleValue, rate > 0, rate.isFinite
                    else { throw CacheError("bad rate for \(name) [\(n), \(k)]") }
                    rates[kernel, default: [:]][m] = rate
                }
            }
            guard !rates.isEmpty else { throw CacheError("no rates for [\(n), \(k)]") }
            out[key(n, k, p)] = Entry(n: n, k: k, precision: p, gflops: rates)
        }
        return out
    }

    static func encode(_ entries: [Entry], machine: Machine) -> String {
        let shapes: [JSONValue] = entries.sorted { ($0.n, $0.k, $0.precision.rawValue) < ($1.n, $1.k, $1.precision.rawValue) }.map { e in
            let perKernel: [(String, JSONValue)] = e.gflops.sorted { $0.key.rawValue < $1.key.rawValue }.map { kernel, perM in
                (kernel.description, .object(perM.sorted { $0.key < $1.key }.map { (String($0.key), .double($0.value, decimals: 2)) }))
            }
            return .object([("n", .int(e.n)), ("k", .int(e.k)), ("precision", .string(e.precision.rawValue)),
                            ("gflops", .object(perKernel)),
                            ("choice", .string(e.choice(batchInvariant: false).description)),
                            ("choice_batch_invariant", .string(e.choice(batchInvariant: true).description))])
        }
        let root = JSONValue.object([
            ("format", .int(format)),
            ("machine", .object([("cpu", .string(machine.cpu)), ("features", .string(machine.features)),
                                 ("openblas", .string(machine.openblas)), ("onednn", .string(machine.onednn)),
                                 ("kernels", .int(machine.kernels))])),
            ("threads", .int(Parallel.threads)),
            ("shapes", .array(shapes)),
        ])
        return root.prettyEncoded() + "\n"
    }

    private func writeCache() {
        guard let url = cacheFile else { return }
        let text = Self.encode(Array(entries.values), machine: machine)
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let tmp = url.appendingPathExtension("tmp.\(getpid())")
            try Data(text.utf8).write(to: tmp)
            guard rename(tmp.path, url.path) == 0 else { throw CacheError("rename failed (errno \(errno))") }
        } catch {
            Self.log("GEMM choice cache \(url.path) not written (\(error)); the choice holds for this process only")
        }
    }

    /// Runs `body` holding an exclusive lock on the cache's lock file (ranks on one host measure one at a time).
    private func withFileLock<T>(_ body: () -> T) -> T {
        guard let url = cacheFile else { return body() }
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let fd = open(url.path + ".lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return body() }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
        defer { flock(fd, LOCK_UN) }
        return body()
    }
}

/// This CPU's /proc/cpuinfo "model name" with its family, model and stepping (virtual machines often
/// hide the name); "unknown CPU" where there is no /proc/cpuinfo.
public enum CPUInfo {
    public static let name: String = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            if key == "processor", !fields.isEmpty { break }   // the first CPU's lines are enough
            fields[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let name = fields["model name"] ?? "unknown CPU"
        guard let family = fields["cpu family"], let model = fields["model"] else { return name }
        return "\(name) (family \(family) model \(model) stepping \(fields["stepping"] ?? "?"))"
    }()
}
