// `paligemma run --trace`: the file is a valid Chrome/Perfetto trace (JSON trace events with the fields the
// format requires), every rank has a named track, spans nest per thread, the tracks hold what each role
// does (loading, vision batches, micro-batch steps, sends, idle waits), and busy fractions computed from
// the trace agree with stats.json's within 2 points, in one process (LocalTransport) and under mpirun.
// A rank that stops leaves a partial trace written by rank 0.
import Foundation
import Testing
import PaliBatch

@Suite(.serialized)
struct TraceRunTests {
    /// Checks the raw JSON against the Trace Event Format, independently of our reader: an object with a
    /// "traceEvents" array; every event has ph, pid, tid, name; "X" events have numeric ts and dur ≥ 0;
    /// "M" events name processes. Returns the pids with a process_name.
    func checkFormat(_ url: URL) throws -> Set<Int> {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any]
        let events = try #require(object?["traceEvents"] as? [[String: Any]], "a traceEvents array")
        var named: Set<Int> = []
        for (i, e) in events.enumerated() {
            let ph = e["ph"] as? String, pid = e["pid"] as? Int
            #expect(ph != nil && pid != nil && e["tid"] is Int && e["name"] is String, "event \(i): \(e)")
            if ph == "X" {
                let ts = e["ts"] as? Double, dur = e["dur"] as? Double
                #expect(ts != nil && dur != nil && dur! >= 0 && ts! >= -1e6, "event \(i): \(e)")
                #expect(e["cat"] is String, "event \(i) has a category")
            } else if ph == "M", e["name"] as? String == "process_name" {
                #expect(((e["args"] as? [String: Any])?["name"] as? String)?.hasPrefix("rank \(pid!):") == true)
                named.insert(pid!)
            }
        }
        return named
    }

    /// busy_fraction per rank from stats.json's roles ("rank 001: …").
    func statsBusy(_ ws: Workspace) throws -> [Int: Double] {
        let roles = try #require(ws.stats()?["roles"] as? [String: Any])
        var out: [Int: Double] = [:]
        for (name, value) in roles {
            guard let rank = Int(name.dropFirst(5).prefix(3)), let fraction = (value as? [String: Any])?["busy_fraction"] as? Double
            else { continue }
            out[rank] = fraction
        }
        return out
    }

    func runTraced(np: Int, layout: [String], jobs: Int, ws: Workspace) throws -> URL {
        try ws.write(ws.goodJobs(jobs))
        let trace = ws.root.appendingPathComponent("trace.json")
        let job = try Job(np: np, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                              "--output-dir", ws.output.path, "--max-tokens", "12",
                                              "--micro-batch-size", "2", "--trace", trace.path] + layout)
        let outcome = job.wait(timeout: 300)
        try #require(outcome.status == 0, "exit \(outcome.status)\n\(outcome.output)")
        return trace
    }

    @Test(arguments: [(1, [String]()), (4, ["--stages", "2"]), (3, [String]())])
    func theTraceIsValidHasEveryRankAndAgreesWithStats(np: Int, layout: [String]) throws {
        try #require(np == 1 || RunJobTests.hasMPI, "mpirun is not installed")
        let ws = try Workspace()
        defer { ws.remove() }
        let url = try runTraced(np: np, layout: layout, jobs: 24, ws: ws)
        // np 1 runs the default in-process layout (1 coordinator, 1 vision, 1 stage: 3 tracks).
        let ranks = np == 1 ? 3 : np
        let named = try checkFormat(url)
        #expect(named == Set(0..<ranks), "a named track per rank: \(named.sorted())")
        let tracks = try TraceFile.read(url)
        #expect(tracks.map(\.rank) == Array(0..<ranks))
        let busy = try statsBusy(ws)
        for track in tracks {
            #expect(TraceFile.nestingProblems(track).isEmpty, "\(TraceFile.nestingProblems(track).prefix(3))")
            #expect(track.complete && !track.host.isEmpty && track.host != "?", "\(track.label)")
            #expect(track.spans.allSatisfy { $0.duration >= 0 })
            let names = Set(track.spans.map(\.name))
            #expect(names.contains("idle"), "rank \(track.rank) has idle waits")
            if track.rank == 0 {
                #expect(names.contains("setup") && names.contains("shutdown"))
                continue
            }
            #expect(names.contains("load weights"), "rank \(track.rank): \(names.sorted())")
            if track.role.hasPrefix("vision") {
                #expect(names.contains("vision batch") && names.contains("send embeddings"), "\(names.sorted())")
                #expect(track.spans.filter { $0.name == "vision batch" }.reduce(0) { $0 + ($1.args.first { $0.0 == "images" }?.1 ?? 0) } == 24)
            } else {
                #expect(names.contains("micro-batch 0") && names.contains { $0.hasPrefix("send ") }, "\(names.sorted())")
            }
            // The same intervals as stats.json's busy and idle seconds: the fractions agree.
            let fromStats = try #require(busy[track.rank], "stats.json has rank \(track.rank)")
            let fromTrace = try #require(track.busyFraction)
            #expect(abs(fromTrace - fromStats) <= 0.02, "rank \(track.rank): trace \(fromTrace), stats.json \(fromStats)")
        }
    }

    /// Ranks 2 and 3 see another host name (`unshare --uts`, as root): their clocks go through the
    /// heartbeat estimate. They share this kernel's clock, so the true offset is 0: the estimate must be
    /// within its own stated bound of 0, and that bound small.
    @Test func ranksOnAnotherHostAreAlignedWithinTheStatedBound() throws {
        try #require(RunJobTests.hasMPI, "mpirun is not installed")
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        probe.arguments = ["--uts", "true"]
        probe.standardError = FileHandle.nullDevice
        try? probe.run()
        probe.waitUntilExit()
        try #require(probe.terminationReason == .exit && probe.terminationStatus == 0,
                     "unshare --uts is not allowed here (needs root): another host cannot be simulated")
        let ws = try Workspace()
        defer { ws.remove() }
        let wrapper = ws.root.appendingPathComponent("other-host.sh")
        try Data("""
            #!/bin/sh
            if [ "${OMPI_COMM_WORLD_RANK:-0}" -ge 2 ]; then
              exec unshare --uts sh -c 'hostname "trace-test-host-$OMPI_COMM_WORLD_RANK" && exec "$@"' sh "$@"
            fi
            exec "$@"

            """.utf8).write(to: wrapper)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper.path)
        try ws.write(ws.goodJobs(24))
        let trace = ws.root.appendingPathComponent("trace.json")
        let job = try Job(np: 4, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                             "--output-dir", ws.output.path, "--max-tokens", "12", "--stages", "2",
                                             "--micro-batch-size", "2", "--heartbeat-interval", "0.2", "--trace", trace.path],
                          wrapper: [wrapper.path])
        let outcome = job.wait(timeout: 300)
        try #require(outcome.status == 0, "exit \(outcome.status)\n\(outcome.output)")
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: trace)) as? [String: Any]
        let notes = try #require(object?["otherData"] as? [String: String])
        for rank in 2...3 {
            let note = try #require(notes["rank \(rank)"])
            #expect(note.hasPrefix("host trace-test-host-\(rank), clock offset "), "\(note)")
            // "host H, clock offset X s ± Y s"
            let numbers = note.split(separator: " ").compactMap { Double($0) }
            try #require(numbers.count == 2, "offset and bound in: \(note)")
            let (offset, bound) = (numbers[0], numbers[1])
            #expect(abs(offset) <= bound + 1e-6 && bound < 0.05, "rank \(rank): \(note)")
        }
        for track in try TraceFile.read(trace) { #expect(TraceFile.nestingProblems(track).isEmpty) }
        #expect(notes["rank 1"]?.contains("offset 0.000000 s ± 0.000000 s") == true, "rank 1 shares rank 0's host")
    }

    /// A stopped rank: rank 0 notices the silence, writes stats.json (failed) and the trace with what it
    /// has: its own track in full, the others' named (their chunks had not come yet: incomplete).
    @Test func aSilentRankLeavesAPartialTrace() throws {
        try #require(RunJobTests.hasMPI, "mpirun is not installed")
        let ws = try Workspace()
        defer { ws.remove() }
        try ws.write(ws.goodJobs(3000))
        let trace = ws.root.appendingPathComponent("trace.json")
        let job = try Job(np: 4, arguments: ["--model", model("pg1-mqa").path, "--manifest", ws.manifest.path,
                                             "--output-dir", ws.output.path, "--max-tokens", "8", "--stages", "2",
                                             "--peer-timeout", "5", "--trace", trace.path])
        let ranks = job.ranksAtWork(count: 4, runJSON: ws.output.appendingPathComponent("run.json"))
        try #require(ranks.count == 4, "mpirun started \(ranks.count) ranks")
        let victim = ranks.sorted()[2]
        _ = kill(victim, SIGSTOP)
        let outcome = job.wait(timeout: 60)
        _ = kill(victim, SIGKILL)
        #expect(outcome.status != 0)
        let named = try checkFormat(trace)
        #expect(named == Set(0..<4))
        let tracks = try TraceFile.read(trace)
        let text = try String(contentsOf: trace, encoding: .utf8)
        #expect(text.contains("\"outcome\":\"failed\""))
        #expect(tracks.first { $0.rank == 0 }?.spans.contains { $0.name == "idle" } == true)
        #expect(tracks.first { $0.rank == 0 }?.complete == true)
        #expect(tracks.contains { !$0.complete }, "the stopped rank's track is marked incomplete")
        for track in tracks { #expect(TraceFile.nestingProblems(track).isEmpty) }
    }
}
