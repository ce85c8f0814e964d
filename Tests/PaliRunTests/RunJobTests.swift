// `paligemma run` end to end: the built executable under mpirun (and alone, np = 1) on the tiny
// transformers-made checkpoints. Every layout must give, for every id, the tokens that generation one
// job at a time gives; bad inputs become error records; a job killed at any moment resumes to each id
// exactly once; a dead or silent rank ends the job quickly.
import Foundation
import Testing
import PaliGeneration
import PaliImage
import PaliTensor

let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let fixtures = repository.appendingPathComponent("Tests/Fixtures")

enum Tools {
    static func onPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The paligemma executable of this build (beside the test bundle).
    static var paligemma: String {
        let candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
                          Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()]
            + Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent() }
        for dir in candidates {
            let path = dir.appendingPathComponent("paligemma").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return repository.appendingPathComponent(".build/debug/paligemma").path
    }

    /// Open MPI settings for one machine without network, as root, oversubscribed.
    static let mpiEnvironment: [String: String] = [
        "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_btl": "self,vader", "OMPI_MCA_pml": "ob1",
        "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
        "OMPI_MCA_btl_base_warn_component_unused": "0",
        "OMPI_MCA_rmaps_base_oversubscribe": "1",
    ]
}

/// One launched job: `paligemma run ...` alone (np 1) or under mpirun, in its own process group.
final class Job {
    let process = Process()
    let log: URL
    let started = Date()
    /// Whether `wait` had to kill the job.
    private(set) var timedOut = false

    /// `mpirun`: start under mpirun even at np 1 (np > 1 always uses mpirun). `wrapper`: a command each
    /// rank runs paligemma through (under mpirun).
    init(np: Int, arguments: [String], mpirun useMPIRun: Bool = false, wrapper: [String] = [],
         environment extra: [String: String] = [:]) throws {
        let run = wrapper + [Tools.paligemma, "run"] + arguments
        // Foundation starts the child as the leader of its own process group, so a test can signal
        // all of a job's ranks at once (`kill(group:)`); checked below.
        if np == 1 && !useMPIRun {
            process.executableURL = URL(fileURLWithPath: run[0])
            process.arguments = Array(run.dropFirst())
        } else {
            guard let mpirun = Tools.onPath("mpirun") else { throw RunTestError.noMPI }
            process.executableURL = URL(fileURLWithPath: mpirun)
            process.arguments = ["-np", "\(np)", "--bind-to", "none"] + run
        }
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") }
        environment.merge(Tools.mpiEnvironment) { _, new in new }
        environment.merge(extra) { _, new in new }
        process.environment = environment
        log = FileManager.default.temporaryDirectory.appendingPathComponent("paligemma-run-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try Job.runWithNoSignalsBlocked(process)
        let group = getpgid(process.processIdentifier)
        precondition(group == process.processIdentifier || !process.isRunning,
                     "the job is not a process group leader (pgid \(group)); kill(group:) would miss its ranks")
    }

    /// Starts `process` from a thread that blocks no signal. A child inherits the signal mask of the
    /// thread that spawns it, and the test runner's threads block nearly every signal: mpirun would
    /// then never see a SIGUSR1 sent to it, and paligemma would start with its stop signals already
    /// blocked in every thread, unlike under a shell, srun or mpirun.
    static func runWithNoSignalsBlocked(_ process: Process) throws {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var failure: Error?
        let thread = Thread {
            var none = sigset_t()
            sigemptyset(&none)
            pthread_sigmask(SIG_SETMASK, &none, nil)
            do { try process.run() } catch { failure = error }
            done.signal()
        }
        thread.start()
        done.wait()
        if let failure { throw failure }
    }

    /// Waits up to `timeout` seconds; kills the whole group if it is still running then.
    @discardableResult
    func wait(timeout: Double = 300) -> (status: Int32, seconds: Double, output: String) {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning {
            timedOut = true
            signalEveryRank(SIGKILL)
            process.waitUntilExit()
        }
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(at: log)
        return (process.terminationStatus, Date().timeIntervalSince(started), output)
    }

    func kill(group signal: Int32) { _ = Foundation.kill(-process.processIdentifier, signal) }

    /// Sends `signal` to every rank (mpirun starts ranks in process groups of their own, so a signal
    /// to mpirun's group does not reach them), then to the launcher, as a cluster's kill or srun would.
    func signalEveryRank(_ signal: Int32) {
        for rank in ranks { _ = Foundation.kill(rank, signal) }
        kill(group: signal)
    }

    /// Processes of the job other than the launcher itself (the mpirun ranks).
    var ranks: [Int32] {
        let pipe = Pipe()
        let pgrep = Process()
        pgrep.executableURL = URL(fileURLWithPath: "/usr/bin/pgrep")
        pgrep.arguments = ["-P", "\(process.processIdentifier)"]
        pgrep.standardOutput = pipe
        try? pgrep.run()
        pgrep.waitUntilExit()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return text.split(separator: "\n").compactMap { Int32($0) }
    }

    /// Waits (up to 60 s) until mpirun has started `count` ranks and the coordinator is at work (`runJSON`
    /// exists), then one more second; returns the ranks' pids (fewer when the wait ran out).
    func ranksAtWork(count: Int, runJSON: URL) -> [Int32] {
        var found: [Int32] = []
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && process.isRunning {
            found = ranks
            if found.count == count && FileManager.default.fileExists(atPath: runJSON.path) { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        Thread.sleep(forTimeInterval: 1)
        return found
    }
}

enum RunTestError: Error { case noMPI }

/// A scratch folder with images and a manifest.
struct Workspace {
    let root: URL
    var manifest: URL { root.appendingPathComponent("jobs.jsonl") }
    var output: URL { root.appendingPathComponent("out") }

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("paligemma-runtest-\(UUID().uuidString)")
        let images = root.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        let sources = fixtures.appendingPathComponent("images/sources")
        for name in Workspace.goodImages + ["jpeg_444_baseline.jpg"] {
            try FileManager.default.copyItem(at: sources.appendingPathComponent(name), to: images.appendingPathComponent(name))
        }
        try Data("this is not an image\n".utf8).write(to: images.appendingPathComponent("garbage.jpg"))
    }

    static let goodImages = ["jpeg_420_baseline.jpg", "jpeg_422_progressive.jpg", "png_rgb8_56.png", "png_gray8.png",
                             "jpeg_cmyk_adobe.jpg"]
    static let prompts = ["caption en", "detect red circle ; blue square", "segment circle", "answer en what is it?", ""]

    func remove() { try? FileManager.default.removeItem(at: root) }

    func write(_ lines: [[String: Any]]) throws {
        let text = try lines.map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]), as: UTF8.self) }
            .joined(separator: "\n") + "\n"
        try Data(text.utf8).write(to: manifest)
    }

    /// `count` good jobs cycling over images and prompts.
    func goodJobs(_ count: Int, prefix: String = "job") -> [[String: Any]] {
        (0..<count).map { i in
            ["id": "\(prefix)-\(i)", "image": "images/\(Workspace.goodImages[i % Workspace.goodImages.count])",
             "prompt": Workspace.prompts[(i / Workspace.goodImages.count + i) % Workspace.prompts.count], "n": i]
        }
    }

    /// stats.json of the output directory, or nil when there is none.
    func stats() -> [String: Any]? {
        guard let data = try? Data(contentsOf: output.appendingPathComponent("stats.json")) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    /// The `layout` object of run.json.
    func runLayout() throws -> [String: Any] {
        let data = try Data(contentsOf: output.appendingPathComponent("run.json"))
        let info = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        return info["layout"] as! [String: Any]
    }

    /// Records of every complete shard.
    func records() throws -> [[String: Any]] {
        let names = try FileManager.default.contentsOfDirectory(atPath: output.path).filter { $0.hasPrefix("shard-") }.sorted()
        return try names.flatMap { name -> [[String: Any]] in
            let text = try String(contentsOf: output.appendingPathComponent(name), encoding: .utf8)
            return try text.split(separator: "\n").map {
                try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
            }
        }
    }
}

/// Greedy tokens of each (image, prompt) generated alone, in-process.
func expectedTokens(model: URL, jobs: [[String: Any]], root: URL, maxTokens: Int) throws -> [String: [Int]] {
    let bundle = try ModelBundle(directory: model)
    let generator = Generator(model: try bundle.loadModel(), stopIDs: bundle.stopIDs)
    let preprocessor = ImagePreprocessor(configuration: try ImageProcessorConfiguration.load(modelDirectory: model))
    let s = bundle.hyper.vision.imageSize
    var out: [String: [Int]] = [:]
    for job in jobs {
        let pixels = Tensor(shape: [3, s, s], values: try preprocessor.pixelValues(
            contentsOf: root.appendingPathComponent(job["image"] as! String)))
        let request = GenerationRequest(promptIDs: bundle.promptIDs(job["prompt"] as! String), pixelValues: pixels,
                                        maxNewTokens: maxTokens)
        out[job["id"] as! String] = generator.generate([request])[0].tokens
    }
    return out
}

func model(_ name: String) -> URL { fixtures.appendingPathComponent("models/\(name)") }

@Suite(.serialized)
struct RunJobTests {
    static var hasMPI: Bool { Tools.onPath("mpirun") != nil }

    @Test(arguments: [(1, "pg1-mqa", ""), (3, "pg1-mqa", ""), (4, "pg2-softcap", "--stages 2"), (5, "pg1-mqa", ""),
                      (7, "pg2-softcap", "--stages 2"), (4, "pg1-mqa", "--vision-ranks 2")])
    func everyLayoutMatchesGenerationAlone(np: Int, modelName: String, layout: String) throws {
        try #require(np == 1 || Self.hasMPI, "mpirun is not installed (Launch/setup.sh installs openmpi-bin)")
        let ws = try Workspace()
        defer { ws.remove() }
        let good = ws.goodJobs(14)
        let bad: [[String: Any]] = [
            ["id": "missing", "image": "images/nope.jpg", "prompt": "caption en"],
            ["id": "garbage", "image": "images/garbage.jpg", "prompt": "caption en"],
            ["id": "huge", "image": "images/jpeg_444_baseline.jpg", "prompt": "caption en"],   // 300×40 > --max-pixels
            ["id": "long", "image": "images/png_gray8.png", "prompt": String(repeating: "word ", count: 9000)],
            ["id": "escape", "image": "../outside.jpg", "prompt": "caption en"],
        ]
        var lines = good
        lines.insert(contentsOf: bad, at: 5)
        try ws.write(lines)
        let maxTokens = 10
        let job = try Job(np: np, arguments: ["--model", model(modelName).path, "--manifest", ws.manifest.path,
                                              "--output-dir", ws.output.path, "--max-tokens", "\(maxTokens)",
                                              "--shard-size", "4", "--micro-batch-size", "3", "--max-pixels", "8000",
                                              "--image-root", ws.root.path]
                                  + layout.split(separator: " ").map(String.init))
        let outcome = job.wait()
        #expect(outcome.status == 0, "np \(np) \(layout): exit \(outcome.status)\n\(outcome.output)")
        let records = try ws.records()
        let ids = records.map { $0["id"] as! String }
        #expect(ids.count == lines.count && Set(ids).count == lines.count, "each id exactly once")
        let expected = try expectedTokens(model: model(modelName), jobs: good, root: ws.root, maxTokens: maxTokens)
        let kinds = ["missing": "missing_image", "garbage": "unreadable_image", "huge": "image_too_large",
                     "long": "prompt_too_long", "escape": "image_path_outside_root"]
        for record in records {
            let id = record["id"] as! String
            if let kind = kinds[id] {
                #expect(record["status"] as? String == "error", "\(id) is an error record")
                #expect((record["error"] as? [String: Any])?["kind"] as? String == kind, "\(id): error kind")
            } else {
                #expect(record["status"] as? String == "ok", "\(id): \(record)")
                #expect(record["tokens"] as? [Int] == expected[id], "np \(np) \(modelName): tokens of \(id)")
                #expect(record["n"] as? Int == Int(id.split(separator: "-").last!)!, "extra field carried")
            }
        }
        let shards = try FileManager.default.contentsOfDirectory(atPath: ws.output.path)
        #expect(shards.contains("run.json") && shards.contains("stats.json"))
        #expect(!shards.contains { $0.hasSuffix(".tmp") }, "no temporary shard left")
    }

    @Test(arguments: [1, 3])
    func sigkillAtAnyMomentThenResumeGivesEachIDOnce(np: Int) throws {
        try #require(np == 1 || Self.hasMPI, "mpirun is not installed")
        let ws = try Workspace()
        defer { ws.remove() }
        let lines = ws.goodJobs(400)
        try ws.write(lines)
        let arguments = ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path, "--output-dir", ws.output.path,
                         "--max-tokens", "6", "--shard-size", "15", "--threads", "1"]
        let first = try Job(np: np, arguments: arguments)
        // Kill every rank once a few shards are on disk (mid-shard: the next one is being filled).
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, first.process.isRunning,
              ((try? FileManager.default.contentsOfDirectory(atPath: ws.output.path)) ?? []).filter({ $0.hasPrefix("shard-") }).count < 3 {
            Thread.sleep(forTimeInterval: 0.01)
        }
        Thread.sleep(forTimeInterval: 0.15)
        #expect(first.process.isRunning, "the first run ended before it could be killed; use more jobs")
        first.signalEveryRank(SIGKILL)
        let killed = first.wait(timeout: 30)
        #expect(killed.status != 0)
        let kept = try ws.records()
        #expect(!kept.isEmpty && kept.count < lines.count, "the kill came mid-job (\(kept.count) records kept)")
        let keptTokens = Dictionary(uniqueKeysWithValues: kept.map { ($0["id"] as! String, $0["tokens"] as! [Int]) })

        let second = try Job(np: np, arguments: arguments).wait()
        #expect(second.status == 0, "resume: \(second.output)")
        let all = try ws.records()
        let ids = all.map { $0["id"] as! String }
        #expect(ids.count == lines.count, "\(ids.count) records for \(lines.count) ids")
        #expect(Set(ids) == Set(lines.map { $0["id"] as! String }), "every id present, none twice")
        for record in all where keptTokens[record["id"] as! String] != nil {
            #expect(record["tokens"] as? [Int] == keptTokens[record["id"] as! String], "kept records unchanged")
        }
        #expect(second.output.contains("resuming: \(kept.count) records"), "the rerun says what it kept")
    }

    /// SIGUSR1 to every rank (as srun and a cluster's kill do), or to mpirun alone (which forwards it).
    @Test(arguments: ["every rank", "mpirun"])
    func sigusr1WritesWhatIsDoneAndExitsNonZero(to target: String) throws {
        try #require(Self.hasMPI, "mpirun is not installed")
        let ws = try Workspace()
        defer { ws.remove() }
        let count = 1500
        try ws.write(ws.goodJobs(count))
        let arguments = ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path, "--output-dir", ws.output.path,
                         "--max-tokens", "6", "--shard-size", "50"]
        let job = try Job(np: 3, arguments: arguments)
        // Signal once records are flowing (the first shard is complete), not after a fixed delay: on a
        // loaded machine the ranks may still be loading half a second after run.json appears.
        let firstShard = ws.output.appendingPathComponent("shard-00000.jsonl").path
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, job.process.isRunning, !FileManager.default.fileExists(atPath: firstShard) {
            Thread.sleep(forTimeInterval: 0.01)
        }
        try #require(job.process.isRunning, "the run ended before the signal; use more jobs")
        let sent = Date()
        if target == "mpirun" {
            _ = kill(job.process.processIdentifier, SIGUSR1)
        } else {
            job.signalEveryRank(SIGUSR1)
        }
        let outcome = job.wait(timeout: 60)
        #expect(outcome.status != 0, "a stopped job exits non-zero")
        #expect(Date().timeIntervalSince(sent) < 15, "stops promptly")
        #expect(outcome.output.contains("SIGUSR1 received"), "rank 0 saw the signal:\n\(outcome.output)")
        let partial = try ws.records()
        #expect(partial.count >= 50 && partial.count < count, "complete shards and the partial one are kept (\(partial.count) records)")
        let stats = ws.stats()
        #expect(stats?["outcome"] as? String == "interrupted" && stats?["signal"] as? String == "SIGUSR1",
                "stats.json: \(String(describing: stats))")
        #expect((stats?["records"] as? [String: Any])?["processed"] as? Int == partial.count)
        guard target == "every rank" else { return }
        let again = try Job(np: 3, arguments: arguments).wait()
        #expect(again.status == 0, "\(again.output)")
        let ids = try ws.records().map { $0["id"] as! String }
        #expect(ids.count == count && Set(ids).count == count)
        #expect(ws.stats()?["outcome"] as? String == "complete")
    }

    /// Regression (issue 15, seen under Slurm and plain mpirun): a vision rank in the middle of a batch
    /// when the job is stopped sends its embeddings after decoder stage 0 has stopped. Stage 0 went
    /// straight on to MPI_Finalize, so that send (larger than Open MPI's 4 KiB shared-memory eager limit:
    /// the demo model's embeddings are 49 × 192 floats) was never taken; the vision rank's flush timed
    /// out after 60 s and it aborted the job (exit 1, not 138). Workers now complete their sends and
    /// keep receiving until the coordinator releases them all (`Coordinator.shutdownWorkers`).
    @Test func sigusr1WhileAVisionRankIsMidBatchStopsCleanly() throws {
        try #require(Self.hasMPI, "mpirun is not installed")
        let ws = try Workspace()
        defer { ws.remove() }
        let count = 40
        try ws.write(ws.goodJobs(count))
        let demo = repository.appendingPathComponent("models/paligemma-shapes")
        let arguments = ["--model", demo.path, "--manifest", ws.manifest.path, "--output-dir", ws.output.path,
                         "--max-tokens", "4", "--shard-size", "2", "--vision-batch", "1"]
        // Each vision batch (one image) sleeps 1 s, so the vision rank is almost always mid-batch, and
        // the decoder waits on it.
        let job = try Job(np: 3, arguments: arguments, environment: ["PALIGEMMA_TEST_SLOW_VISION": "1"])
        let firstShard = ws.output.appendingPathComponent("shard-00000.jsonl").path
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, job.process.isRunning, !FileManager.default.fileExists(atPath: firstShard) {
            Thread.sleep(forTimeInterval: 0.02)
        }
        Thread.sleep(forTimeInterval: 0.3)
        try #require(job.process.isRunning, "the run ended before the signal")
        let sent = Date()
        _ = kill(job.process.processIdentifier, SIGUSR1)
        let outcome = job.wait(timeout: 120)
        #expect(outcome.status == 128 + SIGUSR1, "exit \(outcome.status), not 138:\n\(outcome.output)")
        #expect(Date().timeIntervalSince(sent) < 15, "stops within seconds, not at a flush timeout")
        #expect(!outcome.output.contains("aborts the job"), "no rank aborted:\n\(outcome.output)")
        let partial = try ws.records()
        #expect(!partial.isEmpty && partial.count < count, "\(partial.count) records")
        let stats = ws.stats()
        #expect(stats?["outcome"] as? String == "interrupted", "stats.json: \(String(describing: stats))")
        #expect((stats?["records"] as? [String: Any])?["processed"] as? Int == partial.count)
    }

    /// np 1 (one process, no launcher): SIGTERM at any moment ends the run within seconds, never ignored.
    /// Once run.json is on disk the stop is always the graceful one (exit 143, shards completed,
    /// stats.json "interrupted"); before that the signal may also come before the handlers exist, and
    /// the process then dies of it at once, which is fine too.
    @Test func sigtermAtNp1IsNeverIgnored() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        try ws.write(ws.goodJobs(3000))
        let arguments = ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path, "--output-dir", ws.output.path,
                         "--max-tokens", "6", "--shard-size", "20"]
        // Delays after the start (s); nil: once run.json exists (the coordinator is at work).
        let delays: [Double?] = [0, 0.02, 0.1, 0.3, 0.6, 1.0, nil, nil, nil, nil, nil, nil]
        for (attempt, delay) in delays.enumerated() {
            try? FileManager.default.removeItem(at: ws.output)
            let job = try Job(np: 1, arguments: arguments)
            let runJSON = ws.output.appendingPathComponent("run.json").path
            if let delay {
                Thread.sleep(forTimeInterval: delay)
            } else {
                let deadline = Date().addingTimeInterval(60)
                while Date() < deadline, job.process.isRunning, !FileManager.default.fileExists(atPath: runJSON) {
                    Thread.sleep(forTimeInterval: 0.005)
                }
                Thread.sleep(forTimeInterval: 0.05 * Double(attempt % 4))
            }
            try #require(job.process.isRunning, "attempt \(attempt): the run ended before the signal")
            let sent = Date()
            _ = kill(job.process.processIdentifier, SIGTERM)
            let outcome = job.wait(timeout: 20)
            let seconds = Date().timeIntervalSince(sent)
            let label = "attempt \(attempt) (delay \(delay.map { "\($0) s" } ?? "after run.json"))"
            #expect(!job.timedOut && seconds < 10, "\(label): still running \(seconds) s after SIGTERM\n\(outcome.output)")
            let graceful = job.process.terminationReason == .exit
            if graceful {
                #expect(outcome.status == 143, "\(label): exit \(outcome.status)\n\(outcome.output)")
                let stats = ws.stats()
                #expect(stats?["outcome"] as? String == "interrupted" && stats?["signal"] as? String == "SIGTERM",
                        "\(label): stats.json \(String(describing: stats))")
                let records = try ws.records()
                #expect(records.count < 3000 && Set(records.map { $0["id"] as! String }).count == records.count,
                        "\(label): \(records.count) records")
                #expect(!((try? FileManager.default.contentsOfDirectory(atPath: ws.output.path)) ?? [])
                            .contains { $0.hasSuffix(".tmp") }, "\(label): the partial shard was completed")
            } else {
                #expect(outcome.status == SIGTERM, "\(label): died of signal \(outcome.status)")
                #expect(delay != nil, "\(label): after run.json the stop must be the graceful one")
            }
        }
    }

    /// `mpirun -np 1`: MPI is initialized (the launcher is recognized), the world has one rank, so every
    /// role runs in this process as without mpirun, and MPI is finalized at the end.
    @Test func mpirunWithOneRankRunsEveryRoleInProcess() throws {
        try #require(Self.hasMPI, "mpirun is not installed")
        let ws = try Workspace()
        defer { ws.remove() }
        let lines = ws.goodJobs(12)
        try ws.write(lines)
        let outcome = try Job(np: 1, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                                 "--output-dir", ws.output.path, "--max-tokens", "5"],
                              mpirun: true).wait(timeout: 120)
        #expect(outcome.status == 0, "\(outcome.output)")
        #expect(!outcome.output.contains("finalize"), "MPI was finalized:\n\(outcome.output)")
        let ids = try ws.records().map { $0["id"] as! String }
        #expect(ids.count == lines.count && Set(ids).count == lines.count)
        #expect(try ws.runLayout()["world_size"] as? Int == 3, "one process, 1 + V + S endpoints")
        #expect(ws.stats()?["outcome"] as? String == "complete")
    }

    /// A launcher that sets PMIX_RANK but none of Open MPI's OMPI_COMM_WORLD_* variables (as
    /// `srun --mpi=pmix` does) is recognized: the ranks initialize MPI and form one 3-rank job. (Before,
    /// each rank ran the whole job alone into the same directory.) Simulated by mpirun with a wrapper
    /// that removes those variables; PMIx still connects the ranks.
    @Test func aPMIxOnlyLaunchRunsAsOneDistributedJob() throws {
        try #require(Self.hasMPI, "mpirun is not installed")
        let ws = try Workspace()
        defer { ws.remove() }
        let lines = ws.goodJobs(12)
        try ws.write(lines)
        let wrapper = ws.root.appendingPathComponent("pmix-only.sh")
        try Data("""
            #!/bin/sh
            [ -n "$PMIX_RANK" ] || { echo "pmix-only.sh: PMIX_RANK is not set" >&2; exit 3; }
            for v in $(env | grep -E '^(OMPI_COMM_WORLD_[A-Z_]*|PMI_RANK|PMI_SIZE|PMIX_SIZE)=' | cut -d= -f1); do unset "$v"; done
            exec "$@"

            """.utf8).write(to: wrapper)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper.path)
        let outcome = try Job(np: 3, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                                 "--output-dir", ws.output.path, "--max-tokens", "5"],
                              wrapper: [wrapper.path]).wait(timeout: 120)
        #expect(outcome.status == 0, "\(outcome.output)")
        let layout = try ws.runLayout()
        #expect(layout["world_size"] as? Int == 3 && layout["replicas"] as? Int == 1, "one 3-rank job: \(layout)")
        #expect(outcome.output.components(separatedBy: "paligemma run: done:").count == 2, "one coordinator:\n\(outcome.output)")
        let ids = try ws.records().map { $0["id"] as! String }
        #expect(ids.count == lines.count && Set(ids).count == lines.count)
    }

    /// A process whose launcher variables say it is one rank of several, while MPI (with no launcher
    /// behind them to connect to) initializes a world of 1, refuses to start: before, PMIX_RANK alone
    /// made it run the whole job by itself, and PMI_SIZE made it fail with an obscure transport error.
    @Test(arguments: [["PMIX_RANK": "1"], ["PMI_RANK": "0", "PMI_SIZE": "4"]])
    func aLaunchThatMPICannotJoinIsRefused(environment: [String: String]) throws {
        try #require(Self.hasMPI, "Open MPI is not installed")
        let ws = try Workspace()
        defer { ws.remove() }
        try ws.write(ws.goodJobs(4))
        let outcome = try Job(np: 1, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                                 "--output-dir", ws.output.path, "--max-tokens", "4"],
                              environment: environment).wait(timeout: 120)
        #expect(outcome.status == 2, "\(environment): \(outcome.output)")
        #expect(outcome.output.contains("MPI initialized a world of 1"), "\(outcome.output)")
        #expect(!FileManager.default.fileExists(atPath: ws.output.appendingPathComponent("run.json").path),
                "nothing was run")
    }

    /// Without --stages, S is capped at the decoder's layers: np 6 leaves 5 workers, whose default
    /// (V = 1, S = 4) does not fit pg1-mqa's 2 layers; the spare ranks become vision ranks (V = 3, S = 2).
    @Test func theDefaultStageCountIsCappedAtTheDecoderLayers() throws {
        try #require(Self.hasMPI, "mpirun is not installed")
        let ws = try Workspace()
        defer { ws.remove() }
        let good = ws.goodJobs(8)
        try ws.write(good)
        let outcome = try Job(np: 6, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                                 "--output-dir", ws.output.path, "--max-tokens", "6"]).wait(timeout: 180)
        #expect(outcome.status == 0, "\(outcome.output)")
        let layout = try ws.runLayout()
        #expect(layout["stages"] as? Int == 2 && layout["vision_ranks"] as? Int == 3 && layout["replicas"] as? Int == 1,
                "\(layout)")
        #expect(layout["stage_layers"] as? [Int] == [1, 1])
        #expect(outcome.output.contains("spare ranks"), "says why:\n\(outcome.output)")
        let expected = try expectedTokens(model: model("pg1-mqa"), jobs: good, root: ws.root, maxTokens: 6)
        let records = try ws.records()
        #expect(records.count == good.count)
        for record in records {
            #expect(record["tokens"] as? [Int] == expected[record["id"] as! String], "tokens of \(record["id"]!)")
        }
    }

    @Test(arguments: ["KILL", "STOP"])
    func aDeadOrSilentRankEndsTheJobWithin30Seconds(how: String) throws {
        try #require(Self.hasMPI, "mpirun is not installed")
        let ws = try Workspace()
        defer { ws.remove() }
        try ws.write(ws.goodJobs(3000))
        let job = try Job(np: 4, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                             "--output-dir", ws.output.path, "--max-tokens", "8", "--stages", "2",
                                             "--peer-timeout", "5"])
        let ranks = job.ranksAtWork(count: 4, runJSON: ws.output.appendingPathComponent("run.json"))
        try #require(ranks.count == 4, "mpirun started \(ranks.count) ranks")
        let victim = ranks.sorted()[2]
        let struck = Date()
        _ = kill(victim, how == "KILL" ? SIGKILL : SIGSTOP)
        let outcome = job.wait(timeout: 60)
        if how == "STOP" { _ = kill(victim, SIGKILL) }
        let seconds = Date().timeIntervalSince(struck)
        #expect(outcome.status != 0, "the job fails")
        #expect(seconds < 30, "ended \(seconds) s after the rank was \(how == "KILL" ? "killed" : "stopped")")
        if how == "STOP" {
            #expect(outcome.output.contains("silent"), "the message names the silent rank:\n\(outcome.output)")
            // Rank 0 noticed the silence itself: it kept what is whole and said so in stats.json.
            let stats = ws.stats()
            #expect(stats?["outcome"] as? String == "failed", "stats.json: \(String(describing: stats))")
            #expect((stats?["error"] as? String)?.contains("silent") == true)
            #expect(!((try? FileManager.default.contentsOfDirectory(atPath: ws.output.path)) ?? []).contains { $0.hasSuffix(".tmp") })
        } else {
            #expect(outcome.output.contains("rank"), "the message names the rank:\n\(outcome.output)")
        }
    }

    /// Issue 11: failure detection must not mistake work for death. Every rank's load and every vision
    /// batch take 5 s (the test-only PALIGEMMA_TEST_SLOW_* hooks, TestHooks.swift), longer than
    /// --peer-timeout 3: a rank that waits on a slow peer must keep hearing its heartbeats (sent by the
    /// peer's communication thread, which never waits on computation), so the job completes. With one
    /// vision image per batch, decoder stage 0 waits about 5 s on the vision rank between jobs.
    @Test(arguments: [(1, ""), (3, ""), (4, "--stages 2")])
    func slowLoadingAndSlowVisionAreNotMistakenForDeath(np: Int, layout: String) throws {
        try #require(np == 1 || Self.hasMPI, "mpirun is not installed")
        let ws = try Workspace()
        defer { ws.remove() }
        let good = ws.goodJobs(3)
        try ws.write(good)
        let slow = 5.0
        let outcome = try Job(np: np, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                                  "--output-dir", ws.output.path, "--max-tokens", "4",
                                                  "--vision-batch", "1", "--peer-timeout", "3",
                                                  "--heartbeat-interval", "0.5"]
                                  + layout.split(separator: " ").map(String.init),
                              environment: ["PALIGEMMA_TEST_SLOW_LOAD": "\(slow)",
                                            "PALIGEMMA_TEST_SLOW_VISION": "\(slow)"]).wait(timeout: 240)
        #expect(outcome.status == 0, "np \(np) \(layout): exit \(outcome.status)\n\(outcome.output)")
        #expect(!outcome.output.contains("silent"), "no rank was taken for dead:\n\(outcome.output)")
        // The hooks really slowed the job down: a load, then one slow vision batch per job.
        #expect(outcome.seconds >= slow * Double(1 + good.count), "took only \(outcome.seconds) s")
        let records = try ws.records()
        #expect(records.map { $0["id"] as! String }.sorted() == good.map { $0["id"] as! String }.sorted(),
                "each id exactly once")
        let expected = try expectedTokens(model: model("pg1-mqa"), jobs: good, root: ws.root, maxTokens: 4)
        for record in records {
            let id = record["id"] as! String
            #expect(record["status"] as? String == "ok", "\(id): \(record)")
            #expect(record["tokens"] as? [Int] == expected[id], "tokens of \(id)")
            let vision = (record["timings"] as? [String: Any])?["vision_s"] as? Double
            #expect((vision ?? 0) >= slow, "\(id): vision_s \(String(describing: vision)) reflects the slow batch")
        }
        #expect(ws.stats()?["outcome"] as? String == "complete")
    }

    @Test func worldSizesThatDoNotFitAreRefusedBeforeWork() throws {
        try #require(Self.hasMPI, "mpirun is not installed")
        let ws = try Workspace()
        defer { ws.remove() }
        try ws.write(ws.goodJobs(3))
        for (np, extra, words) in [(2, [String](), "cannot hold"), (6, ["--stages", "3"], "does not fit"),
                                   (4, ["--stages", "2", "--stage-layers", "1,2"], "covers 3 layers"),
                                   (6, ["--vision-ranks", "2"], "the decoder has 2 layer(s)")] {
            let outcome = try Job(np: np, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                                      "--output-dir", ws.output.path] + extra).wait(timeout: 60)
            #expect(outcome.status != 0)
            #expect(outcome.output.contains(words), "np \(np) \(extra): \(outcome.output)")
            #expect(!FileManager.default.fileExists(atPath: ws.output.appendingPathComponent("run.json").path))
        }
    }

    @Test func aMalformedManifestLineStopsTheJobBeforeWork() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        var text = try ws.goodJobs(5).map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
        text.insert("{\"id\": \"x\", \"image\": ", at: 3)
        text.append(text[0])   // a duplicate id
        try Data((text.joined(separator: "\n") + "\n").utf8).write(to: ws.manifest)
        let outcome = try Job(np: 1, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                                 "--output-dir", ws.output.path]).wait(timeout: 60)
        #expect(outcome.status != 0)
        #expect(outcome.output.contains("jobs.jsonl:4"), "names the line: \(outcome.output)")
        #expect(((try? ws.records()) ?? []).isEmpty, "nothing processed")
    }

    @Test func resumingWithOtherSettingsIsRefused() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        try ws.write(ws.goodJobs(4))
        let base = ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path, "--output-dir", ws.output.path]
        #expect(try Job(np: 1, arguments: base + ["--max-tokens", "4"]).wait().status == 0)
        let refused = try Job(np: 1, arguments: base + ["--max-tokens", "5"]).wait()
        #expect(refused.status != 0)
        #expect(refused.output.contains("max_tokens"), "\(refused.output)")
    }
}
