// run.json: what produced the records in an output directory. A rerun (resume) with settings that would
// change the records is refused unless the user says so, so one directory never mixes two runs' outputs.
import Foundation
import PaliJSON
import PaliBatch
import PaliPipeline

enum RunRecordFiles {
    static let version = "paligemma-swift 0.4"

    static func settings(_ config: RunConfiguration, bundle: ModelBundleSummary) -> [(String, JSONValue)] {
        let s = config.sampling
        // Written only when not the default, so an earlier run's run.json (without them) still matches.
        var search: [(String, JSONValue)] = []
        if config.beams > 1 { search.append(("beams", .int(config.beams))) }
        if config.tokenLogprobs { search.append(("token_logprobs", .bool(true))) }
        let sampling: [(String, JSONValue)] = [
            ("manifest", .string(config.manifestDescription)),
            ("image_root", config.manifestOptions.imageRoot.map { .string($0.path) } ?? .null),
            ("default_prompt", config.manifestOptions.defaultPrompt.map { .string($0) } ?? .null),
        ] + promptSettings(config.manifestOptions) + [
            ("max_tokens", .int(config.maxNewTokens)),
            ("sampling", .string(s.isGreedy ? "greedy" : "sample")),
            ("temperature", .double(Double(s.temperature))),
            ("top_k", s.topK.map { .int($0) } ?? .null),
            ("top_p", s.topP.map { .double(Double($0)) } ?? .null),
            ("seed", .number(String(s.seed))),
        ]
        let rest: [(String, JSONValue)] = [
            ("image_size", .int(bundle.imageSize)),
            ("max_pixels", .int(config.maxPixels)),
            ("shard_size", .int(config.shardSize)),
            ("micro_batch_size", .int(config.microBatchSize)),
            ("mask_decoder", config.maskDecoder.map { .string($0.path) } ?? .null),
            ("command_line", .array(config.commandLine.map { .string($0) })),
        ]
        return sampling + search + rest
    }

    /// Several --prompt, and --prompt-field: written only when given (an earlier run.json without them
    /// compares equal to a run with one prompt).
    static func promptSettings(_ options: ManifestOptions) -> [(String, JSONValue)] {
        var settings: [(String, JSONValue)] = []
        if options.defaultPrompts.count > 1 {
            settings.append(("prompts", .array(options.defaultPrompts.map { JSONValue.string($0) })))
        }
        if let field = options.promptField { settings.append(("prompt_field", .string(field))) }
        return settings
    }

    /// Compares with an existing run.json (refusing a resume whose settings would change the records),
    /// then writes this run's.
    static func checkAndWriteRunInfo(config: RunConfiguration, bundle: ModelBundleSummary, layout: Layout,
                                     stagePlan: StagePlan) throws {
        let layoutJSON: JSONValue = .object([
            ("world_size", .int(layout.worldSize)), ("replicas", .int(layout.replicas)),
            ("vision_ranks", .int(layout.visionRanks)), ("stages", .int(layout.stages)),
            ("stage_layers", .array(stagePlan.layerCounts.map { .int($0) })),
            ("micro_batch_size", .int(config.microBatchSize)),
            ("micro_batches", .int(config.microBatches ?? layout.stages)),
        ])
        let info = RunInfo(version: version, model: try ModelIdentity.of(modelDirectory: config.modelDirectory),
                           modelDirectory: config.modelDirectory.path, settings: settings(config, bundle: bundle),
                           layout: layoutJSON)
        let existing = config.outputDirectory.appendingPathComponent(RunInfo.fileName)
        if FileManager.default.fileExists(atPath: existing.path) {
            let earlier = try RunInfo.load(from: existing)
            let differences = info.differences(from: earlier)
            if !differences.isEmpty && !config.allowSettingsChange {
                throw RunError.setup("\(config.outputDirectory.path) holds records of a run with other settings:\n  "
                                     + differences.joined(separator: "\n  ")
                                     + "\nuse a new --output-dir, or pass --allow-settings-change to mix them")
            }
        }
        try info.write(to: config.outputDirectory)
    }
}

/// The few model facts run.json needs.
struct ModelBundleSummary {
    var imageSize: Int
}
