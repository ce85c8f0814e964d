// A worker that cannot go on (a lost peer, a failed transfer, an error of its role) tells the coordinator
// why (`FailureMessage`) instead of aborting at once: rank 0 completes the shard being written, writes
// stats.json with outcome "failed" and the reason naming the worker's rank, role and host, and ends the
// job. Checked in one process (every rank a thread over LocalTransport) and under mpirun (MPITransport,
// host names exchanged at start). The failure is the test hook PALIGEMMA_TEST_FAIL_RANK.
import Foundation
import Testing

@Suite(.serialized)
struct FailureReportTests {
    static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, 255)
        return String(cString: buffer)
    }

    @Test(arguments: [1, 3])
    func aWorkerThatCannotGoOnIsNamedWithRoleAndHostInStatsJSON(np: Int) throws {
        try #require(np == 1 || RunJobTests.hasMPI, "mpirun is not installed (Launch/setup.sh installs openmpi-bin)")
        let ws = try Workspace()
        defer { ws.remove() }
        try ws.write(ws.goodJobs(400))
        // Rank 2 is decoder stage 0 of replica 0 in both layouts (coordinator, vision, stage).
        let job = try Job(np: np, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                              "--output-dir", ws.output.path, "--max-tokens", "4"],
                          environment: ["PALIGEMMA_TEST_FAIL_RANK": "2"])
        // Loading and a few jobs, then at most the report's grace (3 s): generous for a loaded machine.
        let outcome = job.wait(timeout: 90)
        #expect(!job.timedOut && outcome.seconds < 60, "np \(np): took \(outcome.seconds) s\n\(outcome.output)")
        #expect(outcome.status != 0, "np \(np): the job fails")
        let worker = "rank 2 (stage 0 of replica 0) on \(Self.hostName)"
        let stats = ws.stats()
        #expect(stats?["outcome"] as? String == "failed", "np \(np): stats.json \(String(describing: stats))\n\(outcome.output)")
        let error = stats?["error"] as? String ?? ""
        #expect(error.contains("\(worker) cannot go on") && error.contains("PALIGEMMA_TEST_FAIL_RANK=2"),
                "np \(np): the reason names the worker, its role and host: \(error)")
        // Rank 0 ended the job (after writing stats.json), naming itself and its host.
        #expect(outcome.output.contains("rank 0 of 3 on \(Self.hostName) aborts the job: coordinator: \(worker) cannot go on"),
                "np \(np):\n\(outcome.output)")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: ws.output.path)) ?? []
        #expect(!names.contains { $0.hasSuffix(".tmp") }, "np \(np): the shard being written was completed: \(names)")
    }

    /// The rank a process of an mpirun job is (OMPI_COMM_WORLD_RANK in its environment), nil if unknown.
    static func mpiRank(of pid: Int32) -> Int? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return nil }
        for entry in data.split(separator: 0) {
            let text = String(decoding: entry, as: UTF8.self)
            if text.hasPrefix("OMPI_COMM_WORLD_RANK=") { return Int(text.dropFirst("OMPI_COMM_WORLD_RANK=".count)) }
        }
        return nil
    }

    /// A stop that a worker cannot answer because it is gone (here: stopped, so silent) is a failure
    /// naming that worker; the same stop with every worker alive is an interruption (RunJobTests).
    @Test func aStopThatASilentWorkerCannotAnswerNamesItAsLost() throws {
        try #require(RunJobTests.hasMPI, "mpirun is not installed (Launch/setup.sh installs openmpi-bin)")
        let ws = try Workspace()
        defer { ws.remove() }
        try ws.write(ws.goodJobs(1500))
        let job = try Job(np: 3, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                             "--output-dir", ws.output.path, "--max-tokens", "6"])
        let runJSON = ws.output.appendingPathComponent("run.json").path
        let deadline = Date().addingTimeInterval(60)
        var ranks: [Int: Int32] = [:]
        while Date() < deadline, job.process.isRunning, ranks.count < 3 || !FileManager.default.fileExists(atPath: runJSON) {
            ranks = Dictionary(job.ranks.compactMap { pid in Self.mpiRank(of: pid).map { ($0, pid) } }) { a, _ in a }
            Thread.sleep(forTimeInterval: 0.05)
        }
        try #require(ranks.count == 3 && job.process.isRunning, "ranks \(ranks)")
        // Rank 1 (the vision rank) stops: no answer, no heartbeat. Past two heartbeat intervals (2 s
        // each) it counts as lost; the peer timeout (20 s) is not reached.
        _ = kill(ranks[1]!, SIGSTOP)
        defer { _ = kill(ranks[1]!, SIGKILL) }
        Thread.sleep(forTimeInterval: 6)
        _ = kill(ranks[0]!, SIGTERM)
        let outcome = job.wait(timeout: 30)
        #expect(outcome.output.contains("SIGTERM received"), "\(outcome.output)")
        let stats = ws.stats()
        #expect(stats?["outcome"] as? String == "failed" && stats?["signal"] as? String == "SIGTERM",
                "stats.json: \(String(describing: stats))")
        #expect(stats?["lost_ranks"] as? [Int] == [1], "stats.json: \(String(describing: stats))")
        let error = stats?["error"] as? String ?? ""
        #expect(error.contains("rank 1 (vision 0 of replica 0) on \(Self.hostName) did not answer"), "\(error)")
    }
}
