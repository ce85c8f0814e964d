// Rank 0: streams the manifest, skips what a previous run finished, tokenizes prompts, hands jobs to
// replicas by load, turns results into records in shards, shows progress, and writes run.json and
// stats.json. It does no heavy math, so it always answers.
import Foundation
import Logging
import PaliBatch
import PaliGeneration
import PaliJSON
import PaliPipeline

final class Coordinator {
    let context: RankContext
    let bundle: ModelBundle
    let stagePlan: StagePlan
    let config: RunConfiguration
    let layout: Layout
    let tasks: TaskFormatter

    private struct Dispatched {
        /// Without its image bytes.
        var entry: ManifestEntry
        /// Which of the entry's prompts the job answers.
        var promptIndex: Int
        var replica: Int
        var visionRank: Int
        var sentAt: Double
    }

    private var dispatched: [Int64: Dispatched] = [:]
    private var replicaLoad: [Int]
    private var visionLoad: [Int: Int] = [:]
    private var nextJobID: Int64 = 0
    private var counts = (ok: 0, error: 0, skipped: 0)
    private var generatedTokens = 0
    private var promptLengths: [Int64: Int] = [:]
    private var stats = RunStats()
    /// Whether the record about to be written was already counted in `stats` (with its token counts).
    private var counted = false
    private var workerStats: [Int: [String: Double]] = [:]
    /// The output directory's lock, held from `prepare` to the end of `run` (every return and throw).
    private var outputLock: OutputLock?
    /// Tar shards (`--shards`): the input shard being read, those read whole whose records are not all
    /// written yet, and the jobs of each still out. A shard read whole with none out is published.
    private var readingShard: String?
    private var shardsRead: Set<String> = []
    private var outstanding: [String: Int] = [:]
    /// The workers' timelines (`--trace`), written with rank 0's at every end of the run.
    private let traces: TraceCollector?
    /// Temporary shards of an earlier run that the resume scan deleted (named in stats.json).
    private var removedTempShards: [String] = []

    init(context: RankContext, bundle: ModelBundle, stagePlan: StagePlan, config: RunConfiguration) throws {
        self.context = context
        self.bundle = bundle
        self.stagePlan = stagePlan
        self.config = config
        layout = context.layout
        replicaLoad = Array(repeating: 0, count: layout.replicas)
        tasks = try TaskFormatter(bundle: bundle, maskDecoder: config.maskDecoder)
        traces = config.trace.map { TraceCollector(url: $0, layout: context.layout, origin: context.started) }
        // The thread stuck inside Open MPI (a host died mid-send) may be this coordinator's own: then only
        // the communication thread can still say why in stats.json before mpirun kills the job.
        context.onStuckTransport.set { [weak self] error in self?.failedWhileStuck(error) }
    }

    /// Sequences a replica may hold at once: its micro-batch slots, plus a little queue so a freed slot
    /// is refilled at once and vision ranks stay busy.
    private var replicaCapacity: Int {
        let slots = (config.microBatches ?? layout.stages) * config.microBatchSize
        return slots + max(config.microBatchSize, 2 * layout.visionRanks * config.visionBatch)
    }

    /// Runs the job; returns the process exit status.
    func run() throws -> Int32 {
        defer { outputLock?.release() }
        let setup: (total: Int, resume: ResumeState, writer: RecordSink, reader: ManifestReader)
        do {
            setup = try context.span(.setup) { try prepare() }
        } catch {
            context.logger.error("\(error)")
            _ = try shutdownWorkers(code: 2, reason: "the coordinator could not start the job", wait: 5)
            return 2
        }
        let (total, resume, writer, reader) = setup
        if !resume.keptTempFiles.isEmpty {
            context.logger.notice(.init(stringLiteral: "left \(resume.keptTempFiles.count) temporary shard(s) of other processes in \(config.outputDirectory.path) "
                + "(\(resume.keptTempFiles.prefix(4).joined(separator: ", "))): they are another host's or a running "
                + "process's; delete them once no run writes there (their records are not counted as done)"))
        }
        stats = RunStats(skipped: resume.doneIDs.count)
        removedTempShards = resume.removedTempNames
        let remaining = max(0, total - resume.doneIDs.count)
        let progress = ProgressReporter(total: total, alreadyDone: resume.doneIDs.count,
                                        interval: config.progressInterval)
        if !resume.removedTempNames.isEmpty {
            context.logger.notice(.init(stringLiteral: "removed \(resume.removedTempNames.count) temporary shard(s) left by an earlier run "
                + "that ended before completing them (\(resume.removedTempNames.prefix(4).joined(separator: ", "))): "
                + "their records were never complete, so their jobs are done again"))
        }
        if resume.records > 0 {
            context.logger.notice("resuming: \(resume.records) records in \(resume.shards) complete shards are kept; \(remaining) to do")
        }
        var exhausted = false
        var interrupted: Int32 = 0
        let capacity = replicaCapacity

        do {
            while true {
                let signal = StopSignal.pending
                if signal != 0 {
                    interrupted = signal
                    context.logger.notice("\(StopSignal.name(signal)) received: completing the current shard and stopping the workers")
                    break
                }
                // Hand out jobs while some replica has room.
                while !exhausted, let replica = leastLoadedReplica(below: capacity) {
                    guard let entry = try reader.next() else {
                        exhausted = true
                        try shardRead(writer)
                        break
                    }
                    if entry.shard != readingShard { try shardRead(writer); readingShard = entry.shard }
                    let todo = entry.prompts.indices.filter { !resume.doneIDs.contains(entry.key($0)) }
                    counts.skipped += entry.prompts.count - todo.count
                    if todo.isEmpty { continue }
                    for record in try dispatch(entry, prompts: todo, to: replica) {
                        try write(record, writer, shard: entry.shard)
                    }
                }
                if exhausted && dispatched.isEmpty { break }
                if let (source, message) = try context.receive(timeout: 0.05) {
                    switch message.kind {
                    case .result:
                        let result = try ResultMessage(message)
                        let (made, shard) = try record(for: result)
                        try write(made, writer, shard: shard)
                    case .heartbeat:
                        break
                    case .stats:
                        let stats = try StatsMessage(message)
                        workerStats[source] = stats.values
                    case .trace:
                        try traces?.receive(message, from: source)
                    case .failure:
                        // A worker lost a peer or failed: the job is lost; say why in stats.json first.
                        let report = try FailureMessage(message)
                        throw RunError.workerFailed(worker: context.describe(source), reason: report.reason)
                    default:
                        throw unexpected(message, from: source, at: context)
                    }
                }
                progress.update(done: counts.ok + counts.error, errors: counts.error, generatedTokens: generatedTokens)
            }
            try writer.finish()
        } catch {
            // The job is lost (a silent or dead rank, an unexpected message, an output error): keep what
            // is whole, say so in stats.json, and let the caller abort every rank.
            let error = context.named(error)
            failed(error, writer: writer)
            throw error
        }
        progress.update(done: counts.ok + counts.error, errors: counts.error, generatedTokens: generatedTokens)
        progress.finish()
        if interrupted != 0 {
            let name = StopSignal.name(interrupted)
            context.logger.notice(.init(stringLiteral: "\(name): stopped with \(dispatched.count) job(s) unfinished; every complete shard is on disk "
                + "(\(writer.shardsCompleted.count) written by this run). Rerun the same command to resume."))
            let wait = Self.stopWait(signal: interrupted)
            let (_, lost) = try stopping { try shutdownWorkers(code: 1, reason: "\(name) received", wait: wait) }
            if lost.isEmpty {
                try writeStats(outcome: "interrupted", extra: [("signal", .string(name))])
                writeTrace(outcome: "interrupted")
            } else {
                // A worker that neither answers the stop nor has sent a heartbeat lately is lost (its host,
                // or the link to it), and its loss is the likely reason for the signal: mpirun ends the job
                // with SIGTERM when it loses a host's daemon.
                let error = Self.unansweredStop(signal: name, ranks: lost.map(context.describe), wait: wait)
                context.logger.error("\(error)")
                try writeStats(outcome: "failed", extra: [("signal", .string(name)), ("error", .string(error)),
                                                          ("lost_ranks", .array(lost.map { .int($0) }))])
                writeTrace(outcome: "failed")
            }
            return 128 + interrupted
        }
        _ = try stopping { try shutdownWorkers(code: 0, reason: "done", wait: 30) }
        try writeStats(outcome: "complete")
        writeTrace(outcome: "complete")
        context.logger.notice(.init(stringLiteral: "done: \(counts.ok) ok, \(counts.error) errors, \(counts.skipped) already done; "
            + "\(writer.shardsCompleted.count) shard(s) written to \(config.outputDirectory.path)"))
        return 0
    }

    /// After a fatal error in the main loop: completes the shard being filled (unless writing it was what
    /// failed: the writer then refuses) and writes stats.json with outcome "failed". Best effort: the
    /// job is aborted next whatever happens here.
    private func failed(_ error: Error, writer: RecordSink) {
        defer { writeTrace(outcome: "failed") }
        // With the folder gone there is nothing to keep or to write to; the abort's message says so.
        if case OutputError.directoryGone = error { return }
        var extra: [(String, JSONValue)] = [("error", .string("\(error)"))]
        if StopSignal.pending != 0 { extra.append(("signal", .string(StopSignal.name(StopSignal.pending)))) }
        do {
            try writer.finish()
        } catch let finishError {
            let left = Self.temporaryShards(in: config.outputDirectory)
            context.logger.notice(.init(stringLiteral: "the shard being written is not kept (\(finishError)); "
                + (left.isEmpty ? "" : "left \(left.joined(separator: ", ")) in \(config.outputDirectory.path); ")
                + "its jobs are redone on resume"))
            if !left.isEmpty { extra.append(("temporary_shards", .array(left.map { .string($0) }))) }
        }
        do {
            try writeStats(outcome: "failed", extra: extra)
        } catch let statsError {
            context.logger.notice("cannot write stats.json: \(statsError)")
        }
    }

    /// Writes the trace file (`--trace`) with what every rank sent so far; a failure to write it is
    /// reported, not fatal (the records and stats.json are what the run is for).
    private func writeTrace(outcome: String) {
        guard let traces, let own = context.trace else { return }
        do {
            let start = MonotonicClock.now()
            let events = try traces.write(own: own, outcome: outcome)
            let writing = MonotonicClock.now() - start
            let workers = workerStats.values.compactMap { $0["trace_seconds"] }
            context.logger.notice(.init(stringLiteral: "timeline written to \(traces.url.path): \(events) events; gathering took "
                + String(format: "%.3f s on rank 0 (receiving %.3f s, writing %.3f s), at most %.3f s on a worker",
                         traces.receiveSeconds + writing, traces.receiveSeconds, writing, workers.max() ?? 0)
                + " (open it in ui.perfetto.dev, or `paligemma report --trace`)"))
        } catch {
            context.logger.error("cannot write the trace \(traces.url.path): \(error)")
        }
    }

    // MARK: Setup

    /// Checks the image root, takes the output directory's lock (`OutputLock`: a second run on a folder in
    /// use is refused here, before it reads or deletes anything there), checks the manifest, scans what
    /// earlier runs finished and writes run.json. On failure the lock is released, and an output
    /// directory this call created is removed again if it is still empty.
    private func prepare() throws -> (Int, ResumeState, RecordSink, ManifestReader) {
        if let root = config.manifestOptions.imageRoot { try Self.checkImageRoot(root) }
        let output = config.outputDirectory
        let existed = DurableFile.exists(output)
        do {
            try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        } catch {
            throw RunError.setup("cannot create the output directory \(output.path): \(error.localizedDescription)")
        }
        do {
            let lock = try OutputLock.acquire(directory: output)
            outputLock = lock
            if let note = lock.note { context.logger.notice("\(note)") }
            return try prepareLocked()
        } catch {
            outputLock?.release()
            outputLock = nil
            if !existed { rmdir(output.path) }   // only when empty
            throw error
        }
    }

    /// `--image-root` must be an existing folder: otherwise every job would become an error record (which
    /// a resume skips).
    static func checkImageRoot(_ root: URL) throws {
        var info = stat()
        guard stat(root.path, &info) == 0 else {
            throw RunError.setup("--image-root \(root.path): \(String(cString: strerror(errno))); every image "
                                 + "must lie under that folder, so nothing would run: give an existing folder")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw RunError.setup("--image-root \(root.path) is not a directory: give the folder the images must lie in")
        }
    }

    private func prepareLocked() throws -> (Int, ResumeState, RecordSink, ManifestReader) {
        let total = try ManifestReader.validate(config.manifest, options: config.manifestOptions)
        let named: Bool
        if case .shards = config.manifest { named = true } else { named = false }
        let resume = try ResumeState.scan(config.outputDirectory, named: named)
        try RunRecordFiles.checkAndWriteRunInfo(config: config, bundle: ModelBundleSummary(imageSize: bundle.hyper.vision.imageSize),
                                                layout: layout, stagePlan: stagePlan)
        let writer: RecordSink = named
            ? try NamedShardWriter(directory: config.outputDirectory)
            : try ShardWriter(directory: config.outputDirectory, shardSize: config.shardSize,
                              firstIndex: resume.nextShardIndex)
        let reader = try ManifestReader(config.manifest, options: config.manifestOptions)
        return (total, resume, writer, reader)
    }

    // MARK: Jobs

    private func leastLoadedReplica(below capacity: Int) -> Int? {
        var best: Int?
        for r in 0..<layout.replicas where replicaLoad[r] < capacity {
            if best == nil || replicaLoad[r] < replicaLoad[best!] { best = r }
        }
        return best
    }

    /// Sends `entry`'s image with its prompts `prompts` (indices) to a vision rank of `replica` as one job
    /// (the image is encoded once); returns the error records of the prompts that cannot run.
    private func dispatch(_ entry: ManifestEntry, prompts: [Int], to replica: Int) throws -> [OutputRecord] {
        func failures(_ kind: String, _ message: String) -> [OutputRecord] {
            prompts.map { OutputRecord.failure(entry, kind: kind, message: message, promptIndex: $0) }
        }
        if let problem = entry.problem { return failures(problem.kind, problem.message) }
        if let problem = entry.pathError { return failures(RecordErrorKind.imagePathOutsideRoot, problem) }
        guard let path = entry.imagePath ?? entry.imageData.map({ _ in (entry.shard.map { $0 + "/" } ?? "") + entry.image })
        else {
            return failures(RecordErrorKind.missingImage, "no image path for \(entry.id)")
        }
        var records: [OutputRecord] = []
        var jobs: [(index: Int, job: JobPrompt)] = []
        for index in prompts {
            let ids = bundle.promptIDs(entry.prompts[index])
            do {
                try bundle.prompt.validate(promptLength: ids.count, maxNewTokens: config.maxNewTokens)
            } catch {
                records.append(.failure(entry, kind: RecordErrorKind.promptTooLong, message: "\(error)", promptIndex: index))
                continue
            }
            var parameters = JobParameters(maxNewTokens: config.maxNewTokens, sampling: config.sampling, beams: config.beams)
            parameters.seed = JobParameters.seed(base: config.sampling.seed, id: entry.key(index))
            jobs.append((index, JobPrompt(jobID: nextJobID, promptIDs: ids.map(Int32.init), parameters: parameters)))
            promptLengths[nextJobID] = ids.count
            nextJobID += 1
        }
        guard let first = jobs.first?.job else { return records }
        let ranks = layout.visionRanks(ofReplica: replica)
        let visionRank = ranks.min { visionLoad[$0, default: 0] < visionLoad[$1, default: 0] }!
        try context.transport.send(JobMessage(jobID: first.jobID, imagePath: path, promptIDs: first.promptIDs,
                                              parameters: first.parameters, imageData: entry.imageData.map { Data($0) },
                                              morePrompts: jobs.count > 1 ? jobs.dropFirst().map(\.job) : nil),
                                   to: visionRank)
        var kept = entry
        kept.imageData = nil
        let now = MonotonicClock.now()
        for (index, job) in jobs {
            dispatched[job.jobID] = Dispatched(entry: kept, promptIndex: index, replica: replica, visionRank: visionRank,
                                               sentAt: now)
        }
        replicaLoad[replica] += jobs.count
        visionLoad[visionRank, default: 0] += jobs.count
        if let shard = entry.shard { outstanding[shard, default: 0] += jobs.count }
        return records
    }

    /// The input shard being read is read whole: publish its output shard once none of its jobs is out.
    private func shardRead(_ writer: RecordSink) throws {
        guard let shard = readingShard else { return }
        readingShard = nil
        shardsRead.insert(shard)
        try completeIfDone(shard, writer)
    }

    private func completeIfDone(_ shard: String, _ writer: RecordSink) throws {
        guard shardsRead.contains(shard), outstanding[shard, default: 0] == 0 else { return }
        shardsRead.remove(shard)
        outstanding[shard] = nil
        try writer.complete(shard: shard)
    }

    /// The record of a finished job, and the input shard its entry came from.
    private func record(for result: ResultMessage) throws -> (OutputRecord, String?) {
        let promptLength = promptLengths.removeValue(forKey: result.jobID) ?? 0
        guard let job = dispatched.removeValue(forKey: result.jobID) else {
            throw RunError.internalMessage("result for job \(result.jobID), which is not outstanding")
        }
        replicaLoad[job.replica] -= 1
        visionLoad[job.visionRank, default: 1] -= 1
        let measured = result.measurements
        let timings = [("vision_s", measured.visionSeconds), ("prefill_s", measured.prefillSeconds),
                       ("decode_s", measured.decodeSeconds), ("total_s", MonotonicClock.now() - job.sentAt)]
            .compactMap { key, seconds in seconds.map { (key, $0) } }
        if let shard = job.entry.shard { outstanding[shard, default: 1] -= 1 }
        if let failure = result.failure {
            return (.failure(job.entry, kind: failure.kind, message: failure.message, timings: timings,
                             promptIndex: job.promptIndex), job.entry.shard)
        }
        let tokens = result.tokenIDs.map(Int.init)
        generatedTokens += tokens.count
        stats.record(.ok, prefillTokens: promptLength, generatedTokens: tokens.count)
        counted = true
        let text = bundle.text(tokens)
        var record = OutputRecord(id: job.entry.id, image: job.entry.image, prompt: job.entry.prompts[job.promptIndex],
                                  status: .ok, text: text, tokens: tokens, logprob: result.logprob,
                                  tokenLogprobs: config.tokenLogprobs ? result.tokenLogprobs : nil,
                                  taskFields: tasks.fields(text: text, imageWidth: measured.imageWidth,
                                                           imageHeight: measured.imageHeight),
                                  timings: timings, extra: job.entry.extra)
        if job.entry.prompts.count > 1 { record.promptIndex = job.promptIndex }
        return (record, job.entry.shard)
    }

    /// Writes a record of an entry of input shard `shard` (nil: a manifest's), publishing that shard's
    /// output when this was its last record out.
    private func write(_ record: OutputRecord, _ writer: RecordSink, shard: String? = nil) throws {
        if record.status == .ok { counts.ok += 1 } else { counts.error += 1 }
        if !counted { stats.record(record.status) }
        counted = false
        try writer.append(record, shard: shard)
        if let shard { try completeIfDone(shard, writer) }
    }

    // MARK: End

    /// Runs the stop exchange with the workers (`work`); when it fails (MPI stuck, a peer gone), writes
    /// stats.json ("failed", the error) before rethrowing, since the shards are already complete.
    private func stopping<T>(_ work: () throws -> T) throws -> T {
        do {
            return try work()
        } catch {
            let error = context.named(error)
            var extra: [(String, JSONValue)] = [("error", .string("\(error)"))]
            if StopSignal.pending != 0 { extra.append(("signal", .string(StopSignal.name(StopSignal.pending)))) }
            try? writeStats(outcome: "failed", extra: extra)
            writeTrace(outcome: "failed")
            throw error
        }
    }

    /// Seconds the coordinator waits for the workers' answers after stop signal `signal`: 2 after SIGTERM,
    /// which its senders follow with SIGKILL (mpirun with Cluster/openmpi.conf: 3 s later; Slurm: after
    /// KillWait), else 30: a vision rank in the middle of a batch completes it and sends its embeddings
    /// before it answers (a batch of 8 images takes ~8 s at PaliGemma-3B size on 2 cores). Ranks that
    /// answer end the wait at once; only a lost rank makes it last.
    static func stopWait(signal: Int32) -> Double { signal == SIGTERM ? 2 : 30 }

    /// The error of a stop (`signal`) that some workers (`ranks`, described) did not answer in `wait` s.
    static func unansweredStop(signal: String, ranks: [String], wait: Double) -> String {
        "\(signal) received, and \(ranks.joined(separator: ", ")) did not answer the stop within \(Int(wait)) s: "
            + "lost (its host is down or frozen, or the link to it is cut; mpirun ends a job with SIGTERM when it loses "
            + "a host's daemon). Every complete shard is kept; check that host and rerun the same command to resume."
    }

    /// The temporary shards (".NAME.jsonl.PID@HOST.tmp") in `directory`, by name.
    static func temporaryShards(in directory: URL) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasPrefix(".") && $0.hasSuffix(".tmp") && $0.contains(".jsonl") }.sorted()
    }

    /// Tells every worker to stop and collects their final stats (waiting up to `wait` seconds), in two
    /// phases. A worker that stops still has sends under way (a vision rank that was in the middle of a
    /// batch sends its embeddings after the stop), and a large send completes only when its receiver
    /// takes it: a receiver that went on to MPI_Finalize would leave the sender waiting until its flush
    /// timed out and aborted the job. So each worker completes its own sends while it keeps receiving,
    /// reports that with a `ShutdownMessage` of its own (`RankContext.finishShutdown`) and keeps receiving
    /// until every worker has done so: then this second `ShutdownMessage` releases them all.
    /// Returns the workers that did not answer in that time (no final stats, or their sends not
    /// complete), and those of them that are lost: nothing heard from them (not even a heartbeat, which
    /// a busy rank still sends) for two heartbeat intervals.
    private func shutdownWorkers(code: Int64, reason: String, wait: Double) throws -> (unanswered: [Int], lost: [Int]) {
        let workers = Array(1..<layout.worldSize)
        for rank in workers { try context.transport.send(ShutdownMessage(code: code, reason: reason), to: rank) }
        var pendingStats = Set(workers), pendingSends = Set(workers)
        let started = MonotonicClock.now(), deadline = started + wait
        while !(pendingStats.isEmpty && pendingSends.isEmpty), MonotonicClock.now() < deadline {
            guard let (source, message) = try context.transport.receive(timeout: 0.05) else { continue }
            context.forget(source)
            if message.kind == .stats, let stats = try? StatsMessage(message), stats.isFinal {
                workerStats[source] = stats.values
                pendingStats.remove(source)
            } else if message.kind == .shutdown {
                pendingSends.remove(source)
            } else if message.kind == .trace {
                try? traces?.receive(message, from: source)
            }
        }
        if !pendingSends.isEmpty {
            context.logger.warning(.init(stringLiteral: "rank(s) \(pendingSends.sorted().map(String.init).joined(separator: ", ")) "
                + "did not complete their sends within \(Int(wait)) s of the stop"))
        }
        // A rank heard from during the wait is forgotten (no longer watched): it is alive.
        let now = MonotonicClock.now()
        let pending = pendingStats.union(pendingSends)
        let lost = pending.filter { rank in
            context.monitor.lastHeard(from: rank).map { now - $0 > 2 * context.heartbeatInterval } ?? false
        }
        // The second phase: release every worker that is still there (a lost one would not take it).
        for rank in workers where !lost.contains(rank) {
            try context.transport.send(ShutdownMessage(code: code, reason: "released"), to: rank)
        }
        for rank in workers { context.forget(rank) }
        context.trace?.record(.shutdown, from: started, to: MonotonicClock.now())
        return (pending.sorted(), lost.sorted())
    }

    /// stats.json with outcome "failed" when the main thread is stuck inside an MPI call (called from the
    /// communication thread, which found the transport held for over `stuckCallLimit`). The main thread is
    /// blocked in Open MPI meanwhile, so it does not touch the counts; the shard being written is left as
    /// a temporary file (redone on resume). Should the main thread come back, its own write replaces this one.
    private func failedWhileStuck(_ error: Error) {
        let error = context.named(error)
        var extra: [(String, JSONValue)] = [("error", .string("\(error)"))]
        let left = Self.temporaryShards(in: config.outputDirectory)
        if !left.isEmpty { extra.append(("temporary_shards", .array(left.map { .string($0) }))) }
        do {
            try writeStats(outcome: "failed", extra: extra)
        } catch let statsError {
            context.logger.notice("cannot write stats.json: \(statsError)")
        }
    }

    private let statsLock = NSLock()

    /// Writes stats.json: `outcome` is "complete", "interrupted" (with `signal`) or "failed" (with
    /// `error`); `extra` fields follow `outcome`. One writer at a time (see `failedWhileStuck`).
    private func writeStats(outcome: String, extra: [(String, JSONValue)] = []) throws {
        statsLock.lock()
        defer { statsLock.unlock() }
        var roles: [String: RoleStats] = [:]
        for rank in 1..<layout.worldSize {
            let values = workerStats[rank] ?? [:]
            roles[String(format: "rank %03d: %@", rank, "\(layout.role(of: rank))")] = RoleStats(
                busy: values["busy_seconds"] ?? 0, idle: values["idle_seconds"] ?? 0,
                loadSeconds: values["load_seconds"], weightBytes: values["weight_bytes"].map { Int($0) },
                peakRSSBytes: values["peak_rss_bytes"].map { Int($0) }, visionImages: values["images"].map { Int($0) })
        }
        stats.setRoles(roles)
        var details = extra
        if !removedTempShards.isEmpty {
            details.append(("removed_temporary_shards", .array(removedTempShards.map { .string($0) })))
        }
        stats.finish(outcome: outcome, details: details)
        try stats.write(to: config.outputDirectory)
    }
}
