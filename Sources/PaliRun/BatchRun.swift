// `paligemma run`: the entry point every rank runs. Under mpirun with more than one rank each process
// takes the role its rank has in the layout (MPITransport); otherwise one process plays every role on
// its own thread, connected by LocalTransport, with the same code.
import Foundation
import PaliBatch
import PaliGeneration
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
    public var heartbeatInterval = 2.0
    public var maskDecoder: URL?
    /// Resume even when result-affecting settings differ from the run.json already in the directory.
    public var allowSettingsChange = false
    /// Progress log period when stderr is not a terminal.
    public var progressInterval = 30.0
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
    /// The number of ranks mpirun started (1 without mpirun).
    static var launchedWorldSize: Int {
        let environment = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"] {
            if let value = environment[key], let size = Int(value) { return size }
        }
        return 1
    }

    /// Runs this process's part of the job; returns the exit status.
    public static func main(_ config: RunConfiguration) -> Int32 {
        if launchedWorldSize > 1 { return distributed(config) }
        return inProcess(config)
    }

    private static func fail(_ message: String) -> Int32 {
        FileHandle.standardError.write(Data("paligemma run: \(message)\n".utf8))
        return 2
    }

    /// Layout and stage plan, computed the same way on every rank (so every rank reaches the same verdict).
    static func plan(_ config: RunConfiguration, worldSize: Int) throws -> (Layout, StagePlan, ModelBundle) {
        let layout = try Layout.plan(worldSize: worldSize, visionRanks: config.visionRanks, stages: config.stages)
        let bundle = try ModelBundle(directory: config.modelDirectory)
        let d = bundle.hyper.decoder
        let stagePlan: StagePlan
        if let text = config.stageLayers {
            stagePlan = try StagePlan.parse(text, layers: d.layers, stages: layout.stages)
        } else {
            let head = StagePlan.lmHeadCost(width: d.width, vocabSize: d.vocabSize, mlpWidth: d.mlpWidth,
                                            queryWidth: d.queryWidth, kvWidth: d.kvWidth)
            stagePlan = try StagePlan.split(layers: d.layers, stages: layout.stages, headCost: head)
        }
        return (layout, stagePlan, bundle)
    }

    // MARK: mpirun, one role per process

    private static func distributed(_ config: RunConfiguration) -> Int32 {
        let transport: MPITransport
        do {
            transport = try MPITransport(threadSupport: .serialized)
        } catch {
            return fail("cannot start MPI: \(error)")
        }
        BLAS.threads = config.threads ?? 1
        let planned: (Layout, StagePlan, ModelBundle)
        do {
            planned = try plan(config, worldSize: transport.size)
        } catch {
            if transport.rank == 0 { _ = fail("\(error)") }
            try? transport.finalize()
            return 2
        }
        let (layout, stagePlan, bundle) = planned
        let status = runRole(transport: transport, layout: layout, stagePlan: stagePlan, bundle: bundle, config: config)
        do {
            try transport.finalize()
        } catch {
            FileHandle.standardError.write(Data("paligemma run: rank \(transport.rank): \(error)\n".utf8))
        }
        return status
    }

    // MARK: one process, every role on its own thread

    private static func inProcess(_ config: RunConfiguration) -> Int32 {
        BLAS.threads = config.threads ?? ProcessInfo.processInfo.activeProcessorCount
        let planned: (Layout, StagePlan, ModelBundle)
        do {
            planned = try plan(config, worldSize: 1)
        } catch {
            return fail("\(error)")
        }
        let (layout, stagePlan, bundle) = planned
        let group = LocalTransport.group(size: layout.worldSize)
        var threads: [Thread] = []
        for rank in 1..<layout.worldSize {
            let thread = Thread {
                _ = runRole(transport: group[rank], layout: layout, stagePlan: stagePlan, bundle: bundle, config: config)
            }
            thread.stackSize = 16 << 20
            thread.name = "paligemma-rank-\(rank)"
            thread.start()
            threads.append(thread)
        }
        let status = runRole(transport: group[0], layout: layout, stagePlan: stagePlan, bundle: bundle, config: config)
        let deadline = Date().addingTimeInterval(30)
        while threads.contains(where: { !$0.isFinished }) && Date() < deadline { Thread.sleep(forTimeInterval: 0.002) }
        return status
    }

    // MARK: roles

    static func runRole(transport: Transport, layout: Layout, stagePlan: StagePlan, bundle: ModelBundle,
                        config: RunConfiguration) -> Int32 {
        let rank = transport.rank
        let role = layout.role(of: rank)
        let workers = Array(1..<layout.worldSize)
        let context = RankContext(transport: transport, layout: layout,
                                  watching: rank == 0 ? workers : [0],
                                  heartbeatTargets: rank == 0 ? workers : [0],
                                  peerTimeout: config.peerTimeout, heartbeatInterval: config.heartbeatInterval)
        if rank == 0 { StopSignal.install() } else { StopSignal.ignore() }
        context.startBackground()
        defer { context.stopBackground() }
        do {
            switch role {
            case .coordinator:
                let coordinator = try Coordinator(context: context, bundle: bundle, stagePlan: stagePlan, config: config)
                return try coordinator.run()
            case .vision:
                if transport is MPITransport, let t = config.visionThreads { BLAS.threads = t }
                let checkpoint = try Checkpoint(directory: config.modelDirectory)
                let worker = try VisionWorker(context: context, bundle: bundle, checkpoint: checkpoint,
                                              maxPixels: config.maxPixels, visionBatch: config.visionBatch)
                try worker.run()
            case .stage(_, let index):
                let checkpoint = try Checkpoint(directory: config.modelDirectory)
                let worker = try StageWorker(context: context, bundle: bundle, checkpoint: checkpoint,
                                             layers: stagePlan.ranges[index], microBatchSize: config.microBatchSize,
                                             microBatches: config.microBatches ?? layout.stages)
                try worker.run()
            }
            try transport.flush()
            return 0
        } catch {
            transport.abort("\(role): \(error)")
        }
    }
}
