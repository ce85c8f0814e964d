// `paligemma quantize`: writes an int8 copy of a checkpoint (see PaliModels/Int8Checkpoint.swift and
// docs/weights.md) with the model directory's other files (config, tokenizer, processor config, mask
// decoder) copied beside it.
import ArgumentParser
import Foundation
import PaliGeneration
import PaliModels
import PaliTensor
import PaliWeights

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Write an int8-quantized copy of a model directory (I8 matrices + F32 scales per row): loads as --weights int8 does, a quarter of the matrix bytes.")

    @Option(help: "Model directory to quantize.") var model: String
    @Option(help: "Precision to write: int8 (the only one).") var weights: WeightsMode = .int8
    @Option(help: "Directory to write (created; must not exist or be empty).") var output: String

    func validate() throws {
        guard weights == .int8 else { throw ValidationError("--weights \(weights): quantize writes int8 only (--weights int8)") }
        let src = URL(fileURLWithPath: model).standardizedFileURL, dst = URL(fileURLWithPath: output).standardizedFileURL
        guard src != dst else { throw ValidationError("--output must be another directory than --model") }
        if let contents = try? FileManager.default.contentsOfDirectory(atPath: dst.path), !contents.isEmpty {
            throw ValidationError("--output \(dst.path) exists and is not empty: choose a new directory")
        }
    }

    func run() throws {
        let src = URL(fileURLWithPath: model), dst = URL(fileURLWithPath: output)
        let bundle = try ModelBundle(directory: src)
        let checkpoint = try Checkpoint(directory: src)
        let fm = FileManager.default
        try fm.createDirectory(at: dst, withIntermediateDirectories: true)
        let names = try Int8Checkpoint.write(checkpoint, hyper: bundle.hyper, to: dst.appendingPathComponent("model.safetensors"))
        for item in try fm.contentsOfDirectory(atPath: src.path).sorted() {
            let from = src.appendingPathComponent(item)
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: from.path, isDirectory: &isDir), !isDir.boolValue,
                  !item.hasSuffix(".safetensors"), item != "model.safetensors.index.json" else { continue }
            try fm.copyItem(at: from, to: dst.appendingPathComponent(item))
        }
        FileHandle.standardError.write(Data("paligemma quantize: \(names.count) matrices int8 → \(dst.appendingPathComponent("model.safetensors").path)\n".utf8))
    }
}
