// `paligemma run`: the batch job. Started by an MPI launcher (`mpirun -np N`, `srun --mpi=pmix`) with
// N > 1, rank 0 coordinates and the others form replicas of vision ranks + decoder stages; without a
// launcher, or with N = 1, one process plays every role.
import ArgumentParser
import Foundation
import Logging
import PaliBatch
import PaliGeneration
import PaliRun
import PaliTensor

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a manifest of (image, prompt) jobs into sharded JSONL, resumably; under mpirun, on many ranks.",
        discussion: """
            Input: --manifest FILE (.jsonl lines {"id", "image", "prompt" or "prompts": [...], ...extra fields}, or
            .csv with those columns), or --images DIR with --prompt, or --shards 'data/{00000..00099}.tar' (WebDataset
            tar shards, or a file listing them) with --prompt or --prompt-field. --prompt may be repeated: each
            image is encoded once and answered once per prompt (records then carry prompt_index). Output in
            --output-dir: shard-00000.jsonl, ... (each written whole, then renamed; with --shards, one output
            shard per input shard, 00042.jsonl for 00042.tar), run.json and stats.json. Rerunning the same command resumes: ids in
            complete shards are skipped. SIGTERM/SIGINT/SIGUSR1/SIGHUP/SIGQUIT write what is done and exit
            128 + signal. One run per output folder at a time: a second is refused (run.lock names the holder).

            Layout under mpirun -np N (or srun --mpi=pmix -n N; the size comes from MPI): rank 0 coordinates;
            the other ranks form R replicas of V vision ranks and S decoder stages, N = 1 + R·(V+S). Example:
            mpirun -np 5 paligemma run ... runs two replicas of one vision rank and one decoder rank each.
            --trace FILE writes a timeline of every rank (where the pipeline's bubbles are). See docs/operations.md.
            """)

    @Option(help: "Model directory: config.json, *.safetensors (+ index), tokenizer.model, processor config.")
    var model: String
    @Option(help: "Manifest: .jsonl / .csv with id, image, prompt (relative image paths: against the manifest's folder).")
    var manifest: String?
    @Option(help: "A folder of images (*.jpg, *.jpeg, *.png) to run instead of a manifest; needs --prompt.")
    var images: String?
    @Option(help: ArgumentHelp("WebDataset tar shards: a brace pattern ('data/{00000..01023}.tar'), one .tar/.tar.gz/.tgz, or a text file listing tar paths.", valueName: "pattern"))
    var shards: String?
    @Option(help: "Prompt for jobs without one (and for --images and --shards); repeat it for several prompts per image (one record each, the image encoded once).")
    var prompt: [String] = []
    @Option(help: "With --shards: the field of each sample's json member that holds its prompt (a string, or an array of strings).")
    var promptField: String?
    @Option(help: "Refuse image paths that resolve outside this folder (a per-record error).")
    var imageRoot: String?
    @Option(help: "Output folder for shards, run.json and stats.json (created if missing).")
    var outputDir: String
    @Option(help: "Records per shard file.")
    var shardSize = 1000
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var gemm: GEMMOptions
    @Flag(help: "Add each generated token's log-probability to the records (\"token_logprobs\").")
    var tokenLogprobs = false
    @Option(help: "Sequences per micro-batch (a beam-search job counts as its beams).")
    var microBatchSize = 8
    @Option(help: "Micro-batches in flight per replica (default: the number of stages).")
    var microBatches: Int?
    @Option(help: "Vision ranks per replica (V).")
    var visionRanks: Int?
    @Option(help: "Decoder stages per replica (S; default: the smallest that fits N, at most the decoder's layers); layers are split between them by cost.")
    var stages: Int?
    @Option(help: "Layers per stage, overriding the split, e.g. 6,6,6.")
    var stageLayers: String?
    @Option(help: "Images a vision rank encodes in one forward, at most.")
    var visionBatch = 4
    @Option(help: "Refuse images whose header declares more pixels than this (a per-record error).")
    var maxPixels = 64_000_000
    @Option(help: "BLAS/kernel threads per rank (default: 1 per rank under mpirun, all cores otherwise).")
    var threads: Int?
    @Option(help: "BLAS/kernel threads of vision ranks under mpirun (default: --threads); they idle most of the time.")
    var visionThreads: Int?
    @Option(help: "Precision matrices are kept at: auto (bf16 stays bf16, f32 stays f32, f16 → f32), f32, bf16 (rounds an f32 checkpoint), or int8 (per-channel int8 quantized at load, activations quantized per token; lossy, never chosen by auto).")
    var weights: WeightsMode = .auto
    @Option(help: "End the job when a rank has been silent this many seconds.")
    var peerTimeout = 20.0
    @Option(help: "Seconds between heartbeats to the ranks that watch this one (default: 2, or --peer-timeout / 4 when that is less); at most half of --peer-timeout.")
    var heartbeatInterval: Double?
    @Option(help: "VQ-VAE mask decoder (.npz) for segmentation outputs (default: MODEL/vae-oid.npz if present).")
    var maskDecoder: String?
    @Flag(help: "Resume into an output folder whose run.json has other result-affecting settings.")
    var allowSettingsChange = false
    @Option(help: "Seconds between progress log lines when stderr is not a terminal.")
    var progressInterval = 30.0
    @Option(help: ArgumentHelp("Write the run's timeline to FILE: a Chrome/Perfetto trace (JSON trace events), one track per rank with its load, vision batches, stage steps per micro-batch, sends and idle waits; open it in ui.perfetto.dev or see it in `paligemma report --trace FILE`. Cheap enough to leave on (docs/operations.md, Timeline).", valueName: "file"))
    var trace: String?

    func validate() throws {
        if let trace {
            let folder = URL(fileURLWithPath: trace).standardizedFileURL.deletingLastPathComponent().path
            var isDir: ObjCBool = false
            // The output folder itself is made by the run.
            let output = URL(fileURLWithPath: outputDir).standardizedFileURL.path
            guard folder == output || FileManager.default.fileExists(atPath: folder, isDirectory: &isDir) && isDir.boolValue else {
                throw ValidationError("--trace \(trace): the folder \(folder) does not exist (create it, give a file in an "
                                      + "existing folder, or one in --output-dir)")
            }
        }
        if [manifest, images, shards].compactMap({ $0 }).count != 1 {
            throw ValidationError("give exactly one of --manifest FILE, --images DIR or --shards PATTERN")
        }
        if images != nil && prompt.isEmpty { throw ValidationError("--images needs --prompt (the prompt for every image)") }
        if shards != nil && prompt.isEmpty == (promptField == nil) {
            throw ValidationError("--shards needs --prompt (repeatable) or --prompt-field NAME (a field of each sample's json member), one of them")
        }
        if promptField != nil && shards == nil { throw ValidationError("--prompt-field is for --shards") }
        if shardSize < 1 { throw ValidationError("--shard-size must be at least 1") }
        if microBatchSize < 1 { throw ValidationError("--micro-batch-size must be at least 1") }
        if let m = microBatches, m < 1 { throw ValidationError("--micro-batches must be at least 1") }
        if visionBatch < 1 { throw ValidationError("--vision-batch must be at least 1") }
        if let t = threads, t < 1 { throw ValidationError("--threads must be at least 1") }
        if let t = visionThreads, t < 1 { throw ValidationError("--vision-threads must be at least 1") }
        if !(peerTimeout > 0) { throw ValidationError("--peer-timeout must be positive") }
        if !(progressInterval > 0) { throw ValidationError("--progress-interval must be a positive number of seconds") }
        if let h = heartbeatInterval {
            if !(h > 0 && h.isFinite) { throw ValidationError("--heartbeat-interval must be a positive number of seconds") }
            if h * 2 > peerTimeout {
                throw ValidationError("--heartbeat-interval must be at most half of --peer-timeout (\(peerTimeout) s), or a live rank "
                                      + "can look silent between two heartbeats")
            }
        }
    }

    func run() throws {
        let source: ManifestSource
        let description: String
        if let manifest {
            let url = URL(fileURLWithPath: manifest).standardizedFileURL
            do {
                source = try ManifestSource.file(url)
            } catch {
                // A setup error (exit 2, docs/operations.md §8), said once: by rank 0, or the only process.
                if BatchRun.isRankZeroOrAlone {
                    Logger(label: "paligemma run").error("\(error)")
                }
                throw ExitCode(2)
            }
            description = url.path
        } else if let images {
            let url = URL(fileURLWithPath: images).standardizedFileURL
            source = .directory(url, prompt: prompt[0])
            description = url.path
        } else {
            do {
                let tars = try ShardList.resolve(shards!)
                try ShardList.checkNames(tars)
                source = .shards(tars)
            } catch {
                if BatchRun.isRankZeroOrAlone { Logger(label: "paligemma run").error("\(error)") }
                throw ExitCode(2)
            }
            description = shards!
        }
        let modelURL = URL(fileURLWithPath: model).standardizedFileURL
        var config = RunConfiguration(
            modelDirectory: modelURL, manifest: source,
            manifestOptions: ManifestOptions(imageRoot: imageRoot.map { URL(fileURLWithPath: $0).standardizedFileURL },
                                             defaultPrompts: prompt, promptField: promptField),
            manifestDescription: description,
            outputDirectory: URL(fileURLWithPath: outputDir).standardizedFileURL)
        config.shardSize = shardSize
        config.microBatchSize = microBatchSize
        config.microBatches = microBatches
        config.maxNewTokens = sampling.maxTokens
        config.sampling = sampling.parameters
        config.beams = sampling.beams
        config.tokenLogprobs = tokenLogprobs
        config.visionRanks = visionRanks
        config.stages = stages
        config.stageLayers = stageLayers
        config.visionBatch = visionBatch
        config.maxPixels = maxPixels
        config.threads = threads
        config.visionThreads = visionThreads
        config.peerTimeout = peerTimeout
        config.weights = weights
        config.gemm = gemm.policy
        gemm.logChoices(as: "paligemma run")
        config.heartbeatInterval = heartbeatInterval ?? min(config.heartbeatInterval, peerTimeout / 4)
        let defaultDecoder = modelURL.appendingPathComponent("vae-oid.npz")
        config.maskDecoder = maskDecoder.map { URL(fileURLWithPath: $0) }
            ?? (FileManager.default.fileExists(atPath: defaultDecoder.path) ? defaultDecoder : nil)
        config.allowSettingsChange = allowSettingsChange
        config.progressInterval = progressInterval
        config.trace = trace.map { URL(fileURLWithPath: $0).standardizedFileURL }
        config.commandLine = Array(CommandLine.arguments.dropFirst())
        let status = BatchRun.main(config)
        if status != 0 { throw ExitCode(status) }
    }
}
