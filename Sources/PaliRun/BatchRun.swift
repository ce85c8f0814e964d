// `paligemma run`: the entry point every rank runs. Started by an MPI launcher (mpirun/mpiexec, srun
// with PMIx or PMI-2: `MPITransport.isLaunchedByMPIRun`), every process initializes MPI and takes the
// world size from MPI_Comm_size; in a world of more than one rank each process takes the role its rank
// has in the layout (MPITransport). Otherwise (no launcher, or a launcher's world of one) one process
// plays every role on its own thread, connected by LocalTransport, with the same code.
import Foundation
import Logging
import PaliBatch
import PaliGeneration
import PaliModels
import PaliPipeline
import PaliTensor
import PaliWeights

/// Everything a batch run needs; every rank parses the same command line into it.
public struct RunConfiguration: Sendable {
    public var modelDirectory: URL
    public var manifest: ManifestSource
    public var manifestOptions: ManifestOptions
    public var manifestDescription: String
    public var outputDirectory: URL
    public var shardSize = 1000
    public var microBatchSize = 8
    /// Micro-batches kept in flight per replica (default: the number of stages, at least 1).
    public var microBatches: Int?
    public var maxNewTokens = 32
    public var sampling = SamplingParameters.greedy
    /// Beam search with this many beams when above 1 (`sampling` is then unused).
    public var beams = 1
    /// Write each token's log-probability in the records (`token_logprobs`).
    public var tokenLogprobs = false
    public var visionRanks: Int?
    public var stages: Int?
    public var stageLayers: String?
    public var visionBatch = 4
    public var maxPixels = 64_000_000
    public var threads: Int?
    /// Threads of vision ranks under mpirun (default: `threads`). A vision rank is idle most of the time
    /// (SigLIP is ~1/10 of a job's FLOPs), so on a shared machine the decoder ranks deserve the cores.
    public var visionThreads: Int?
    public var peerTimeout = 20.0
    /// Precision matrices are kept at (`--weights`).
    public var weights = WeightsMode.auto
    /// How matrices get their kernel (`--gemm`, `--batch-invariant`).
    public var gemm = GEMMPolicy.fixed(.best)
    public var heartbeatInterval = 2.0
    public var maskDecoder: URL?
    /// Resume even when result-affecting settings differ from the run.json already in the directory.
    public var allowSettingsChange = false
    /// Progress log period when stderr is not a terminal.
    public var progressInterval = 30.0
    /// Write the run's timeline here (`--trace`: Chrome/Perfetto JSON, see TraceRecorder); every rank records.
    public var trace: URL?
    /// Settings as given on the command line, for run.json.
    public var commandLine: [String] = []

    public init(modelDirectory: URL, manifest: ManifestSource, manifestOptions: ManifestOptions,
                manifestDescription: String, outputDirectory: URL) {
        self.modelDirectory = modelDirectory
        self.manifest = manifest
        self.manifestOptions = manifestOptions
        self.manifestDescription = manifestDescription
        self.outputDirectory = outputDirectory
    }
}

public enum BatchRun {
    /// Runs this process's part of the job; returns the exit status.
    public static func main(_ config: RunConfiguration) -> Int32 {
        // First of all, before MPI, OpenBLAS's resizing or any thread of ours exists: block the stop
        // signals in this thread (every later thread inherits the mask) and start the thread that
        // waits for them.
        StopSignal.start()
        guard MPITransport.isLaunchedByMPIRun else { return inProcess(config) }
        let expected = MPITransport.launcherWorldSize(), launcherRank = MPITransport.launcherRank()
        let transport: MPITransport
        do {
            transport = try MPITransport(threadSupport: .serialized)
        } catch {
            return fail("started by an MPI launcher\(expected.map { " as one of \($0) processes" } ?? ""), but MPI "
                        + "cannot start: \(error)")
        }
        if transport.size > 1 { return distributed(config, transport: transport) }
        if (expected ?? 1) > 1 || (launcherRank ?? 0) > 0 {
            // Each process would run the whole job alone, many times over into one output directory.
            let said = switch (launcherRank, expected) {
            case let (rank?, size?): "rank \(rank) of \(size)"
            case let (rank?, nil): "rank \(rank)"
            case let (nil, size): "one of \(size ?? 2) processes"
            }
            _ = fail("the launcher started this process as \(said), but MPI initialized a world of 1: the launcher "
                     + "and this Open MPI did not connect (under Slurm use srun --mpi=pmix with an Open MPI built with "
                     + "PMIx support, or mpirun inside the allocation; use this Open MPI's own mpirun, not another "
                     + "MPI's mpiexec)")
            try? transport.finalize()
            return 2
        }
        // `mpirun -np 1`, `srun -n 1`: every role in this process; MPI is initialized and only finalized.
        let status = inProcess(config)
        do {
            try transport.finalize()
        } catch {
            logger.error("\(error)")
        }
        return status
    }

    /// Whether this process is rank 0 by its launcher's variables, or not started by a launcher: the one
    /// that reports errors found before MPI starts (every rank finds them; one says so).
    public static var isRankZeroOrAlone: Bool { (MPITransport.launcherRank() ?? 0) == 0 }

    /// The run's messages before a rank has its role (`RankContext.logger` after).
    static let logger = Logger(label: "paligemma run")

    private static func fail(_ message: String) -> Int32 {
        logger.error("\(message)")
        return 2
    }

    /// Layout and stage plan, computed the same way on every rank (so every rank reaches the same verdict)
    /// from the model's config.json alone (cheap: the tokenizer is read later, `ModelBundle`). The default
    /// stage count is capped at the decoder's layer count (`Layout.plan(maxStages:)`).
    static func plan(_ config: RunConfiguration, worldSize: Int) throws -> (Layout, StagePlan, PaliGemmaHyperparameters) {
        let hyper = PaliGemmaHyperparameters(try ModelBundle.readConfiguration(directory: config.modelDirectory))
        let d = hyper.decoder
        let layout = try Layout.plan(worldSize: worldSize, visionRanks: config.visionRanks, stages: config.stages,
                                     maxStages: d.layers)
        let stagePlan: StagePlan
        if let text = config.stageLayers {
            stagePlan = try StagePlan.parse(text, layers: d.layers, stages: layout.stages)
        } else {
            let head = StagePlan.lmHeadCost(width: d.width, vocabSize: d.vocabSize, mlpWidth: d.mlpWidth,
                                            queryWidth: d.queryWidth, kvWidth: d.kvWidth)
            stagePlan = try StagePlan.split(layers: d.layers, stages: layout.stages, headCost: head)
        }
        return (layout, stagePlan, hyper)
    }

    /// The failure-detection context of `transport`'s rank: it watches `layout.watchedPeers` and sends
    /// heartbeats to `layout.watchers` (see RankContext).
    static func makeContext(_ transport: Transport, layout: Layout, config: RunConfiguration) -> RankContext {
        let context = RankContext(transport: transport, layout: layout, peerTimeout: config.peerTimeout,
                                  heartbeatInterval: config.heartbeatInterval)
        if config.trace != nil { context.trace = TraceRecorder() }
        return context
    }

    // MARK: launched by mpirun/srun, one role per process

    private static func distributed(_ config: RunConfiguration, transport: MPITransport) -> Int32 {
        BLAS.threads = config.threads ?? 1
        let planned: (Layout, StagePlan, PaliGemmaHyperparameters)
        do {
            planned = try plan(config, worldSize: transport.size)
        } catch {
            if transport.rank == 0 { _ = fail("\(error)") }
            try? transport.finalize()
            return 2
        }
        let (layout, stagePlan, hyper) = planned
        // The communication thread (heartbeats to the ranks that watch this one) runs from here to the
        // end, before anything slow: a rank reading the tokenizer or loading weights is alive to its peers.
        let context = makeContext(transport, layout: layout, config: config)
        context.startBackground()
        let bundle: ModelBundle
        do {
            bundle = try ModelBundle(directory: config.modelDirectory)
        } catch {
            if transport.rank == 0 { _ = fail("\(error)") }
            context.stopBackground()
            try? transport.finalize()
            return 2
        }
        if transport.rank == 0 { TestHooks.pause(TestHooks.slowLoad) }
        if transport.rank == 0, config.visionRanks == nil, config.stages == nil, layout.visionRanks > 1 {
            context.logger.notice(.init(stringLiteral: "\(layout): the decoder's \(hyper.decoder.layers) layer(s) allow at most "
                                  + "\(layout.stages) stage(s), so the spare ranks are vision ranks"))
        }
        let status = runRole(context: context, stagePlan: stagePlan, bundle: bundle, config: config)
        do {
            try transport.finalize()
        } catch {
            context.logger.error("rank \(transport.rank): \(error)")
        }
        return status
    }

    // MARK: one process, every role on its own thread

    private static func inProcess(_ config: RunConfiguration) -> Int32 {
        BLAS.threads = config.threads ?? ProcessInfo.processInfo.activeProcessorCount
        let planned: (Layout, StagePlan, PaliGemmaHyperparameters)
        let bundle: ModelBundle
        do {
            planned = try plan(config, worldSize: 1)
            // Read once for every role, before any rank (thread) exists or watches another.
            bundle = try ModelBundle(directory: config.modelDirectory)
        } catch {
            return fail("\(error)")
        }
        let (layout, stagePlan, _) = planned
        TestHooks.pause(TestHooks.slowLoad)   // the coordinator's bundle read (before any rank is watched here)
        let group = LocalTransport.group(size: layout.worldSize)
        // Every rank's communication thread (heartbeats to its watchers) runs before any rank loads weights.
        let contexts = group.map { makeContext($0, layout: layout, config: config) }
        for context in contexts { context.startBackground() }
        var threads: [Thread] = []
        for rank in 1..<layout.worldSize {
            let thread = Thread {
                _ = runRole(context: contexts[rank], stagePlan: stagePlan, bundle: bundle, config: config)
            }
            thread.stackSize = 16 << 20
            thread.name = "paligemma-rank-\(rank)"
            thread.start()
            threads.append(thread)
        }
        let status = runRole(context: contexts[0], stagePlan: stagePlan, bundle: bundle, config: config)
        let deadline = Date().addingTimeInterval(30)
        while threads.contains(where: { !$0.isFinished }) && Date() < deadline { Thread.sleep(forTimeInterval: 0.002) }
        return status
    }

    // MARK: roles

    /// Opens the checkpoint and builds a role's model from it (`make`), with `--weights`, a progress line
    /// when loading is slow, and the load time in the rank's stats. `include` picks the tensors the
    /// role reads (for the progress total only: the role's model reads just those).
    static func loading<W>(_ context: RankContext, _ config: RunConfiguration, include: (String) -> Bool,
                           _ make: (Checkpoint) throws -> W) throws -> W {
        let checkpoint = try Checkpoint(directory: config.modelDirectory)
        checkpoint.weightsMode = config.weights
        checkpoint.gemm = config.gemm
        let progress = LoadProgress(logger: context.logger, subject: "rank \(context.rank) (\(context.role))",
                                    totalBytes: checkpoint.byteCount(where: include))
        checkpoint.progress = { progress.add($0) }
        progress.start()
        let made = try context.span(.load) { try make(checkpoint) }
        context.loadSeconds = progress.finish()
        return made
    }

    /// Runs the role of `context`'s rank, whose communication thread has been started; stops that thread
    /// when the role ends (or aborts the job when it fails).
    static func runRole(context: RankContext, stagePlan: StagePlan, bundle: ModelBundle,
                        config: RunConfiguration) -> Int32 {
        let transport = context.transport, layout = context.layout, role = context.role
        // Stop signals are waited for by StopSignal's thread (started in `main`); only the coordinator
        // acts on them. Worker ranks leave the decision to it: launchers forward a signal to every rank,
        // and a worker that exited on its own would make mpirun kill rank 0 before its shard is written.
        defer { context.stopBackground() }
        do {
            switch role {
            case .coordinator:
                let coordinator = try Coordinator(context: context, bundle: bundle, stagePlan: stagePlan, config: config)
                return try coordinator.run()
            case .vision:
                if transport is MPITransport, let t = config.visionThreads { BLAS.threads = t }
                let worker = try loading(context, config, include: { TensorNames.isVision($0) }) { checkpoint in
                    try VisionWorker(context: context, bundle: bundle, checkpoint: checkpoint,
                                     maxPixels: config.maxPixels, visionBatch: config.visionBatch)
                }
                context.weightBytes = worker.tower.packedBytes + worker.projector.packedBytes
                try TestHooks.failIfAsked(rank: context.rank)
                try worker.run()
            case .stage(_, let index):
                let layers = stagePlan.ranges[index], withEmbedding = index == 0 || index == layout.stages - 1
                let worker = try loading(context, config, include: {
                    TensorNames.decoderLayer(of: $0).map(layers.contains) ?? (withEmbedding && TensorNames.isEmbedding($0))
                }) { checkpoint in
                    try makeStageRole(context: context, bundle: bundle, checkpoint: checkpoint,
                                      layers: layers, microBatchSize: config.microBatchSize,
                                      microBatches: config.microBatches ?? layout.stages)
                }
                context.weightBytes = worker.stage.decoder.packedBytes
                try TestHooks.failIfAsked(rank: context.rank)
                try worker.run()
            }
            try context.finishShutdown(timeout: max(60, context.peerTimeout))
            return 0
        } catch {
            let error = context.named(error)
            context.reportFailure(error, reason: "\(error)")
            transport.abort("\(role): \(error)")
        }
    }
}
