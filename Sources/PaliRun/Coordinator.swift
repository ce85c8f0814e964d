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
        var entry: ManifestEntry
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

    init(context: RankContext, bundle: ModelBundle, stagePlan: StagePlan, config: RunConfiguration) throws {
        self.context = context
        self.bundle = bundle
        self.stagePlan = stagePlan
        self.config = config
        layout = context.layout
        replicaLoad = Array(repeating: 0, count: layout.replicas)
        tasks = try TaskFormatter(bundle: bundle, maskDecoder: config.maskDecoder)
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
        let setup: (total: Int, resume: ResumeState, writer: ShardWriter, reader: ManifestReader)
        do {
            setup = try prepare()
        } catch {
            context.logger.error("\(error)")
            try shutdownWorkers(code: 2, reason: "the coordinator could not start the job", wait: 5)
            return 2
        }
        let (total, resume, writer, reader) = setup
        if !resume.keptTempFiles.isEmpty {
            context.logger.notice(.init(stringLiteral: "left \(resume.keptTempFiles.count) temporary shard(s) of other processes in \(config.outputDirectory.path) "
                + "(\(resume.keptTempFiles.prefix(4).joined(separator: ", "))): they are another host's or a running "
                + "process's; delete them once no run writes there (their records are not counted as done)"))
        }
        stats = RunStats(skipped: resume.doneIDs.count)
        let remaining = max(0, total - resume.doneIDs.count)
        let progress = ProgressReporter(total: total, alreadyDone: resume.doneIDs.count,
                                        interval: config.progressInterval)
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
                    guard let entry = try reader.next() else { exhausted = true; break }
                    if resume.doneIDs.contains(entry.id) { counts.skipped += 1; continue }
                    if let record = try dispatch(entry, to: replica) {
                        try write(record, writer)
                    }
                }
                if exhausted && dispatched.isEmpty { break }
                if let (source, message) = try context.receive(timeout: 0.05) {
                    switch message.kind {
                    case .result:
                        let result = try ResultMessage(message)
                        try write(try record(for: result), writer)
                    case .heartbeat:
                        break
                    case .stats:
                        let stats = try StatsMessage(message)
                        workerStats[source] = stats.values
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
            failed(error, writer: writer)
            throw error
        }
        progress.update(done: counts.ok + counts.error, errors: counts.error, generatedTokens: generatedTokens)
        progress.finish()
        if interrupted != 0 {
            let name = StopSignal.name(interrupted)
            context.logger.notice(.init(stringLiteral: "\(name): stopped with \(dispatched.count) job(s) unfinished; every complete shard is on disk "
                + "(\(writer.shardsCompleted.count) written by this run). Rerun the same command to resume."))
            try shutdownWorkers(code: 1, reason: "\(name) received", wait: 5)
            try writeStats(outcome: "interrupted", extra: [("signal", .string(name))])
            return 128 + interrupted
        }
        try shutdownWorkers(code: 0, reason: "done", wait: 30)
        try writeStats(outcome: "complete")
        context.logger.notice(.init(stringLiteral: "done: \(counts.ok) ok, \(counts.error) errors, \(counts.skipped) already done; "
            + "\(writer.shardsCompleted.count) shard(s) written to \(config.outputDirectory.path)"))
        return 0
    }

    /// After a fatal error in the main loop: completes the shard being filled (unless writing it was what
    /// failed: the writer then refuses) and writes stats.json with outcome "failed". Best effort: the
    /// job is aborted next whatever happens here.
    private func failed(_ error: Error, writer: ShardWriter) {
        // With the folder gone there is nothing to keep or to write to; the abort's message says so.
        if case OutputError.directoryGone = error { return }
        do {
            try writer.finish()
        } catch let finishError {
            context.logger.notice("the shard being written is not kept (\(finishError)); its jobs are redone on resume")
        }
        do {
            try writeStats(outcome: "failed", extra: [("error", .string("\(error)"))])
        } catch let statsError {
            context.logger.notice("cannot write stats.json: \(statsError)")
        }
    }

    // MARK: Setup

    /// Checks the image root, takes the output directory's lock (`OutputLock`: a second run on a folder in
    /// use is refused here, before it reads or deletes anything there), checks the manifest, scans what
    /// earlier runs finished and writes run.json. On failure the lock is released, and an output
    /// directory this call created is removed again if it is still empty.
    private func prepare() throws -> (Int, ResumeState, ShardWriter, ManifestReader) {
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

    private func prepareLocked() throws -> (Int, ResumeState, ShardWriter, ManifestReader) {
        let total = try ManifestReader.validate(config.manifest, options: config.manifestOptions)
        let resume = try ResumeState.scan(config.outputDirectory)
        try RunRecordFiles.checkAndWriteRunInfo(config: config, bundle: ModelBundleSummary(imageSize: bundle.hyper.vision.imageSize),
                                                layout: layout, stagePlan: stagePlan)
        let writer = try ShardWriter(directory: config.outputDirectory, shardSize: config.shardSize,
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

    /// Sends `entry` to a vision rank of `replica`, or returns its error record when it cannot run.
    private func dispatch(_ entry: ManifestEntry, to replica: Int) throws -> OutputRecord? {
        if let problem = entry.pathError {
            return .failure(entry, kind: RecordErrorKind.imagePathOutsideRoot, message: problem)
        }
        guard let path = entry.imagePath else {
            return .failure(entry, kind: RecordErrorKind.missingImage, message: "no image path for \(entry.id)")
        }
        let ids = bundle.promptIDs(entry.prompt)
        do {
            try bundle.prompt.validate(promptLength: ids.count, maxNewTokens: config.maxNewTokens)
        } catch {
            return .failure(entry, kind: RecordErrorKind.promptTooLong, message: "\(error)")
        }
        var parameters = JobParameters(maxNewTokens: config.maxNewTokens, sampling: config.sampling, beams: config.beams)
        parameters.seed = JobParameters.seed(base: config.sampling.seed, id: entry.id)
        let ranks = layout.visionRanks(ofReplica: replica)
        let visionRank = ranks.min { visionLoad[$0, default: 0] < visionLoad[$1, default: 0] }!
        let id = nextJobID
        nextJobID += 1
        try context.transport.send(JobMessage(jobID: id, imagePath: path, promptIDs: ids.map(Int32.init),
                                              parameters: parameters), to: visionRank)
        dispatched[id] = Dispatched(entry: entry, replica: replica, visionRank: visionRank, sentAt: MonotonicClock.now())
        replicaLoad[replica] += 1
        visionLoad[visionRank, default: 0] += 1
        promptLengths[id] = ids.count
        return nil
    }

    private func record(for result: ResultMessage) throws -> OutputRecord {
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
        if let failure = result.failure {
            return .failure(job.entry, kind: failure.kind, message: failure.message, timings: timings)
        }
        let tokens = result.tokenIDs.map(Int.init)
        generatedTokens += tokens.count
        stats.record(.ok, prefillTokens: promptLength, generatedTokens: tokens.count)
        counted = true
        let text = bundle.text(tokens)
        return OutputRecord(id: job.entry.id, image: job.entry.image, prompt: job.entry.prompt, status: .ok,
                            text: text, tokens: tokens, logprob: result.logprob,
                            tokenLogprobs: config.tokenLogprobs ? result.tokenLogprobs : nil,
                            taskFields: tasks.fields(text: text, imageWidth: measured.imageWidth,
                                                     imageHeight: measured.imageHeight),
                            timings: timings, extra: job.entry.extra)
    }

    private func write(_ record: OutputRecord, _ writer: ShardWriter) throws {
        if record.status == .ok { counts.ok += 1 } else { counts.error += 1 }
        if !counted { stats.record(record.status) }
        counted = false
        try writer.append(record)
    }

    // MARK: End

    /// Tells every worker to stop and collects their final stats (waiting up to `wait` seconds).
    private func shutdownWorkers(code: Int64, reason: String, wait: Double) throws {
        let workers = Array(1..<layout.worldSize)
        for rank in workers { try context.transport.send(ShutdownMessage(code: code, reason: reason), to: rank) }
        var pending = Set(workers)
        let deadline = MonotonicClock.now() + wait
        while !pending.isEmpty, MonotonicClock.now() < deadline {
            guard let (source, message) = try context.transport.receive(timeout: 0.05) else { continue }
            context.forget(source)
            if message.kind == .stats, let stats = try? StatsMessage(message), stats.isFinal {
                workerStats[source] = stats.values
                pending.remove(source)
            }
        }
        for rank in workers { context.forget(rank) }
    }

    /// Writes stats.json: `outcome` is "complete", "interrupted" (with `signal`) or "failed" (with
    /// `error`); `extra` fields follow `outcome`.
    private func writeStats(outcome: String, extra: [(String, JSONValue)] = []) throws {
        var roles: [String: RoleStats] = [:]
        for rank in 1..<layout.worldSize {
            let values = workerStats[rank] ?? [:]
            roles[String(format: "rank %03d: %@", rank, "\(layout.role(of: rank))")] = RoleStats(
                busy: values["busy_seconds"] ?? 0, idle: values["idle_seconds"] ?? 0,
                loadSeconds: values["load_seconds"], weightBytes: values["weight_bytes"].map { Int($0) },
                peakRSSBytes: values["peak_rss_bytes"].map { Int($0) })
        }
        stats.setRoles(roles)
        stats.finish(outcome: outcome, details: extra)
        try stats.write(to: config.outputDirectory)
    }
}
