// The image half of a PaliGemma processor: what transformers 5.23 reads from a model directory.
// Sources, in transformers' priority order (image_processing_base.get_image_processor_dict):
//   1. processor_config.json, key "image_processor" (what 5.x save_pretrained writes);
//   2. preprocessor_config.json (4.x layout, what the hub checkpoints ship).
// Example (google/paligemma-3b-pt-224 preprocessor_config.json):
//   {"do_convert_rgb": null, "do_normalize": true, "do_rescale": true, "do_resize": true,
//    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3,
//    "rescale_factor": 0.00392156862745098, "size": {"height": 224, "width": 224}, ...}
import Foundation

public struct ImageProcessorConfiguration: Sendable, Decodable, Equatable {
    /// Output size; `{"height": H, "width": W}` in the file. PaliGemma uses H == W.
    public var size: Size
    /// Per-channel mean and std, RGB order (a single number in the file means all three).
    public var imageMean: [Double]
    public var imageStd: [Double]
    /// Multiplier from 0...255 to 0...1: 1/255 in every PaliGemma checkpoint.
    public var rescaleFactor: Double
    /// PIL resampling filter id; only 3 (bicubic) is supported.
    public var resample: Int
    public var doResize: Bool
    public var doRescale: Bool
    public var doNormalize: Bool
    /// `null` in hub files, meaning the class default (true in transformers 5.x).
    public var doConvertRGB: Bool

    public struct Size: Sendable, Decodable, Equatable {
        public var height: Int
        public var width: Int
        public init(height: Int, width: Int) { self.height = height; self.width = width }
    }

    /// SiglipImageProcessor's defaults with an S x S output: mean = std = 0.5, 1/255, bicubic.
    public static func siglip(size: Int) -> ImageProcessorConfiguration {
        ImageProcessorConfiguration(size: Size(height: size, width: size))
    }

    public init(size: Size, imageMean: [Double] = [0.5, 0.5, 0.5], imageStd: [Double] = [0.5, 0.5, 0.5],
                rescaleFactor: Double = 1.0 / 255.0, resample: Int = 3, doResize: Bool = true,
                doRescale: Bool = true, doNormalize: Bool = true, doConvertRGB: Bool = true) {
        self.size = size; self.imageMean = imageMean; self.imageStd = imageStd
        self.rescaleFactor = rescaleFactor; self.resample = resample; self.doResize = doResize
        self.doRescale = doRescale; self.doNormalize = doNormalize; self.doConvertRGB = doConvertRGB
    }

    enum CodingKeys: String, CodingKey {
        case size, resample
        case imageMean = "image_mean"
        case imageStd = "image_std"
        case rescaleFactor = "rescale_factor"
        case doResize = "do_resize"
        case doRescale = "do_rescale"
        case doNormalize = "do_normalize"
        case doConvertRGB = "do_convert_rgb"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        size = try c.decodeIfPresent(Size.self, forKey: .size) ?? Size(height: 224, width: 224)
        imageMean = try Self.channels(c, .imageMean) ?? [0.5, 0.5, 0.5]
        imageStd = try Self.channels(c, .imageStd) ?? [0.5, 0.5, 0.5]
        rescaleFactor = try c.decodeIfPresent(Double.self, forKey: .rescaleFactor) ?? 1.0 / 255.0
        resample = try c.decodeIfPresent(Int.self, forKey: .resample) ?? 3
        doResize = try c.decodeIfPresent(Bool.self, forKey: .doResize) ?? true
        doRescale = try c.decodeIfPresent(Bool.self, forKey: .doRescale) ?? true
        doNormalize = try c.decodeIfPresent(Bool.self, forKey: .doNormalize) ?? true
        doConvertRGB = try c.decodeIfPresent(Bool.self, forKey: .doConvertRGB) ?? true
    }

    /// A list of three numbers, or one number for all channels.
    private static func channels(_ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> [Double]? {
        if let list = try? c.decodeIfPresent([Double].self, forKey: key) { return list }
        return try c.decodeIfPresent(Double.self, forKey: key).map { [$0, $0, $0] }
    }

    /// Checks the settings this engine implements; throws naming `path` otherwise.
    public func validate(path: String) throws {
        func fail(_ reason: String) -> ImageError { .invalidConfiguration(path: path, reason: reason) }
        guard resample == 3 else {
            throw fail("resample \(resample) is not supported; only 3 (PIL bicubic) is implemented")
        }
        guard size.height > 0, size.width > 0 else { throw fail("size \(size.height)x\(size.width) must be positive") }
        guard imageMean.count == 3, imageStd.count == 3 else {
            throw fail("image_mean and image_std need 3 values, got \(imageMean.count) and \(imageStd.count)")
        }
        guard imageStd.allSatisfy({ $0 != 0 }) else { throw fail("image_std contains 0") }
        guard doResize else { throw fail("do_resize false is not supported (the model needs a fixed size)") }
        guard doConvertRGB else { throw fail("do_convert_rgb false is not supported (inputs are always RGB)") }
    }

    /// Loads from a model directory in transformers' priority order and validates it.
    public static func load(modelDirectory: URL) throws -> ImageProcessorConfiguration {
        let processorURL = modelDirectory.appendingPathComponent("processor_config.json")
        let preprocessorURL = modelDirectory.appendingPathComponent("preprocessor_config.json")
        let fm = FileManager.default
        if fm.fileExists(atPath: processorURL.path) {
            let data = try read(processorURL)
            let object = try? JSONSerialization.jsonObject(with: data)
            if let nested = (object as? [String: Any])?["image_processor"] {
                let nestedData = try JSONSerialization.data(withJSONObject: nested)
                return try decode(nestedData, path: processorURL.path)
            }
        }
        if fm.fileExists(atPath: preprocessorURL.path) {
            return try decode(try read(preprocessorURL), path: preprocessorURL.path)
        }
        throw ImageError.invalidConfiguration(
            path: modelDirectory.path,
            reason: "neither processor_config.json (with \"image_processor\") nor preprocessor_config.json found")
    }

    private static func read(_ url: URL) throws -> Data {
        do { return try Data(contentsOf: url) } catch {
            throw ImageError.invalidConfiguration(path: url.path, reason: (error as NSError).localizedDescription)
        }
    }

    private static func decode(_ data: Data, path: String) throws -> ImageProcessorConfiguration {
        let config: ImageProcessorConfiguration
        do {
            config = try JSONDecoder().decode(ImageProcessorConfiguration.self, from: data)
        } catch {
            throw ImageError.invalidConfiguration(path: path, reason: "\(error)")
        }
        try config.validate(path: path)
        return config
    }
}
