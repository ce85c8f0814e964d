import ArgumentParser
import Foundation
import PaliGeneration
import PaliImage
import PaliModels
import PaliTensor

/// `--model DIR` and `--threads`.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model directory: config.json, *.safetensors (+ index), tokenizer.model, processor config.")
    var model: String

    @Option(help: "Threads for matrix products and kernels (default: all cores).")
    var threads: Int?

    @Option(help: "Refuse images whose header declares more pixels than this.")
    var maxPixels: Int = 64_000_000

    @Option(help: "Precision matrices are kept at: auto (bf16 stays bf16, f32 stays f32, f16 → f32), f32, bf16 (rounds an f32 checkpoint), or int8 (per-channel int8 quantized at load, activations quantized per token; lossy, never chosen by auto).")
    var weights: WeightsMode = .auto

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func applyThreads() {
        if let threads { BLAS.threads = threads }
    }

    var directory: URL { URL(fileURLWithPath: model) }
}

/// Turns image files into the model's pixel values [3, S, S].
struct ImageLoader {
    let preprocessor: ImagePreprocessor
    let decoder: ImageDecoder
    let size: Int

    init(bundle: ModelBundle, maxPixels: Int) throws {
        let size = bundle.hyper.vision.imageSize
        let fm = FileManager.default
        let dir = bundle.directory
        let hasProcessorFile = fm.fileExists(atPath: dir.appendingPathComponent("processor_config.json").path)
            || fm.fileExists(atPath: dir.appendingPathComponent("preprocessor_config.json").path)
        let config = hasProcessorFile ? try ImageProcessorConfiguration.load(modelDirectory: dir)
                                      : ImageProcessorConfiguration.siglip(size: size)
        guard config.size.height == size && config.size.width == size else {
            throw ValidationError("the processor config in \(dir.path) resizes to \(config.size.height)×\(config.size.width) but the model's image size is \(size)")
        }
        preprocessor = ImagePreprocessor(configuration: config)
        decoder = ImageDecoder(maxPixels: maxPixels)
        self.size = size
    }

    func pixels(_ path: String) throws -> Tensor {
        let values = try preprocessor.pixelValues(contentsOf: URL(fileURLWithPath: path), decoder: decoder)
        return Tensor(shape: [3, size, size], values: values)
    }
}

extension WeightsMode: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument) }
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}
