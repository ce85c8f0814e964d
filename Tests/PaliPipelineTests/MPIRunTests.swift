// The real MPI path: mpirun launches the pipeline-selftest product (Sources/pipeline-selftest), which
// passes messages of every kind and size around a ring, or loses a rank on purpose. Skipped where
// mpirun is not installed; fails if mpirun is there but the self-test product was not built.
import Foundation
import Testing

enum MPIRun {
    /// mpirun on PATH, if any.
    static let mpirun: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/mpirun" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// The pipeline-selftest executable built next to this test bundle (same build directory).
    static var selfTest: String? {
        let name = "pipeline-selftest"
        var directories = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
                           Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()]
        // macOS: the .xctest bundle sits in the products directory.
        directories += Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent() }
        return directories.map { $0.appendingPathComponent(name).path }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Settings that make Open MPI 4.x run quietly on one machine with no network: shared memory (vader)
    /// and self only, the ob1 messaging layer (no UCX probing), no single-copy (CMA needs ptrace rights
    /// that containers often lack), and root allowed (containers run tests as root).
    static let environment: [String: String] = [
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_btl": "self,vader",
        "OMPI_MCA_pml": "ob1",
        "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
        "OMPI_MCA_btl_base_warn_component_unused": "0",
        "OMPI_MCA_rmaps_base_oversubscribe": "1",
    ]

    struct Outcome {
        let status: Int32
        let seconds: Double
        let output: String
        let timedOut: Bool
    }

    /// Runs `executable arguments` with the MPI environment; kills it after `timeout` seconds.
    static func run(_ executable: String, _ arguments: [String], timeout: Double) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") }
        environment.merge(Self.environment) { _, new in new }
        process.environment = environment
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("pipeline-mpirun-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        let start = Date()
        try process.run()
        var timedOut = false
        while process.isRunning {
            if Date().timeIntervalSince(start) > timeout {
                timedOut = true
                process.terminate()  // mpirun forwards SIGTERM to its ranks
                Thread.sleep(forTimeInterval: 2)
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                break
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        process.waitUntilExit()
        try handle.close()
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return Outcome(status: process.terminationStatus, seconds: Date().timeIntervalSince(start), output: output,
                       timedOut: timedOut)
    }

    static func mpirun(np: Int, _ arguments: [String], timeout: Double) throws -> Outcome {
        let selfTest = try #require(MPIRun.selfTest, "build the pipeline-selftest product (swift build) first")
        return try run(mpirun!, ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", String(np),
                                 selfTest] + arguments, timeout: timeout)
    }
}

@Suite(.serialized, .enabled(if: MPIRun.mpirun != nil, "mpirun is not installed"))
struct MPIRunTests {
    @Test func ringOfThreeRanksDeliversEverythingIntact() throws {
        let outcome = try MPIRun.mpirun(np: 3, ["ring"], timeout: 60)
        #expect(outcome.status == 0 && !outcome.timedOut, "\(outcome.output)")
        #expect(outcome.output.contains("ring ok: 3 rank(s)"), "\(outcome.output)")
        #expect(outcome.output.contains("launched by mpirun: true"), "\(outcome.output)")
    }

    @Test func singletonWithoutMPIRun() throws {
        let selfTest = try #require(MPIRun.selfTest, "build the pipeline-selftest product (swift build) first")
        let outcome = try MPIRun.run(selfTest, ["ring"], timeout: 60)
        #expect(outcome.status == 0 && !outcome.timedOut, "\(outcome.output)")
        #expect(outcome.output.contains("ring ok: 1 rank(s)"), "\(outcome.output)")
        #expect(outcome.output.contains("launched by mpirun: false"), "\(outcome.output)")
    }

    @Test func aRankThatExitsEndsTheJob() throws {
        let outcome = try MPIRun.mpirun(np: 3, ["crash"], timeout: 30)
        #expect(!outcome.timedOut, "mpirun did not end within 30 s:\n\(outcome.output)")
        #expect(outcome.status != 0, "\(outcome.output)")
        #expect(!outcome.output.contains("nobody ended the job"))
    }

    @Test func aSilentRankIsNamedAndTheJobAborts() throws {
        let outcome = try MPIRun.mpirun(np: 3, ["hang", "2"], timeout: 30)
        #expect(!outcome.timedOut, "mpirun did not end within 30 s:\n\(outcome.output)")
        #expect(outcome.status != 0, "\(outcome.output)")
        // The abort names the host too (processor names are exchanged when the transport starts).
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, 255)
        #expect(outcome.output.contains("rank 0 of 3 on \(String(cString: name)) aborts the job"), "\(outcome.output)")
        #expect(outcome.output.contains("rank 1 has been silent"), "\(outcome.output)")
    }
}
