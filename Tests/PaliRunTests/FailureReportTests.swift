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
        let outcome = job.wait(timeout: 60)
        #expect(!job.timedOut && outcome.seconds < 30, "np \(np): took \(outcome.seconds) s\n\(outcome.output)")
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
}
