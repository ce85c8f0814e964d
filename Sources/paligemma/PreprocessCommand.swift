// `paligemma preprocess`: one image -> pixel_values [3, N, N] float32 in a safetensors file,
// exactly as transformers 5.23's SiglipImageProcessor (PIL backend) would compute them.
import ArgumentParser
import Foundation
import PaliImage
import PaliWeights

struct PreprocessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Decode, resize and normalise an image into pixel_values [3, N, N] (safetensors).",
        discussion: """
            Writes one F32 tensor named pixel_values. Size, mean and std come from --model's \
            processor_config.json / preprocessor_config.json when given (--size overrides the size), \
            otherwise SigLIP's defaults (mean = std = 0.5, bicubic). See docs/images.md.
            """)

    @Option(help: "Input image, JPEG or PNG.")
    var image: String

    @Option(help: "Output side N; required unless --model gives it.")
    var size: Int?

    @Option(help: "Model directory whose processor configuration supplies size, mean and std.")
    var model: String?

    @Option(help: "Output safetensors file.")
    var output: String

    @Option(help: "Refuse images whose header declares more pixels than this, before decoding.")
    var maxPixels: Int = 64_000_000

    @Option(name: .customLong("repeat"),
            help: ArgumentHelp("Benchmark: run read+decode+resize+normalise this many times and print timings.",
                               visibility: .hidden))
    var repeats: Int?

    func validate() throws {
        if size == nil && model == nil { throw ValidationError("pass --size N or --model DIR") }
        if let size, size <= 0 { throw ValidationError("--size must be positive, got \(size)") }
        if maxPixels <= 0 { throw ValidationError("--max-pixels must be positive, got \(maxPixels)") }
        if let repeats, repeats <= 0 { throw ValidationError("--repeat must be positive, got \(repeats)") }
    }

    func run() throws {
        var configuration = try model.map { try ImageProcessorConfiguration.load(modelDirectory: URL(fileURLWithPath: $0)) }
            ?? .siglip(size: size ?? 224)
        if let size { configuration.size = .init(height: size, width: size) }
        let preprocessor = ImagePreprocessor(configuration: configuration)
        let url = URL(fileURLWithPath: image), decoder = ImageDecoder(maxPixels: maxPixels)
        let values = try preprocessor.pixelValues(contentsOf: url, decoder: decoder)
        if let repeats {
            var seconds: [Double] = []
            for _ in 0..<repeats {
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try preprocessor.pixelValues(contentsOf: url, decoder: decoder)
                seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            seconds.sort()
            print(#"{"image": "\#(image)", "repeats": \#(repeats), "median_s": \#(seconds[repeats / 2]), "min_s": \#(seconds[0])}"#)
        }
        let shape = [3, configuration.size.height, configuration.size.width]
        try SafetensorsWriter.write([.f32("pixel_values", shape: shape, values)], to: URL(fileURLWithPath: output))
        print("wrote pixel_values \(shape) to \(output)")
    }
}
