// Issue 13, "What trying it found": what a demanding operator does to `paligemma` (two runs on one
// folder, NaN sampling, a missing --image-root, a folder deleted mid-run, SIGHUP/SIGQUIT, `--prompt=`,
// odd files), each through the built executable. In the serialized RunJobTests suite: these start runs
// too, and timing checks must not share the cores with other runs.
import Foundation
import Testing

/// One `paligemma SUBCOMMAND ...` run to its end: exit status, stdout and stderr apart.
struct Tool {
    let status: Int32
    let stdout: String
    let stderr: String
    let seconds: Double

    static func run(_ arguments: [String], timeout: Double = 120) throws -> Tool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Tools.paligemma)
        process.arguments = arguments
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("paligemma-tool-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("out"), err = folder.appendingPathComponent("err")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        let started = Date()
        try Job.runWithNoSignalsBlocked(process)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning { process.terminate(); process.waitUntilExit() }
        return Tool(status: process.terminationStatus,
                    stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                    stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "",
                    seconds: Date().timeIntervalSince(started))
    }
}

/// The host name as the lock file writes it.
private func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    gethostname(&buffer, buffer.count - 1)
    return String(cString: buffer)
}

/// A pid that no longer runs: a child that has exited and been reaped.
private func deadPID() throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/true")
    try process.run()
    process.waitUntilExit()
    return process.processIdentifier
}

/// Waits until `path` exists (or `job` ends, or 60 s pass).
private func waitFor(_ path: URL, while job: Job) {
    let deadline = Date().addingTimeInterval(60)
    while Date() < deadline, job.process.isRunning, !FileManager.default.fileExists(atPath: path.path) {
        Thread.sleep(forTimeInterval: 0.005)
    }
}

/// Starts a 1,200-job run (np 1, 6 tokens, shards of `shardSize`) on `ws` and waits until `until`
/// exists in its output folder (or the run ends); returns the manifest lines, the arguments and the job.
private func startLongRun(_ ws: Workspace, shardSize: Int, until file: String) throws -> ([[String: Any]], [String], Job) {
    let lines = ws.goodJobs(1200)
    try ws.write(lines)
    let arguments = ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path, "--output-dir", ws.output.path,
                     "--max-tokens", "6", "--shard-size", "\(shardSize)"]
    let job = try Job(np: 1, arguments: arguments)
    waitFor(ws.output.appendingPathComponent(file), while: job)
    return (lines, arguments, job)
}

private func names(_ folder: URL) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).sorted()
}

extension RunJobTests {
    // MARK: 1. two runs, one folder

    /// A second run on a folder another run is writing is refused at once (exit 2) naming that run's
    /// pid@host; the first one finishes with every id exactly once and removes its lock. (Before: both
    /// ran, deleting each other's temporary shard and losing or duplicating records.)
    @Test func aSecondRunOnAFolderInUseIsRefusedNamingTheFirst() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let (lines, arguments, first) = try startLongRun(ws, shardSize: 50, until: "run.json")
        try #require(first.process.isRunning, "the first run ended before the second started; use more jobs")
        let second = try Job(np: 1, arguments: arguments).wait(timeout: 60)
        let stillRunning = first.process.isRunning
        #expect(second.status == 2, "the second run: exit \(second.status)\n\(second.output)")
        #expect(second.seconds < 10, "refused at once, not after \(second.seconds) s")
        #expect(second.output.contains("\(first.process.processIdentifier)@\(hostName())"),
                "names the first run's pid@host:\n\(second.output)")
        #expect(stillRunning, "the first run was still at work when the second was refused")
        let outcome = first.wait()
        #expect(outcome.status == 0, "\(outcome.output)")
        let ids = try ws.records().map { $0["id"] as! String }
        #expect(ids.count == lines.count && Set(ids) == Set(lines.map { $0["id"] as! String }), "every id exactly once")
        #expect(ws.stats()?["outcome"] as? String == "complete")
        #expect(!names(ws.output).contains("run.lock") && !names(ws.output).contains { $0.hasSuffix(".tmp") },
                "the lock is released and no temporary shard is left: \(names(ws.output))")
    }

    /// A lock left by a dead process of this host is taken over with a note, and that process's temporary
    /// shard is deleted; another host's temporary shard is left alone. A lock of another host is never
    /// taken: refused, with how to remove it.
    @Test func aStaleLockIsTakenOverButAnotherHostsLockIsNot() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let lines = ws.goodJobs(6)
        try ws.write(lines)
        let arguments = ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path, "--output-dir", ws.output.path,
                         "--max-tokens", "4"]
        try FileManager.default.createDirectory(at: ws.output, withIntermediateDirectories: true)
        let dead = try deadPID()
        let lock = ws.output.appendingPathComponent("run.lock")
        try Data(#"{"pid":\#(dead),"host":"\#(hostName())","started_at":"2025-01-31T12:00:00Z"}"#.utf8 + [0x0A]).write(to: lock)
        let deadTemp = ".shard-00000.jsonl.\(dead)@\(hostName()).tmp", foreignTemp = ".shard-00001.jsonl.77@elsewhere.tmp"
        for name in [deadTemp, foreignTemp] {
            try Data("{\"id\": \"half".utf8).write(to: ws.output.appendingPathComponent(name))
        }
        let outcome = try Job(np: 1, arguments: arguments).wait(timeout: 120)
        #expect(outcome.status == 0, "\(outcome.output)")
        #expect(outcome.output.contains("took over") && outcome.output.contains("\(dead)@\(hostName())"),
                "says it took over the stale lock:\n\(outcome.output)")
        #expect(try ws.records().count == lines.count)
        let left = names(ws.output)
        #expect(!left.contains("run.lock") && !left.contains(deadTemp), "\(left)")
        #expect(left.contains(foreignTemp), "another host's temporary shard is not deleted: \(left)")
        #expect(outcome.output.contains(foreignTemp), "and the run says it left it:\n\(outcome.output)")

        try Data(#"{"pid":4242,"host":"node-elsewhere","started_at":"2025-01-31T12:00:00Z"}"#.utf8 + [0x0A]).write(to: lock)
        let refused = try Job(np: 1, arguments: arguments).wait(timeout: 60)
        #expect(refused.status == 2, "\(refused.output)")
        #expect(refused.output.contains("4242@node-elsewhere") && refused.output.contains("delete \(lock.path)"),
                "names the holder and how to remove its lock:\n\(refused.output)")
        #expect(FileManager.default.fileExists(atPath: lock.path), "another host's lock is never removed")
    }

    // MARK: 2. NaN / inf sampling parameters

    @Test(arguments: [["--temperature", "nan"], ["--temperature", "inf"], ["--top-p", "nan"], ["--top-p", "inf"]])
    func nonFiniteSamplingParametersAreRefusedAtParse(option: [String]) throws {
        let ws = try Workspace()
        defer { ws.remove() }
        try ws.write(ws.goodJobs(2))
        let image = ws.root.appendingPathComponent("images/png_gray8.png").path
        let generate = try Tool.run(["generate", "--model", model("pg1-mqa").path, "--image", image, "--prompt", "caption en",
                                     "--max-tokens", "3"] + option)
        let run = try Tool.run(["run", "--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                "--output-dir", ws.output.path] + option)
        for (name, result) in [("generate", generate), ("run", run)] {
            #expect(result.status == 64, "\(name) \(option): exit \(result.status)\n\(result.stderr)")
            #expect(result.stderr.contains(option[0]) && result.stderr.contains(option[1]),
                    "\(name) \(option): the message names the option and value:\n\(result.stderr)")
            #expect(result.stdout.isEmpty, "\(name) \(option) printed \(result.stdout)")
        }
        #expect(!FileManager.default.fileExists(atPath: ws.output.path), "run did nothing")
    }

    // MARK: 3. --image-root that does not exist

    @Test func anImageRootThatIsNotAFolderIsRefusedBeforeWork() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        try ws.write(ws.goodJobs(3))
        let notAFolder = ws.root.appendingPathComponent("images/png_gray8.png").path
        for (root, words) in [(ws.root.appendingPathComponent("no-such-root").path, "No such file or directory"),
                              (notAFolder, "is not a directory")] {
            let outcome = try Job(np: 1, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                                     "--output-dir", ws.output.path, "--image-root", root]).wait(timeout: 60)
            #expect(outcome.status == 2, "--image-root \(root): exit \(outcome.status)\n\(outcome.output)")
            #expect(outcome.output.contains("--image-root \(root)") && outcome.output.contains(words), "\(outcome.output)")
            #expect(!FileManager.default.fileExists(atPath: ws.output.path), "nothing was written: \(names(ws.output))")
        }
    }

    // MARK: 4. the output folder deleted mid-run

    /// stats.json must never become a file where the folder was; the run fails saying why, and a rerun
    /// does the whole job.
    @Test func anOutputFolderDeletedMidRunFailsClearlyAndTheRerunWorks() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let (lines, arguments, job) = try startLongRun(ws, shardSize: 40, until: "shard-00001.jsonl")
        try #require(job.process.isRunning, "the run ended before the folder was deleted; use more jobs")
        // The run keeps creating temporary shards: repeat until the folder is gone.
        let deadline = Date().addingTimeInterval(10)
        while FileManager.default.fileExists(atPath: ws.output.path) && Date() < deadline {
            try? FileManager.default.removeItem(at: ws.output)
        }
        let outcome = job.wait(timeout: 60)
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: ws.output.path, isDirectory: &isDirectory)
        #expect(!exists || isDirectory.boolValue, "something other than a folder was written at \(ws.output.path)")
        #expect(outcome.status != 0, "a run that lost its output does not succeed:\n\(outcome.output)")
        #expect(outcome.output.contains("was removed while the run was writing to it"), "\(outcome.output)")

        let rerun = try Job(np: 1, arguments: arguments).wait()
        #expect(rerun.status == 0, "the rerun: \(rerun.output)")
        let ids = try ws.records().map { $0["id"] as! String }
        #expect(ids.count == lines.count && Set(ids).count == lines.count, "every id exactly once")
    }

    // MARK: 5. SIGHUP and SIGQUIT

    /// np 1: a closed terminal (SIGHUP) and SIGQUIT stop the run as SIGTERM does: the partial shard is
    /// completed, stats.json says which signal, the lock is released, exit 128 + signal. (Before: SIGHUP
    /// killed the run with no stats.json and the temporary shard left; SIGQUIT printed a 30 s backtrace.)
    @Test(arguments: [(SIGHUP, "SIGHUP"), (SIGQUIT, "SIGQUIT")])
    func sighupAndSigquitStopTheRunLikeSigterm(signal: Int32, name: String) throws {
        let ws = try Workspace()
        defer { ws.remove() }
        try ws.write(ws.goodJobs(3000))
        let job = try Job(np: 1, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                             "--output-dir", ws.output.path, "--max-tokens", "6", "--shard-size", "20"])
        waitFor(ws.output.appendingPathComponent("run.json"), while: job)
        Thread.sleep(forTimeInterval: 0.3)
        try #require(job.process.isRunning, "the run ended before the signal")
        let sent = Date()
        _ = kill(job.process.processIdentifier, signal)
        let outcome = job.wait(timeout: 40)
        #expect(Date().timeIntervalSince(sent) < 10, "\(name): stopped \(Date().timeIntervalSince(sent)) s after the signal")
        #expect(job.process.terminationReason == .exit && outcome.status == 128 + signal,
                "\(name): exit \(outcome.status) (\(job.process.terminationReason == .exit ? "exit" : "signal"))\n\(outcome.output)")
        let stats = ws.stats()
        #expect(stats?["outcome"] as? String == "interrupted" && stats?["signal"] as? String == name,
                "stats.json: \(String(describing: stats))")
        let records = try ws.records()
        #expect(!records.isEmpty && Set(records.map { $0["id"] as! String }).count == records.count)
        #expect((stats?["records"] as? [String: Any])?["processed"] as? Int == records.count)
        #expect(!names(ws.output).contains { $0.hasSuffix(".tmp") || $0 == "run.lock" }, "\(names(ws.output))")
    }

    // MARK: 6. --prompt= and --text=

    /// `--OPTION=` with nothing after `=` (what `--prompt="$P"` gives when P is empty) is the empty string,
    /// exactly as `--OPTION ""`: for generate, logits, run and tokenize.
    @Test func anEmptyValueAfterEqualsIsTheEmptyString() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let model = model("pg1-mqa").path
        let image = ws.root.appendingPathComponent("images/png_gray8.png").path

        let text = try Tool.run(["tokenize", "--tokenizer", model, "--text="])
        let textSpaced = try Tool.run(["tokenize", "--tokenizer", model, "--text", ""])
        #expect(text.status == 0 && text.stdout == textSpaced.stdout && text.stdout == "{\"ids\": [], \"text\": \"\"}\n",
                "tokenize --text=: \(text.status) \(text.stdout) \(text.stderr)")

        let generate = try Tool.run(["generate", "--model", model, "--image", image, "--prompt=", "--max-tokens", "4", "--json"])
        let generateSpaced = try Tool.run(["generate", "--model", model, "--image", image, "--prompt", "", "--max-tokens", "4", "--json"])
        #expect(generate.status == 0 && !generate.stdout.isEmpty && generate.stdout == generateSpaced.stdout,
                "generate --prompt=: \(generate.status) \(generate.stdout) \(generate.stderr) vs \(generateSpaced.stdout)")

        let a = ws.root.appendingPathComponent("a.safetensors").path, b = ws.root.appendingPathComponent("b.safetensors").path
        let logits = try Tool.run(["logits", "--model", model, "--image", image, "--prompt=", "--output", a])
        let logitsSpaced = try Tool.run(["logits", "--model", model, "--image", image, "--prompt", "", "--output", b])
        #expect(logits.status == 0 && logitsSpaced.status == 0, "logits --prompt=: \(logits.stderr)")
        #expect(FileManager.default.contents(atPath: a) == FileManager.default.contents(atPath: b), "the same logits")

        let run = try Job(np: 1, arguments: ["--model", model, "--images", ws.root.appendingPathComponent("images").path,
                                             "--prompt=", "--output-dir", ws.output.path, "--max-tokens", "3"]).wait(timeout: 120)
        #expect(run.status == 0, "run --prompt=: \(run.output)")
        let records = try ws.records()
        #expect(!records.isEmpty && records.allSatisfy { $0["prompt"] as? String == "" }, "\(records.map { $0["prompt"] ?? "nil" })")

        // Only where "" is legal: other options still say a value is missing.
        let missing = try Tool.run(["generate", "--model=", "--image", image])
        #expect(missing.status != 0 && missing.stderr.contains("Missing value"), "\(missing.stderr)")
    }

    // MARK: 7. messages and exit codes

    @Test func textFilesThatAreNotRegularFilesAreReadOrNamedExactly() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let tokenizer = model("pg1-mqa").path
        let empty = try Tool.run(["tokenize", "--tokenizer", tokenizer, "--text-file", "/dev/null"])
        #expect(empty.status == 0 && empty.stdout.isEmpty, "/dev/null: \(empty.status) \(empty.stderr)")

        // A pipe (what `--text-file <(...)` gives): written by another thread while tokenize reads it.
        let fifo = ws.root.appendingPathComponent("texts.fifo").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let writer = Thread {
            // Without blocking: were tokenize never to open the pipe, this thread must not hang the tests.
            let deadline = Date().addingTimeInterval(30)
            var fd: Int32 = -1
            while fd < 0 && Date() < deadline {
                fd = open(fifo, O_WRONLY | O_NONBLOCK)
                if fd < 0 { Thread.sleep(forTimeInterval: 0.01) }
            }
            guard fd >= 0 else { return }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
            let bytes = Array("hello\nworld\n".utf8)
            _ = write(fd, bytes, bytes.count)
            close(fd)
        }
        writer.start()
        let piped = try Tool.run(["tokenize", "--tokenizer", tokenizer, "--text-file", fifo], timeout: 30)
        let direct = try Tool.run(["tokenize", "--tokenizer", tokenizer, "--text", "hello"])
        #expect(piped.status == 0 && piped.stdout.split(separator: "\n").count == 2, "a pipe: \(piped.stdout) \(piped.stderr)")
        #expect(piped.stdout.hasPrefix(direct.stdout), "\(piped.stdout) vs \(direct.stdout)")

        for (path, words) in [(ws.root.appendingPathComponent("nope.txt").path, "No such file or directory"),
                              (ws.root.path, "Is a directory")] {
            let result = try Tool.run(["tokenize", "--tokenizer", tokenizer, "--text-file", path])
            #expect(result.status != 0 && result.stderr.contains(path) && result.stderr.contains(words)
                    && !result.stderr.contains("check that the file exists"), "\(path): \(result.stderr)")
        }
    }

    /// Setup errors exit 2 (docs/operations.md §8): a manifest whose extension says no known format is one.
    @Test func aManifestOfUnknownFormatIsASetupError() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let manifest = ws.root.appendingPathComponent("jobs.txt")
        try Data("{\"id\": \"a\", \"image\": \"images/png_gray8.png\", \"prompt\": \"\"}\n".utf8).write(to: manifest)
        let outcome = try Job(np: 1, arguments: ["--model", model("pg1-mqa").path, "--manifest", manifest.path,
                                                 "--output-dir", ws.output.path]).wait(timeout: 60)
        #expect(outcome.status == 2, "exit \(outcome.status)\n\(outcome.output)")
        #expect(outcome.output.contains(".jsonl") && outcome.output.contains(".csv") && outcome.output.contains(manifest.path),
                "says which extensions are understood:\n\(outcome.output)")
    }

    /// An image path that is a directory, a symlink loop or a dangling symlink: each error record says
    /// what the path is ("is a directory", "Too many levels of symbolic links", missing).
    @Test func imagePathsThatAreNotImageFilesSayWhatTheyAre() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let images = ws.root.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images.appendingPathComponent("a-folder.jpg"), withIntermediateDirectories: true)
        #expect(symlink("loop-b.jpg", images.appendingPathComponent("loop-a.jpg").path) == 0)
        #expect(symlink("loop-a.jpg", images.appendingPathComponent("loop-b.jpg").path) == 0)
        #expect(symlink("gone.jpg", images.appendingPathComponent("dangling.jpg").path) == 0)
        try ws.write([
            ["id": "folder", "image": "images/a-folder.jpg", "prompt": "caption en"],
            ["id": "loop", "image": "images/loop-a.jpg", "prompt": "caption en"],
            ["id": "dangling", "image": "images/dangling.jpg", "prompt": "caption en"],
            ["id": "good", "image": "images/png_gray8.png", "prompt": "caption en"],
        ])
        let outcome = try Job(np: 1, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                                 "--output-dir", ws.output.path, "--max-tokens", "3"]).wait(timeout: 120)
        #expect(outcome.status == 0, "\(outcome.output)")
        let records = Dictionary(uniqueKeysWithValues: try ws.records().map { ($0["id"] as! String, $0) })
        func error(_ id: String) -> (kind: String, message: String) {
            let e = records[id]?["error"] as? [String: Any]
            return (e?["kind"] as? String ?? "none", e?["message"] as? String ?? "")
        }
        #expect(error("folder").kind == "unreadable_image" && error("folder").message.contains("is a directory")
                && !error("folder").message.contains("NSCocoaErrorDomain"), "\(error("folder"))")
        #expect(error("loop").kind == "unreadable_image"
                && error("loop").message.lowercased().contains("too many levels of symbolic links"), "\(error("loop"))")
        #expect(error("dangling").kind == "missing_image", "\(error("dangling"))")
        #expect(records["good"]?["status"] as? String == "ok")
    }
}
